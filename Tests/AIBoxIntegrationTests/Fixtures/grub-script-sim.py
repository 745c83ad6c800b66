#!/usr/bin/python3
# Runs the GRUB script image/boot/grub-aibox.cfg on a given environment block, as GRUB would
# at power-on, and prints the environment it saves and the slot it boots. It interprets the
# subset of GRUB's script language that the file uses — set, if/elif/else/fi with [ ... ]
# (=, -z, -n), for … in …; do … done, continue, load_env, save_env, menuentry (skipped) — and
# refuses anything else, so the test fails if the script grows beyond what is checked here.
#
#   grub-script-sim.py SCRIPT < environments   →   for each: the saved "KEY=VALUE" lines + "BOOT=X"
# Environments are "KEY=VALUE" lines; several are separated by lines of "---" (in and out).
import re
import sys


def tokenize(text):
    tokens = []
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            tokens.append(";")
            continue
        i, word, quoted = 0, "", False
        while i < len(line):
            c = line[i]
            if c == '"':
                quoted = not quoted
                word += c
            elif not quoted and c in " \t":
                if word:
                    tokens.append(word)
                word = ""
            elif not quoted and c == ";":
                if word:
                    tokens.append(word)
                word = ""
                tokens.append(";")
            elif not quoted and c == "#" and not word:
                break
            else:
                word += c
            i += 1
        if quoted:
            raise SystemExit(f"unterminated quote: {raw}")
        if word:
            tokens.append(word)
        tokens.append(";")
    return tokens


class Continue(Exception):
    pass


class Script:
    def __init__(self, tokens, env):
        self.t, self.i, self.vars, self.env, self.saved = tokens, 0, {}, env, {}

    def peek(self):
        while self.i < len(self.t) and self.t[self.i] == ";":
            self.i += 1
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, expected=None):
        w = self.peek()
        if expected is not None and w != expected:
            raise SystemExit(f"expected {expected!r}, got {w!r} at token {self.i}")
        self.i += 1
        return w

    def expand(self, word):
        word = re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: self.vars.get(m.group(1), ""), word)
        return word.replace('"', "")

    def words_until(self, *ends):
        out = []
        while self.i < len(self.t) and self.t[self.i] not in ends:
            out.append(self.t[self.i])
            self.i += 1
        return out

    def block(self, ends, run):
        while self.peek() not in ends:
            if self.peek() is None:
                raise SystemExit(f"end of script inside a block (expected {ends})")
            self.statement(run)

    def condition(self):
        self.take("[")
        args = [self.expand(w) for w in self.words_until("]")]
        self.take("]")
        if len(args) == 3 and args[1] == "=":
            return args[0] == args[2]
        if len(args) == 2 and args[0] == "-z":
            return args[1] == ""
        if len(args) == 2 and args[0] == "-n":
            return args[1] != ""
        if len(args) == 1 and args[0] in ("-z", "-n"):  # an empty expansion
            return args[0] == "-z"
        raise SystemExit(f"unsupported test: {args}")

    def statement(self, run):
        w = self.take()
        if w == "set":
            assignment = self.t[self.i]
            self.i += 1
            name, _, value = assignment.partition("=")
            if run:
                self.vars[name] = self.expand(value)
        elif w == "load_env":
            names = self.words_until(";")
            if run:
                for n in names:
                    if n in self.env:
                        self.vars[n] = self.env[n]
        elif w == "save_env":
            names = self.words_until(";")
            if run:
                for n in names:
                    self.saved[n] = self.vars.get(n, "")
        elif w == "continue":
            if run:
                raise Continue()
        elif w == "if":
            taken = False
            result = self.condition()  # always parsed; only acted on when running
            self.take("then")
            branch = run and result
            self.block(("elif", "else", "fi"), branch)
            taken = branch
            while self.peek() == "elif":
                self.take("elif")
                result = self.condition()
                self.take("then")
                branch = run and not taken and result
                self.block(("elif", "else", "fi"), branch)
                taken = taken or branch
            if self.peek() == "else":
                self.take("else")
                self.block(("fi",), run and not taken)
            self.take("fi")
        elif w == "for":
            name = self.take()
            self.take("in")
            items = self.words_until(";", "do")
            self.take("do")
            start = self.i
            values = " ".join(self.expand(x) for x in items).split() if run else []
            for value in values:
                self.i = start
                self.vars[name] = value
                try:
                    self.block(("done",), True)
                except Continue:
                    depth = 0  # skip to this loop's done
                    while True:
                        tok = self.t[self.i]
                        if tok == "for":
                            depth += 1
                        if tok == "done":
                            if depth == 0:
                                break
                            depth -= 1
                        self.i += 1
            self.i = start
            self.block(("done",), False)
            self.take("done")
        elif w == "menuentry":
            depth = 0
            while True:
                tok = self.take()
                if tok == "{":
                    depth += 1
                elif tok == "}":
                    depth -= 1
                    if depth == 0:
                        break
        else:
            raise SystemExit(f"unsupported statement {w!r}")

    def run(self):
        while self.peek() is not None:
            self.statement(True)


tokens = tokenize(open(sys.argv[1]).read())
outputs = []
for block in sys.stdin.read().split("\n---\n"):
    env = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    script = Script(tokens, env)
    script.run()
    lines = [f"{k}={script.saved[k]}" for k in sorted(script.saved)]
    lines.append(f"BOOT={script.vars.get('aibox_slot', '')}")
    outputs.append("\n".join(lines))
print("\n---\n".join(outputs))
