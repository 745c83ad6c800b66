#!/usr/bin/python3
"""The TOML differential corpus: documents, and what Python's tomllib makes of them.

    generate.py           (re)writes valid/, invalid/ and differs/ beside this script
    generate.py --check   regenerates in memory and compares with the files on disk; exits 1
                          on any difference (tomllib changed its mind, a file was edited, or
                          the generator was changed without regenerating)

valid/NAME.toml      tomllib accepts it; NAME.json is its value tree (format below)
invalid/NAME.toml    tomllib refuses it
differs/NAME.toml    aibox deliberately differs from tomllib (README.md there says why):
                     NAME.json is aibox's tree (absent: aibox refuses it), NAME.tomllib.json
                     tomllib's (absent: tomllib refuses it)

The tree: a table is a JSON object, an array a JSON array, any other value
{"type": T, "value": TEXT} with T one of string, integer, float, bool, datetime,
datetime-local, date-local, time-local. Floats are Python's repr (nan without a sign);
date-times are YYYY-MM-DDTHH:MM:SS.ffffff[+HH:MM] (Z as +00:00, seconds to the
microsecond as tomllib keeps them). Written by json.dumps(indent=1, ensure_ascii=True):
the Swift test prints its own tree the same way and compares the text.

Deterministic (one fixed seed, Python's random). Every document is made here: generated
from the TOML 1.0 grammar, mutated from generated ones, or written out below; none is
copied from elsewhere.
"""

import datetime
import json
import os
import random
import sys
import tomllib

SEED = 20261201
VALID_GENERATED = 320
MUTATED = 420
HERE = os.path.dirname(os.path.abspath(__file__))


# MARK: Expectations


def tagged(v):
    if isinstance(v, dict):
        return {k: tagged(x) for k, x in v.items()}
    if isinstance(v, list):
        return [tagged(x) for x in v]
    if isinstance(v, bool):
        return {"type": "bool", "value": "true" if v else "false"}
    if isinstance(v, int):
        return {"type": "integer", "value": str(v)}
    if isinstance(v, float):
        return {"type": "float", "value": "nan" if v != v else repr(v)}
    if isinstance(v, str):
        return {"type": "string", "value": v}
    if isinstance(v, datetime.datetime):
        text = "%04d-%02d-%02dT%02d:%02d:%02d.%06d" % (v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond)
        if v.tzinfo is None:
            return {"type": "datetime-local", "value": text}
        minutes = int(v.utcoffset().total_seconds()) // 60
        sign = "-" if minutes < 0 else "+"
        return {"type": "datetime", "value": text + "%s%02d:%02d" % (sign, abs(minutes) // 60, abs(minutes) % 60)}
    if isinstance(v, datetime.date):
        return {"type": "date-local", "value": "%04d-%02d-%02d" % (v.year, v.month, v.day)}
    if isinstance(v, datetime.time):
        return {"type": "time-local", "value": "%02d:%02d:%02d.%06d" % (v.hour, v.minute, v.second, v.microsecond)}
    raise TypeError(type(v))


def dump(tree):
    return json.dumps(tree, indent=1, ensure_ascii=True) + "\n"


def tomllib_reading(data):
    """tomllib's tree of these bytes as text, or None when it refuses them."""
    try:
        return dump(tagged(tomllib.loads(data.decode("utf-8"))))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return None


def fits_64_bits(v):
    if isinstance(v, dict):
        return all(fits_64_bits(x) for x in v.values())
    if isinstance(v, list):
        return all(fits_64_bits(x) for x in v)
    if isinstance(v, int) and not isinstance(v, bool):
        return -(2**63) <= v < 2**63
    return True


# MARK: Generated valid documents

BARE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
ODD_KEYS = ["", " ", "a b", "a.b", "é", "中文", "key=value", "#", "[x]", "'", '"', "\\", "tab\there", "😀", "true", "1.2"]
UNICODE = "éüßçøΩжψ中文字日本語😀🎉€£©°±→∞"


class Generator:
    def __init__(self, rng):
        self.r = rng

    def chance(self, p):
        return self.r.random() < p

    # Keys

    def key_name(self, taken):
        while True:
            if self.chance(0.08):
                name = self.r.choice(ODD_KEYS)
            elif self.chance(0.05):
                name = self.r.choice(["true", "false", "inf", "nan", "1234", "0x10", "1979-05-27", "-", "_", "--x"])
            else:
                name = "".join(self.r.choice(BARE) for _ in range(self.r.randint(1, 8)))
            if name not in taken:
                taken.add(name)
                return name

    def key_text(self, name):
        bare = name != "" and all(c in BARE for c in name)
        if bare and not self.chance(0.2):
            return name
        if "'" not in name and all(ord(c) >= 0x20 and c != "\x7f" for c in name) and self.chance(0.4):
            return "'" + name + "'"
        return self.basic_string(name)

    def dotted(self, names):
        out = []
        for n in names:
            out.append(self.key_text(n))
        seps = [self.r.choice([".", ".", ".", " .", ". ", " . ", "\t.\t"]) for _ in names[1:]]
        text = out[0]
        for s, k in zip(seps, out[1:]):
            text += s + k
        return text

    # Scalars

    def with_underscores(self, digits):
        if len(digits) < 2 or not self.chance(0.3):
            return digits
        out = digits[0]
        for d in digits[1:]:
            if self.chance(0.3):
                out += "_"
            out += d
        return out

    def integer(self):
        kind = self.r.random()
        magnitude = self.r.choice([0, 1, 7, 42, 99, 1000, 65535, 2**31, 2**53 + 1, 2**63 - 1, self.r.randrange(0, 2**63)])
        if kind < 0.6:
            sign = self.r.choice(["", "", "+", "-"])
            if sign == "-" and magnitude == 2**63 - 1 and self.chance(0.5):
                magnitude = 2**63  # the most negative integer
            return sign + self.with_underscores(str(magnitude))
        if kind < 0.75:
            digits = "%x" % magnitude
            if self.chance(0.5):
                digits = digits.upper()
            if self.chance(0.2):
                digits = "00" + digits
            return "0x" + self.with_underscores(digits)
        if kind < 0.88:
            return "0o" + self.with_underscores("%o" % magnitude)
        return "0b" + self.with_underscores(format(magnitude % 4096, "b"))

    def float_(self):
        k = self.r.random()
        sign = self.r.choice(["", "", "+", "-"])
        if k < 0.08:
            return sign + self.r.choice(["inf", "nan"])
        intpart = self.r.choice(["0", "1", "3", "42", "12345", str(self.r.randrange(1, 10**9))])
        intpart = self.with_underscores(intpart) if intpart != "0" else "0"
        frac = "".join(self.r.choice("0123456789") for _ in range(self.r.randint(1, 17)))
        exp = self.r.choice(["e", "E"]) + self.r.choice(["", "+", "-"]) + self.with_underscores(str(self.r.choice([0, 1, 5, 10, 22, 99, 307, 308, 320, 400])))
        if self.chance(0.2):
            exp = exp[:-1] + "0" + exp[-1] if exp[-1].isdigit() else exp  # leading zeros in exponents are fine
        if k < 0.5:
            return sign + intpart + "." + self.with_underscores(frac)
        if k < 0.75:
            return sign + intpart + exp
        return sign + intpart + "." + self.with_underscores(frac) + exp

    def scalar_char(self):
        k = self.r.random()
        if k < 0.7:
            return self.r.choice("abcdefghijklmnopqrstuvwxyz ABCXYZ0123456789.,;:!?-_/()[]{}=+*&%$#@~`^|<>'")
        if k < 0.85:
            return self.r.choice(UNICODE)
        return self.r.choice(["\t", '"', "\\", "\n", "\r", "\x00", "\x01", "\x1f", "\x7f", "\b", "\f", "\u2028", "\ufeff"])

    def content(self, n=None):
        return "".join(self.scalar_char() for _ in range(self.r.randint(0, 24) if n is None else n))

    def basic_string(self, s):
        out = '"'
        for c in s:
            o = ord(c)
            if c == '"':
                out += '\\"'
            elif c == "\\":
                out += "\\\\"
            elif c in "\b\t\n\f\r" and self.chance(0.8):
                out += {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}[c]
            elif c == "\t":
                out += "\t"
            elif o < 0x20 or o == 0x7F or self.chance(0.1):
                out += self.r.choice(["\\u%04x", "\\u%04X", "\\U%08x", "\\U%08X"]) % o if o <= 0xFFFF else "\\U%08X" % o
            else:
                out += c
        return out + '"'

    def string(self, multiline_ok=True):
        s = self.content()
        k = self.r.random()
        printable = all((ord(c) >= 0x20 and c != "\x7f") or c == "\t" for c in s)
        if k < 0.45 or not multiline_ok:
            if "'" not in s and printable and self.chance(0.3):
                return "'" + s + "'"
            return self.basic_string(s)
        if k < 0.75:
            return self.multiline_basic()
        return self.multiline_literal()

    def multiline_basic(self):
        out = '"""'
        if self.chance(0.6):
            out += "\n"
        for _ in range(self.r.randint(0, 4)):
            piece = self.r.random()
            if piece < 0.3:
                out += self.basic_string(self.content())[1:-1]
            elif piece < 0.45:
                out += "\\" + self.r.choice(["", " ", "\t", "  "]) + "\n" + self.r.choice(["", "  ", "\t", "\n  "])
            elif piece < 0.6:
                out += self.r.choice(['"', '""', "'", "''", "'''"]) + "x"
            elif piece < 0.75:
                out += "\n"
            else:
                out += self.r.choice(UNICODE) + "text"
        out += self.r.choice(["", "", '"', '""'])
        return out + '"""'

    def multiline_literal(self):
        out = "'''"
        if self.chance(0.6):
            out += "\n"
        for _ in range(self.r.randint(0, 4)):
            piece = self.r.random()
            if piece < 0.4:
                out += "".join(c for c in self.content() if (ord(c) >= 0x20 and c != "\x7f" and c != "'") or c in "\t\n")
            elif piece < 0.55:
                out += self.r.choice(["'", "''", '"""', "\\n", "\\"]) + "x"
            else:
                out += "\n" + self.r.choice(["", "  ", "\t"])
        out += self.r.choice(["", "", "'", "''"])
        return out + "'''"

    def date(self):
        year = self.r.choice([1, 1970, 1979, 1999, 2000, 2024, 2100, 9999, self.r.randint(1, 9999)])
        month = self.r.randint(1, 12)
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        if month == 2 and leap and self.chance(0.3):
            return "%04d-02-29" % year
        return "%04d-%02d-%02d" % (year, month, self.r.choice([1, days, self.r.randint(1, days)]))

    def time(self):
        t = "%02d:%02d:%02d" % (self.r.choice([0, 23, self.r.randint(0, 23)]), self.r.randint(0, 59), self.r.choice([0, 59, self.r.randint(0, 59)]))
        if self.chance(0.4):
            t += "." + "".join(self.r.choice("0123456789") for _ in range(self.r.randint(1, 9)))
        return t

    def datetime_(self):
        k = self.r.random()
        if k < 0.2:
            return self.date()
        if k < 0.35:
            return self.time()
        text = self.date() + self.r.choice(["T", "T", "t", " "]) + self.time()
        if k < 0.55:
            return text
        return text + self.r.choice(["Z", "z", "+00:00", "-00:00", "+05:30", "-07:00", "+23:59", "+%02d:%02d" % (self.r.randint(0, 23), self.r.randint(0, 59))])

    def scalar(self, multiline_ok=True):
        k = self.r.random()
        if k < 0.3:
            return self.string(multiline_ok)
        if k < 0.5:
            return self.integer()
        if k < 0.65:
            return self.float_()
        if k < 0.75:
            return self.r.choice(["true", "false"])
        return self.datetime_()

    # Compound values

    def value(self, depth, multiline_ok=True):
        k = self.r.random()
        if depth < 6 and k < 0.12:
            return self.array(depth + 1, multiline_ok)
        if depth < 6 and k < 0.2:
            return self.inline_table(depth + 1)
        return self.scalar(multiline_ok)

    def array(self, depth, multiline_ok=True):
        items = [self.value(depth, multiline_ok) for _ in range(self.r.randint(0, 5))]
        if not items:
            return self.r.choice(["[]", "[ ]", "[\n]" if multiline_ok else "[]"])
        if multiline_ok and self.chance(0.4):
            text = "["
            for item in items:
                text += "\n" + self.r.choice(["  ", "\t", ""]) + item + ","
                if self.chance(0.3):
                    text += self.r.choice([" # a comment", "# , ] } [", "  #"])
                if self.chance(0.1):
                    text += "\n"
            if self.chance(0.5):
                text = text[:-1] if text.endswith(",") else text
            return text + "\n" + self.r.choice(["", "  "]) + "]"
        sep = self.r.choice([",", ", ", " , ", ",\t"])
        text = "[" + self.r.choice(["", " "]) + sep.join(items)
        if self.chance(0.2):
            text += ","
        return text + self.r.choice(["", " "]) + "]"

    def inline_table(self, depth):
        taken = set()
        entries = []
        for _ in range(self.r.randint(0, 4)):
            name = self.key_name(taken)
            if self.chance(0.2) and depth < 6:
                # A dotted key: a sub-table made of several entries.
                sub = set()
                for _ in range(self.r.randint(1, 3)):
                    entries.append(self.dotted([name, self.key_name(sub)]) + self.eq() + self.value(depth + 1, multiline_ok=False))
            else:
                entries.append(self.key_text(name) + self.eq() + self.value(depth, multiline_ok=False))
        if not entries:
            return self.r.choice(["{}", "{ }"])
        return "{" + self.r.choice(["", " "]) + self.r.choice([",", ", ", " , "]).join(entries) + self.r.choice(["", " "]) + "}"

    def eq(self):
        return self.r.choice([" = ", "=", " =", "= ", "\t=\t"])

    # Documents

    def table_body(self, depth, taken):
        """Lines `key = value` of one section, with dotted keys making sub-tables."""
        lines = []
        for _ in range(self.r.randint(0, 6)):
            name = self.key_name(taken)
            if self.chance(0.15) and depth < 8:
                sub = set()
                for _ in range(self.r.randint(1, 3)):
                    inner = [name, self.key_name(sub)]
                    if self.chance(0.3):
                        inner.append(self.key_name(set()))
                    lines.append(self.dotted(inner) + self.eq() + self.value(depth + len(inner)))
            else:
                lines.append(self.key_text(name) + self.eq() + self.value(depth + 1))
        return lines

    def decorate(self, line):
        if self.chance(0.15):
            line = self.r.choice(["  ", "\t", " "]) + line
        if self.chance(0.15):
            line += self.r.choice([" # comment", "\t# é ü 中", "#", " # = [x] \"'"])
        return line

    def sections(self, path, depth, budget, taken):
        """Sections below the table at `path` (whose own keys are in `taken`): blocks of
        (header line, body lines), each block kept in order; plain tables may come in any
        order relative to each other, before or after their parents."""
        blocks = []
        for _ in range(self.r.randint(0, budget)):
            name = self.key_name(taken)
            sub = path + [name]
            if self.chance(0.25):
                # An array of tables: its entries in order, each with its own sub-tables.
                block = []
                for _ in range(self.r.randint(1, 3)):
                    own = set()
                    block.append(("[[" + self.header_key(sub) + "]]", self.table_body(depth + 2, own)))
                    for inner in self.sections(sub, depth + 2, max(0, budget - 2), own):
                        block += inner
                blocks.append(block)
            else:
                own_keys = set()
                own = [("[" + self.header_key(sub) + "]", self.table_body(depth + 1, own_keys))]
                children = self.sections(sub, depth + 1, max(0, budget - 1), own_keys)
                if children and not own[0][1] and self.chance(0.4):
                    own = []  # made implicitly by its sub-tables' headers
                blocks.append(own)
                blocks += children
        return blocks

    def header_key(self, path):
        return self.r.choice(["", " "]) + self.dotted(path) + self.r.choice(["", " "])

    def document(self):
        taken = set()
        lines = [self.decorate(l) for l in self.table_body(0, taken)]
        blocks = self.sections([], 0, self.r.randint(0, 4), taken)
        self.r.shuffle(blocks)
        for block in blocks:
            for header, body in block:
                if self.chance(0.5):
                    lines.append("")
                if self.chance(0.1):
                    lines.append("# " + self.content().replace("\n", " ").replace("\r", " ").replace("\x00", "").replace("\x01", "").replace("\x1f", "").replace("\x7f", "").replace("\b", "").replace("\f", ""))
                lines.append(self.decorate(header))
                lines += [self.decorate(l) for l in body]
        newline = self.r.choice(["\n", "\n", "\n", "\r\n"])
        text = newline.join(lines)
        if self.chance(0.8):
            text += newline
        return text.encode("utf-8")


# MARK: Mutations (documents meant to be refused; tomllib decides)

BAD_VALUES = [
    "01", "00", "-01", "+01", "1__2", "_1", "1_", "1_000_", "0x", "0x_1", "0x1_", "+0x1", "-0x1", "0x-1", "0X1", "0xG",
    "0o8", "0b2", "0O7", "0B1", "1.", ".1", "-.5", "+.5", "1.e5", "1e", "1e+", "1e_1", "1_e1", "1._5", "1.5_", "1e1.5",
    "1.5.5", "inf_", "Inf", "NaN", "+-1", "--1", "9223372036854775808", "-9223372036854775809", "0x8000000000000000",
    "1979-13-01", "1979-00-10", "1979-02-30", "1900-02-29", "2023-02-29", "1979-04-31", "1979-05-32", "1979-05-27T24:00:00",
    "1979-05-27T23:60:00", "1979-05-27T23:59:60", "1979-05-27T07:32", "07:32", "1979-05-27T07:32:00.", "1979-05-27T07:32:00+25:00",
    "1979-05-27T07:32:00+05", "1979-05-27T07:32:00+05:60", "07:32:00Z", "1979-5-27", "79-05-27", "1979-05-27X07:32:00",
    "1979-05-27T7:32:00", "1979-05-27  07:32:00", "12345-01-01", "\"\\x41\"", "\"\\u12\"", "\"\\uD800\"", "\"\\uDFFF\"",
    "\"\\U00110000\"", "\"\\u+123\"", "\"\\U+0000041\"", "\"\\e\"", "\"\\ \"", "\"a", "'a", "\"\"\"a", "'''a", "\"a\nb\"",
    "'a\nb'", "\"\x01\"", "'\x7f'", "\"\"\"\x00\"\"\"", "true_", "True", "FALSE", "tru", "yes", "[1,,2]", "[,]", "[1 2]",
    "{a = 1,}", "{a = 1\n}", "{\na = 1}", "{a = 1, a = 2}", "{a.b = 1, a = 2}", "{a = {b = 1}, a.c = 2}", "{a = 1 b = 2}",
    "[1, 2", "{a = 1", "\"a\" \"b\"", "1 2", "= 1", "", "a",
]


def mutate(r, data):
    text = data.decode("utf-8")
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.split(nl)
    k = r.random()
    if k < 0.25:
        # A few characters inserted, deleted or replaced: the grammar's corners.
        alphabet = "[]{}\"'=,.#\n \t\\_+-:0123456789eExobTZtfinau"
        for _ in range(r.randint(1, 3)):
            pos = r.randint(0, len(text))
            op = r.random()
            if op < 0.4:
                text = text[:pos] + r.choice(alphabet) + text[pos:]
            elif op < 0.7:
                text = text[:pos] + text[pos + 1 :]
            else:
                text = text[:pos] + r.choice(alphabet) + text[pos + 1 :]
        return text.encode("utf-8")
    k = r.random()
    if k < 0.2:
        # A value replaced by a malformed one.
        candidates = [n for n, l in enumerate(lines) if "=" in l and not l.lstrip().startswith(("#", "["))]
        if candidates:
            n = r.choice(candidates)
            lines[n] = lines[n][: lines[n].index("=") + 1] + " " + r.choice(BAD_VALUES)
    elif k < 0.35:
        # A line defined twice.
        candidates = [n for n, l in enumerate(lines) if l.strip() and not l.lstrip().startswith(("#", "[["))]
        if candidates:
            n = r.choice(candidates)
            lines.insert(r.randint(n + 1, len(lines)), lines[n])
    elif k < 0.45:
        # A raw control character somewhere.
        pos = r.randint(0, len(text))
        text = text[:pos] + r.choice(["\x00", "\x01", "\x08", "\x0c", "\x1b", "\x7f", "\r", "\x0b"]) + text[pos:]
        return text.encode("utf-8")
    elif k < 0.6:
        # A structural character dropped or doubled.
        spots = [n for n, c in enumerate(text) if c in "[]{}\"'=,.#"]
        if spots:
            pos = r.choice(spots)
            text = text[:pos] + (text[pos] * 2 if r.random() < 0.3 else "") + text[pos + 1 :]
        return text.encode("utf-8")
    elif k < 0.7:
        # An inline table or array broken across lines, or given a trailing comma.
        spots = [n for n, c in enumerate(text) if c in "}]"]
        if spots:
            pos = r.choice(spots)
            text = text[:pos] + r.choice([",", "\n", ",\n", ", ,", " = 1"]) + text[pos:]
        return text.encode("utf-8")
    elif k < 0.8:
        # A header or key that collides with what is there.
        keys = [l.split("=")[0].strip() for l in lines if "=" in l and not l.lstrip().startswith(("#", "["))]
        headers = [l.strip() for l in lines if l.lstrip().startswith("[")]
        extra = []
        if headers:
            h = r.choice(headers)
            inner = h.strip("[]").split("#")[0].strip()
            extra.append(r.choice([h, "[" + inner + "]", "[[" + inner + "]]", inner + " = 1", inner + ".x = 1"]))
        if keys:
            key = r.choice(keys)
            extra.append(r.choice(["[" + key + "]", "[[" + key + "]]", "[" + key + ".x]", key + ".y = 2"]))
        if extra:
            lines.insert(r.randint(0, len(lines)), r.choice(extra))
    elif k < 0.9:
        # An invalid byte sequence or a stray character outside strings.
        pos = r.randint(0, len(data))
        return data[:pos] + r.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc0\xaf", b"~", b"\xe2\x80\xa8", b"a b"]) + data[pos:]
    else:
        # A newline inside a single-line construct.
        spots = [n for n, c in enumerate(text) if c in "\"'{=."]
        if spots:
            pos = r.choice(spots)
            text = text[: pos + 1] + nl + text[pos + 1 :]
        return text.encode("utf-8")
    return nl.join(lines).encode("utf-8")


# MARK: Written-out cases

# Valid by TOML 1.0, each about one rule (the generated documents cover combinations).
VALID = {
    "empty": "",
    "only-comments": "# one\n   # two\n\t#\n",
    "crlf-with-comments": "# a comment\r\na = 1 # another\r\n[t]\r\nb = \"x\" # more\r\n",
    "crlf-multiline-strings": 'a = """\r\none\r\ntwo\\\r\n   three"""\r\nb = \'\'\'\r\nx\r\ny\'\'\'\r\n',
    "crlf-array": "a = [\r\n  1, # one\r\n  2,\r\n]\r\n",
    "no-final-newline": "a = 1",
    "bom-free-unicode": "\"ключ\" = \"значение\"\n\"中文\" = '字'\n",
    "int-limits": "max = 9223372036854775807\nmin = -9223372036854775808\nhexmax = 0x7fffffffffffffff\noctmax = 0o777777777777777777777\nbinmax = 0b111111111111111111111111111111111111111111111111111111111111111\n",
    "int-zero-signs": "a = 0\nb = +0\nc = -0\n",
    "int-underscores": "a = 1_000\nb = 5_349_221\nc = 0xdead_beef\nd = 0o7_7\ne = 0b1_0\n",
    "int-hex-case": "a = 0xDEADBEEF\nb = 0xdeadbeef\nc = 0xdEaDbEeF\nd = 0x00_ff\n",
    "float-forms": "a = +1.0\nb = 3.1415\nc = -0.01\nd = 5e+22\ne = 1e06\nf = -2E-2\ng = 6.626e-34\nh = 224_617.445_991_228\ni = 0e0\nj = 0.0e-0_1\nk = 1e1_0\n",
    "float-special": "a = inf\nb = +inf\nc = -inf\nd = nan\ne = +nan\nf = -nan\ng = -0.0\nh = +0.0\n",
    "float-overflow-to-inf": "a = 1e400\nb = -1e400\nc = 1e-400\n",
    "float-precision": "a = 0.1\nb = 0.30000000000000004\nc = 1.7976931348623157e308\nd = 5e-324\ne = 2.2250738585072014e-308\nf = 9007199254740993.0\n",
    "string-escapes": 'a = "\\b\\t\\n\\f\\r\\"\\\\"\nb = "\\u0000\\u001F\\u007f\\u00E9\\uFFFF"\nc = "\\U0001F600\\U0010FFFF\\U00000041"\n',
    "string-tab-raw": 'a = "a\tb"\nb = \'a\tb\'\nc = """a\tb"""\n',
    "string-quotes-in-literal": "a = 'He said \"hi\"'\nb = '\\n is not an escape here'\n",
    "multiline-first-newline-trimmed": 'a = """\nx"""\nb = """\n\nx"""\nc = \'\'\'\nx\'\'\'\n',
    "multiline-line-ending-backslash": 'a = """\\\n   The quick \\\n\n\n   brown \\\t \n  fox."""\nb = """a\\\n"""\n',
    "multiline-quotes-before-close": 'a = """""x"""""\nb = """x""""\nc = \'\'\'\'\'x\'\'\'\'\'\nd = """"""\ne = \'\'\'\'\'\'\n',
    "multiline-quotes-inside": 'a = """a""b"c"""\nb = \'\'\'a\'\'b\'c\'\'\'\n',
    "multiline-escaped-quotes": 'a = """\\"\\"\\""""\n',
    "keys-bare-odd": "1234 = 1\n- = 2\n_ = 3\ntrue = 4\ninf = 5\n1979-05-27 = 6\n0x10 = 7\n",
    "keys-quoted": "\"\" = 1\n'x' . '' = 2\n\"a.b\" = 3\n\"a\\\"b\" = 4\n'c:\\d' = 5\n\"\\u00e9\" = 6\n\" \" = 7\n",
    "keys-dotted-whitespace": "a . b\t.\tc = 1\n\"x\" . 'y' = 2\n",
    "keys-number-dotted": "3.14159 = \"pi\"\n",
    "dotted-then-more": "a.b.c = 1\na.b.d = 2\na.e = 3\n",
    "dotted-under-header": "[fruit]\napple.color = \"red\"\napple.taste.sweet = true\n\n[fruit.apple.texture]\nsmooth = true\n",
    "super-table-after": "[x.y.z.w]\na = 1\n[x]\nb = 2\n",
    "implicit-then-dotted": "[a.b.c]\nx = 1\n[a]\nb.d = 2\n",
    "empty-tables": "[a]\n[b.c]\n[d]\n[e.f.g]\n",
    "table-header-whitespace": "[ a . b ]\n[\ta.c\t]\n[[ 'x' ]]\n",
    "array-of-tables": "[[fruit]]\nname = \"apple\"\n[fruit.physical]\ncolor = \"red\"\n[[fruit.variety]]\nname = \"red delicious\"\n[[fruit.variety]]\nname = \"granny smith\"\n[[fruit]]\nname = \"banana\"\n[[fruit.variety]]\nname = \"plantain\"\n",
    "array-of-tables-nested-headers": "[[a]]\n[[a.b]]\n[a.b.c]\nx = 1\n[[a.b]]\n[[a]]\n[a.b2]\n",
    "array-of-tables-empty": "[[a]]\n[[a]]\n[[a]]\n",
    "arrays-mixed": "a = [1, \"two\", 3.0, true, 1979-05-27, [4], {x = 5}]\nb = [[1, 2], [\"a\", 'b'], []]\n",
    "arrays-trailing-comma-comments": "a = [\n  1, # one\n  # alone\n  2,\n\n]\nb = [ # open\n]\nc = [1,]\n",
    "inline-tables": "a = {}\nb = { x = 1 }\nc = { x = 1, y.z = 2, y.w = 3 }\nd = { x = { y = { z = 1 } } }\ne = { 'q k' = [1, 2], \"\" = 3 }\n",
    "inline-table-multiline-value": "a = { b = [\n  1,\n  2,\n], c = \"\"\"\nx\"\"\" }\n",
    "inline-in-arrays": "points = [ { x = 1, y = 2 }, { x = 7, y = 8, z = 9 } ]\n",
    "datetimes": "a = 1979-05-27T07:32:00Z\nb = 1979-05-27T00:32:00-07:00\nc = 1979-05-27T00:32:00.999999-07:00\nd = 1979-05-27 07:32:00Z\ne = 1979-05-27t07:32:00z\nf = 1979-05-27T07:32:00\ng = 1979-05-27T00:32:00.999999\nh = 1979-05-27\ni = 07:32:00\nj = 00:32:00.999999\n",
    "datetime-fraction-beyond-micro": "a = 1979-05-27T00:32:00.123456789Z\nb = 00:00:00.1234567\nc = 1979-05-27T00:32:00.1\n",
    "datetime-leap-days": "a = 2000-02-29\nb = 2024-02-29T00:00:00\nc = 1600-02-29\n",
    "datetime-extremes": "a = 0001-01-01T00:00:00Z\nb = 9999-12-31T23:59:59.999999+23:59\nc = 9999-12-31T23:59:59-23:59\nd = 23:59:59\n",
    "datetime-in-array-and-comment": "a = [1979-05-27, 07:32:00, 1979-05-27 07:32:00] # c\nb = 1979-05-27 # c\n",
    "bools": "a = true\nb = false\nc = [true,false]\n",
    "deep-within-limit": "a." * 63 + "a = 1\n",
    "arrays-deep-within-limit": "a = " + "[" * 63 + "]" * 63 + "\n",
    "whitespace-everywhere": "  \t a \t = \t 1 \t # c\n\t[ t ]\t\n  b=2\n",
    "unicode-in-comments": "# é 中 😀 \u2028\na = 1 # ü\n",
    "key-then-subtable-same-prefix": "[a]\nb = 1\n[a.c]\nd = 2\n[a.e.f]\n",
    "dotted-then-sub-table-header": "a.b = 1\n[a.c]\nd = 2\n",
    "aot-then-super-table": "[[a.b]]\nx = 1\n[a]\nc = 1\n",
    "aot-entries-are-fresh": "[[a]]\n[[a.b]]\n[a.b.c]\nx = 1\n[[a]]\n[a.b.c]\nx = 2\n",
    "aot-sub-table-per-entry": "[[a]]\n[a.b]\nx = 1\n[[a]]\n[a.b]\nx = 2\n",
}

# Refused by TOML 1.0.
INVALID = {
    # Line ends, whitespace, comments.
    "cr-alone": "a = 1\rb = 2\n",
    "cr-alone-in-comment": "a = 1 # c\rd\n",
    "cr-alone-in-multiline": 'a = """x\ry"""\n',
    "control-in-comment": "# a\x01b\na = 1\n",
    "del-in-comment": "# a\x7fb\n",
    "nul-in-comment": "# \x00\n",
    "vertical-tab-as-space": "a =\x0b1\n",
    "form-feed-as-space": "a =\x0c1\n",
    "key-value-split": "a =\n1\n",
    "key-split": "a\n= 1\n",
    "two-pairs-one-line": "a = 1 b = 2\n",
    "bom-in-middle": "a = 1\n\ufeffb = 2\n",
    # Keys.
    "key-empty-bare": "= 1\n",
    "key-unicode-bare": "é = 1\n",
    "key-space-inside": "a b = 1\n",
    "key-multiline-basic": '"""a""" = 1\n',
    "key-multiline-literal": "'''a''' = 1\n",
    "key-trailing-dot": "a. = 1\n",
    "key-leading-dot": ".a = 1\n",
    "key-double-dot": "a..b = 1\n",
    "key-no-value": "a\n",
    "key-hash": "a#b = 1\n",
    "key-duplicate": "a = 1\na = 2\n",
    "key-duplicate-quoted": "a = 1\n\"a\" = 2\n",
    "key-duplicate-literal": "'a' = 1\n\"a\" = 2\n",
    "key-duplicate-escape": "\"\\u0061\" = 1\na = 2\n",
    "key-dotted-over-value": "a = 1\na.b = 2\n",
    "key-value-over-dotted": "a.b = 1\na = 2\n",
    "key-dotted-over-inline": "a = {b = 1}\na.c = 2\n",
    "key-dotted-over-array": "a = [1]\na.b = 2\n",
    "key-dotted-into-header-table": "[a.b]\nx = 1\n[a]\nb.y = 2\n",
    "key-dotted-into-array-of-tables": "[[a.b]]\n[a]\nb.x = 1\n",
    # Integers.
    "int-leading-zero": "a = 01\n",
    "int-leading-zero-signed": "a = -01\n",
    "int-double-underscore": "a = 1__000\n",
    "int-leading-underscore": "a = _1\n",
    "int-trailing-underscore": "a = 1_\n",
    "int-hex-signed": "a = -0x1\n",
    "int-hex-plus": "a = +0xff\n",
    "int-hex-sign-after-prefix": "a = 0x-1\n",
    "int-hex-upper-prefix": "a = 0XFF\n",
    "int-hex-empty": "a = 0x\n",
    "int-hex-underscore-first": "a = 0x_ff\n",
    "int-hex-bad-digit": "a = 0xfg\n",
    "int-oct-bad-digit": "a = 0o8\n",
    "int-bin-bad-digit": "a = 0b102\n",
    "int-oct-upper-prefix": "a = 0O7\n",
    "int-double-sign": "a = +-1\n",
    "int-plus-plus": "a = ++1\n",
    "int-space-inside": "a = 1 000\n",
    "int-trailing-letter": "a = 12a\n",
    # Floats.
    "float-no-digit-after-dot": "a = 1.\n",
    "float-no-digit-before-dot": "a = .5\n",
    "float-signed-no-digit-before-dot": "a = -.5\n",
    "float-dot-then-exponent": "a = 1.e5\n",
    "float-exponent-empty": "a = 1e\n",
    "float-exponent-sign-only": "a = 1e+\n",
    "float-exponent-underscore-first": "a = 1e_5\n",
    "float-underscore-before-exponent": "a = 1_e5\n",
    "float-underscore-after-dot": "a = 1._5\n",
    "float-underscore-before-dot": "a = 1_.5\n",
    "float-leading-zero": "a = 01.5\n",
    "float-leading-zero-exp": "a = 00e1\n",
    "float-double-dot": "a = 1.2.3\n",
    "float-exponent-fraction": "a = 1e1.5\n",
    "float-inf-capital": "a = Inf\n",
    "float-nan-capital": "a = NaN\n",
    "float-infinity": "a = infinity\n",
    "float-inf-underscore": "a = in_f\n",
    "float-hex": "a = 0x1.8p1\n",
    # Booleans.
    "bool-capital": "a = True\n",
    "bool-truncated": "a = tru\n",
    "bool-extra": "a = truer\n",
    "bool-upper": "a = FALSE\n",
    # Strings.
    "string-unknown-escape": 'a = "\\q"\n',
    "string-escape-x": 'a = "\\x41"\n',
    "string-escape-e": 'a = "\\e"\n',
    "string-escape-space": 'a = "\\ "\n',
    "string-u-short": 'a = "\\u12"\n',
    "string-u-plus": 'a = "\\u+123"\n',
    "string-u-minus": 'a = "\\u-123"\n',
    "string-U-plus": 'a = "\\U+0000041"\n',
    "string-u-space": 'a = "\\u 123"\n',
    "string-u-nonhex": 'a = "\\u00g0"\n',
    "string-u-surrogate-high": 'a = "\\uD800"\n',
    "string-u-surrogate-low": 'a = "\\uDFFF"\n',
    "string-U-surrogate": 'a = "\\U0000D83D"\n',
    "string-U-too-large": 'a = "\\U00110000"\n',
    "string-U-huge": 'a = "\\UFFFFFFFF"\n',
    "string-unclosed": 'a = "abc\n',
    "string-unclosed-eof": 'a = "abc',
    "string-literal-unclosed": "a = 'abc\n",
    "string-newline-in-basic": 'a = "a\nb"\n',
    "string-newline-in-literal": "a = 'a\nb'\n",
    "string-control-in-basic": 'a = "a\x01b"\n',
    "string-nul-in-basic": 'a = "a\x00b"\n',
    "string-del-in-basic": 'a = "a\x7fb"\n',
    "string-control-in-literal": "a = 'a\x1fb'\n",
    "string-escape-in-literal-no-effect-quote": "a = 'it\\'s'\n",
    "multiline-control": 'a = """a\x01b"""\n',
    "multiline-literal-control": "a = '''a\x00b'''\n",
    "multiline-unclosed": 'a = """abc\n',
    "multiline-literal-unclosed": "a = '''abc\n",
    "multiline-six-quotes-extra": 'a = """x""""""\n',
    "multiline-literal-six-quotes-extra": "a = '''x''''''\n",
    "multiline-backslash-space-not-eol": 'a = """a\\ b"""\n',
    "multiline-bad-escape": 'a = """\\q"""\n',
    "string-two-strings": 'a = "a" "b"\n',
    "string-raw-bytes-invalid-utf8": b'a = "\xff"\n',
    "string-overlong-utf8": b'a = "\xc0\xaf"\n',
    "string-surrogate-utf8": b'a = "\xed\xa0\x80"\n',
    "comment-invalid-utf8": b"# \xfe\na = 1\n",
    # Date-times.
    "date-month-13": "a = 1979-13-01\n",
    "date-month-00": "a = 1979-00-01\n",
    "date-day-00": "a = 1979-01-00\n",
    "date-day-32": "a = 1979-01-32\n",
    "date-feb-30": "a = 2000-02-30\n",
    "date-feb-29-non-leap": "a = 2023-02-29\n",
    "date-feb-29-century": "a = 1900-02-29\n",
    "date-april-31": "a = 1979-04-31\n",
    "date-short-month": "a = 1979-5-27\n",
    "date-short-year": "a = 79-05-27\n",
    "date-long-year": "a = 19790-05-27\n",
    "date-slashes": "a = 1979/05/27\n",
    "time-hour-24": "a = 24:00:00\n",
    "time-minute-60": "a = 00:60:00\n",
    "time-second-60": "a = 23:59:60\n",
    "time-no-seconds": "a = 07:32\n",
    "time-short-hour": "a = 7:32:00\n",
    "time-fraction-empty": "a = 07:32:00.\n",
    "time-with-offset": "a = 07:32:00Z\n",
    "time-with-numeric-offset": "a = 07:32:00+01:00\n",
    "datetime-no-seconds": "a = 1979-05-27T07:32Z\n",
    "datetime-bad-separator": "a = 1979-05-27X07:32:00\n",
    "datetime-two-spaces": "a = 1979-05-27  07:32:00\n",
    "datetime-trailing-T": "a = 1979-05-27T\n",
    "datetime-offset-hours-only": "a = 1979-05-27T07:32:00+07\n",
    "datetime-offset-no-colon": "a = 1979-05-27T07:32:00+0700\n",
    "datetime-offset-hour-24": "a = 1979-05-27T07:32:00+24:00\n",
    "datetime-offset-minute-60": "a = 1979-05-27T07:32:00+05:60\n",
    "datetime-offset-twice": "a = 1979-05-27T07:32:00ZZ\n",
    "datetime-lower-z-then-junk": "a = 1979-05-27T07:32:00zx\n",
    # Arrays.
    "array-unclosed": "a = [1, 2\n",
    "array-unclosed-eof": "a = [",
    "array-empty-comma": "a = [,]\n",
    "array-double-comma": "a = [1,,2]\n",
    "array-leading-comma": "a = [,1]\n",
    "array-no-comma": "a = [1 2]\n",
    "array-trailing-double-comma": "a = [1,,]\n",
    "array-comment-swallows-close": "a = [1, 2 # ]\n",
    "array-key-inside": "a = [b = 1]\n",
    # Inline tables.
    "inline-trailing-comma": "a = {b = 1,}\n",
    "inline-newline": "a = {b = 1\n}\n",
    "inline-newline-after-comma": "a = {b = 1,\nc = 2}\n",
    "inline-newline-after-open": "a = {\nb = 1}\n",
    "inline-comment": "a = {b = 1 # c\n}\n",
    "inline-empty-comma": "a = {,}\n",
    "inline-double-comma": "a = {b = 1,, c = 2}\n",
    "inline-no-comma": "a = {b = 1 c = 2}\n",
    "inline-duplicate": "a = {b = 1, b = 2}\n",
    "inline-dotted-over-value": "a = {b = 1, b.c = 2}\n",
    "inline-value-over-dotted": "a = {b.c = 1, b = 2}\n",
    "inline-dotted-over-inline": "a = {b = {c = 1}, b.d = 2}\n",
    "inline-unclosed": "a = {b = 1\n",
    "inline-then-header-adds": "a = {b = 1}\n[a.c]\n",
    "inline-then-header-same": "a = {}\n[a]\n",
    "inline-then-aot": "a = {}\n[[a]]\n",
    "inline-then-dotted": "a = {b = 1}\na.c = 2\n",
    "inline-nested-then-header": "a = {b = {c = 1}}\n[a.b.d]\n",
    "inline-in-array-then-header": "a = [{b = 1}]\n[a.c]\n",
    # Tables.
    "table-twice": "[a]\n[a]\n",
    "table-twice-quoted": "[a]\n[\"a\"]\n",
    "table-twice-sub": "[a.b]\n[a.b]\n",
    "table-over-value": "a = 1\n[a]\n",
    "table-over-value-deeper": "a = 1\n[a.b]\n",
    "table-over-dotted": "a.b = 1\n[a]\n",
    "table-over-dotted-sub": "[x]\na.b.c = 1\n[x.a.b]\n",
    "table-over-dotted-within": "[fruit]\napple.color = \"red\"\n[fruit.apple]\n",
    "table-over-array": "a = [1]\n[a]\n",
    "table-over-empty-array": "a = []\n[a.b]\n",
    "table-over-aot": "[[a]]\n[a]\n",
    "table-empty-header": "[]\n",
    "table-unclosed": "[a\n",
    "table-nested-brackets": "[a[b]]\n",
    "table-text-after": "[a] b = 1\n",
    "table-trailing-dot": "[a.]\n",
    "table-newline-inside": "[a\n]\n",
    "table-key-value-on-line": "[a] = 1\n",
    "table-hash-in-key": "[a#b]\n",
    # Arrays of tables.
    "aot-over-static-array": "a = []\n[[a]]\n",
    "aot-over-static-array-of-tables": "a = [{b = 1}]\n[[a]]\n",
    "aot-over-table": "[a]\n[[a]]\n",
    "aot-over-value": "a = 1\n[[a]]\n",
    "aot-over-implicit-table": "[a.b]\n[[a]]\n",
    "aot-unclosed": "[[a]\n",
    "aot-space-in-brackets": "[ [a]]\n",
    "aot-space-in-close": "[[a] ]\n",
    "aot-then-key-over": "[[a]]\n[b]\na = 1\n[[a.c]]\n[a]\n",
    "aot-empty": "[[]]\n",
    "aot-dotted-then-header": "[[a]]\nb.c = 1\n[a.b]\n",
    "dotted-then-header-over-it-later": "[a]\nb.c = 1\n[a.b.d]\n[a.b]\n",
    "inline-dotted-then-header": "a = {b.c = 1}\n[a.b.d]\n",
    "aot-sub-table-twice-in-entry": "[[a]]\n[a.b]\n[a.b]\n",
    # Values.
    "value-missing": "a =\n",
    "value-missing-eof": "a =",
    "value-bare-word": "a = hello\n",
    "value-unquoted-path": "a = /usr/bin\n",
    "value-null": "a = null\n",
    "value-after-comment-start": "a = # 1\n",
    # Beyond the document.
    "header-after-value-same-line": "a = 1 [t]\n",
    "equals-twice": "a = = 1\n",
}

# Where aibox deliberately differs from tomllib: (document, what aibox makes of it as a Python
# value or None for a refusal, why).
DIFFERS = {
    "bom": (
        b"\xef\xbb\xbfa = 1\n# a seed saved by a Windows editor\n",
        {"a": 1},
        "A UTF-8 byte order mark at the start is skipped (editors on Windows write one; TOML 1.0 does not mention it); tomllib refuses it.",
    ),
    "bom-crlf": (
        b"\xef\xbb\xbf[admin]\r\nkey = \"x\" # edited on Windows\r\n",
        {"admin": {"key": "x"}},
        "The same, with CRLF line ends.",
    ),
    "int-above-64-bits": (
        b"a = 9223372036854775808\n",
        None,
        "TOML 1.0: an integer that cannot be represented losslessly must be refused; aibox's are 64-bit, tomllib's unbounded.",
    ),
    "int-below-64-bits": (b"a = -9223372036854775809\n", None, "As above, below the 64-bit minimum."),
    "int-hex-above-64-bits": (b"a = 0x8000000000000000\n", None, "As above, in hex (0x7fffffffffffffff is the largest)."),
    "int-oct-above-64-bits": (b"a = 0o1000000000000000000000\n", None, "As above, in octal."),
    "int-bin-above-64-bits": (b"a = 0b1" + b"0" * 63 + b"\n", None, "As above, in binary."),
    "int-huge-in-array": (b"a = [1, 123456789012345678901234567890]\n", None, "As above, inside an array."),
    "year-zero": (
        b"a = 0000-01-01\nb = 0000-02-29T00:00:00Z\n",
        {"a": ("date-local", "0000-01-01"), "b": ("datetime", "0000-02-29T00:00:00.000000+00:00")},
        "RFC 3339 (and so TOML 1.0) has year 0000, a leap year; Python's datetime starts at year 1, so tomllib refuses it.",
    ),
    "dotted-key-too-deep": (
        b"a." * 64 + b"a = 1\n",
        None,
        "Nesting is limited to 64 levels (dotted keys, headers, arrays, inline tables together) so that no document can exhaust the stack; tomllib has no limit.",
    ),
    "header-too-deep": (b"[" + b"a." * 64 + b"a]\n", None, "As above, for a table header."),
    "aot-too-deep": (
        b"".join(b"[[" + b".".join([b"a"] * n) + b"]]\n" for n in range(1, 34)),
        None,
        "As above: each [[array of tables]] is an array and a table, two levels.",
    ),
    "arrays-too-deep": (b"a = " + b"[" * 65 + b"]" * 65 + b"\n", None, "As above, for arrays (tomllib's own recursion limit is far above)."),
    "inline-tables-too-deep": (b"a = " + b"{b = " * 64 + b"1" + b"}" * 64 + b"\n", None, "As above, for inline tables."),
}


def differs_tree(value):
    """A DIFFERS entry's aibox value as a tree: tuples stand for date-times kept as text."""
    if isinstance(value, dict):
        return {k: differs_tree(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return {"type": value[0], "value": value[1]}
    return tagged(value)


# MARK: The corpus


def corpus():
    """Every file of the corpus: relative path -> bytes."""
    rng = random.Random(SEED)
    gen = Generator(rng)
    files = {}
    valid_docs = []

    def add_valid(name, data, reading):
        files["valid/%s.toml" % name] = data
        files["valid/%s.json" % name] = reading.encode()

    def add(name, data):
        """A document of unknown verdict: tomllib decides where it goes."""
        reading = tomllib_reading(data)
        if reading is None:
            files["invalid/%s.toml" % name] = data
            return
        if not fits_64_bits(tomllib.loads(data.decode("utf-8"))):
            return  # a difference covered by differs/
        add_valid(name, data, reading)

    for name, text in VALID.items():
        data = text.encode("utf-8")
        reading = tomllib_reading(data)
        if reading is None:
            raise SystemExit("written-out valid document %s is refused by tomllib" % name)
        add_valid("spec-" + name, data, reading)
    for name, text in INVALID.items():
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        if tomllib_reading(data) is not None:
            raise SystemExit("written-out invalid document %s is accepted by tomllib" % name)
        files["invalid/spec-%s.toml" % name] = data
    n = 0
    while len(valid_docs) < VALID_GENERATED:
        data = gen.document()
        reading = tomllib_reading(data)
        if reading is None:
            raise SystemExit("the generator made a document tomllib refuses:\n%r" % data)
        n += 1
        if not fits_64_bits(tomllib.loads(data.decode("utf-8"))):
            continue
        valid_docs.append(data)
        add_valid("gen-%04d" % n, data, reading)
    for m in range(MUTATED):
        add("mut-%04d" % (m + 1), mutate(rng, rng.choice(valid_docs)))
    readme = ["# Where aibox's TOML reader deliberately differs from tomllib", ""]
    for name, (data, value, why) in DIFFERS.items():
        files["differs/%s.toml" % name] = data
        if value is not None:
            files["differs/%s.json" % name] = dump(differs_tree(value)).encode()
        reading = tomllib_reading(data)
        if reading is not None:
            files["differs/%s.tomllib.json" % name] = reading.encode()
        readme.append("- `%s.toml`: %s" % (name, why))
    files["differs/README.md"] = ("\n".join(readme) + "\n").encode()
    return files


def on_disk():
    found = {}
    for sub in ("valid", "invalid", "differs"):
        d = os.path.join(HERE, sub)
        if not os.path.isdir(d):
            continue
        for name in sorted(os.listdir(d)):
            with open(os.path.join(d, name), "rb") as f:
                found["%s/%s" % (sub, name)] = f.read()
    return found


def main():
    files = corpus()
    if "--check" in sys.argv[1:]:
        disk = on_disk()
        problems = []
        for path in sorted(set(files) | set(disk)):
            if path not in disk:
                problems.append("missing: " + path)
            elif path not in files:
                problems.append("not generated: " + path)
            elif files[path] != disk[path]:
                problems.append("differs: " + path)
        # Beyond regeneration: every committed document read again by tomllib.
        for path, data in sorted(disk.items()):
            if not path.endswith(".toml"):
                continue
            reading = tomllib_reading(data)
            base = path[: -len(".toml")]
            if path.startswith("valid/") and (reading is None or reading.encode() != disk.get(base + ".json")):
                problems.append("tomllib now reads %s differently" % path)
            if path.startswith("invalid/") and reading is not None:
                problems.append("tomllib now accepts %s" % path)
            if path.startswith("differs/") and (reading.encode() if reading else None) != disk.get(base + ".tomllib.json"):
                problems.append("tomllib now reads %s differently" % path)
        for p in problems[:50]:
            print(p)
        counts = {s: sum(1 for p in disk if p.startswith(s + "/") and p.endswith(".toml")) for s in ("valid", "invalid", "differs")}
        print("checked %d valid, %d invalid, %d differing documents with tomllib (Python %s): %d problems"
              % (counts["valid"], counts["invalid"], counts["differs"], sys.version.split()[0], len(problems)))
        sys.exit(1 if problems else 0)
    for sub in ("valid", "invalid", "differs"):
        d = os.path.join(HERE, sub)
        os.makedirs(d, exist_ok=True)
        for name in os.listdir(d):
            os.remove(os.path.join(d, name))
    for path, data in files.items():
        with open(os.path.join(HERE, path), "wb") as f:
            f.write(data)
    print("wrote %d files" % len(files))


if __name__ == "__main__":
    main()
