#!/usr/bin/python3
"""Self-test of llm_fake.py: starts it as a process and checks every path, every fault,
stream parsing, keep-alive and shutdown, with the standard library's HTTP client.

    python3 llm_fake_selftest.py [--bench N]

Prints one line per check and the fake's own latency; exits 1 on the first failure.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE = os.path.join(HERE, "llm_fake.py")
KEY = "sk-test-0123456789abcdef"
OAI = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
ANT = {"x-api-key": KEY, "anthropic-version": "2023-06-01", "Content-Type": "application/json"}
OLL = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
QUESTION = "What is the capital of France? Answer in one word, please, and then explain the history of it."


class Fake:
    def __init__(self, *args):
        self.dir = tempfile.mkdtemp(prefix="llm-fake-")
        self.port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen([sys.executable, FAKE, "--port", "0", "--port-file", self.port_file, *args])
        deadline = time.monotonic() + 10
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"FAIL the fake did not write {self.port_file} within 10 s (rc {self.proc.poll()})")
            time.sleep(0.01)
        self.port = int(open(self.port_file).read())

    def conn(self, timeout=5):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        finally:
            self.port_file_left = os.path.exists(self.port_file)
            shutil.rmtree(self.dir, ignore_errors=True)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def call(fake, method, path, body=None, headers=None, conn=None, timeout=5):
    c = conn or fake.conn(timeout)
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    c.request(method, path, body=data, headers=headers or {})
    r = c.getresponse()
    raw = r.read()
    if conn is None:
        c.close()
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    return r, doc, raw


def script(fake, *faults):
    r, doc, raw = call(fake, "POST", "/_fake/script", {"faults": list(faults)})
    check(r.status == 200, f"script refused: {raw!r}")


def reset(fake):
    call(fake, "POST", "/_fake/reset", {})


def requests(fake):
    return call(fake, "GET", "/_fake/requests")[1]["requests"]


def wait_for_fault(fake, name, within=3):
    """Waits until the fake has taken fault NAME (polls its request log, bounded)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(e["fault"] == name for e in requests(fake)):
            return
        time.sleep(0.01)
    raise AssertionError(f"the fake did not take fault {name} within {within} s")


def sse(resp):
    """[(event, data)] of an SSE body; raises IncompleteRead when the stream is cut."""
    out, event, data = [], None, []
    while True:
        line = resp.readline()
        if not line:
            return out
        line = line.decode().rstrip("\r\n")
        if line == "":
            if data:
                out.append((event, "\n".join(data)))
            event, data = None, []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def ndjson(resp):
    return [line for line in iter(resp.readline, b"")]


class Raw:
    """A minimal HTTP/1.1 stream client on a raw socket. http.client cannot serve here: its
    readline() reports a cut chunked stream as a clean end, and its socket file refuses to read
    after one timeout. Raw raises IncompleteRead on a cut and survives timeouts between chunks."""

    def __init__(self, fake, path, body, headers, timeout=5):
        self.sock = socket.create_connection(("127.0.0.1", fake.port), timeout=timeout)
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(data)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.sock.sendall(head.encode() + data)
        self.buf, self.body, self.done = b"", b"", False
        self.status = int(self._line().split()[1])
        self.headers = {}
        while (line := self._line()) != b"\r\n":
            k, v = line.decode().split(":", 1)
            self.headers[k.lower()] = v.strip()
        if self.headers.get("transfer-encoding") != "chunked":
            self.body, self.done = self._exact(int(self.headers.get("content-length", 0))), True

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise http.client.IncompleteRead(self.body)
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def readline(self):
        while b"\n" not in self.body and not self.done:
            size = int(self._line().split(b";")[0], 16)
            if size == 0:
                self._line()
                self.done = True
            else:
                self.body += self._exact(size)
                self._exact(2)
        i = self.body.index(b"\n") + 1 if b"\n" in self.body else len(self.body)
        line, self.body = self.body[:i], self.body[i:]
        return line

    def close(self):
        self.sock.close()


def stream_request(fake, path, body, headers, timeout=5):
    c = fake.conn(timeout)
    c.request("POST", path, body=json.dumps(body).encode(), headers=headers)
    return c, c.getresponse()


def oai_body(model="gpt-4o-mini", stream=False, usage=True, **kw):
    b = {"model": model, "messages": [{"role": "system", "content": "You are terse."},
                                      {"role": "user", "content": QUESTION}], **kw}
    if stream:
        b["stream"] = True
        if usage:
            b["stream_options"] = {"include_usage": True}
    return b


def ant_body(model="claude-3-5-haiku-latest", stream=False, **kw):
    return {"model": model, "max_tokens": 256, "system": "You are terse.",
            "messages": [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}], "stream": stream, **kw}


def oll_body(model="llama3.2:3b", stream=True, **kw):
    return {"model": model, "messages": [{"role": "system", "content": "You are terse."},
                                         {"role": "user", "content": QUESTION}], "stream": stream,
            "options": {"num_ctx": 4096}, "keep_alive": "30m", **kw}


def expected(kind, model):
    return f"{kind} {model}: {QUESTION[:60]}"


# prompt: "You are terse." 3 words + 4, QUESTION 18 words + 4
PROMPT_TOKENS = 3 + 4 + len(QUESTION.split()) + 4


def completion_tokens(kind, model):
    return len(expected(kind, model).split())


CHECKS = []


def test(fn):
    CHECKS.append(fn)
    return fn


# --- the three APIs, unfaulted -----------------------------------------------------------


@test
def openai_one_shot_and_keep_alive(fake):
    c = fake.conn()
    socks = set()
    for _ in range(3):
        r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), OAI, conn=c)
        socks.add(id(c.sock))
        check(r.status == 200 and r.getheader("Content-Type") == "application/json", f"status/type {r.status}")
        check(not r.will_close, "the fake closes a keep-alive connection")
    check(len(socks) == 1 and c.sock is not None, "keep-alive: the client had to reconnect")
    c.close()
    check(doc["object"] == "chat.completion" and doc["choices"][0]["message"]["content"] == expected("openai", "gpt-4o-mini"),
          f"content {doc}")
    check(doc["choices"][0]["finish_reason"] == "stop", "finish_reason")
    u = doc["usage"]
    check(u == {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": completion_tokens("openai", "gpt-4o-mini"),
                "total_tokens": PROMPT_TOKENS + completion_tokens("openai", "gpt-4o-mini")}, f"usage {u}")


@test
def openai_stream_with_and_without_usage(fake):
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    check(r.getheader("Content-Type").startswith("text/event-stream"), "content type")
    check(r.getheader("Transfer-Encoding") == "chunked", "chunked")
    events = sse(r)
    check(not r.will_close, "stream closes the connection")
    c.close()
    check(events[-1][1] == "[DONE]", "ends with [DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    check(all(ch["object"] == "chat.completion.chunk" for ch in chunks), "chunk objects")
    check(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "role chunk first")
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks if ch["choices"])
    check(text == expected("openai", "gpt-4o-mini"), f"streamed text {text!r}")
    check(len([ch for ch in chunks if ch["choices"] and ch["choices"][0]["delta"].get("content")]) >= 5,
          "several content deltas")
    check(chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == completion_tokens("openai", "gpt-4o-mini")
          and chunks[-1]["usage"]["prompt_tokens"] == PROMPT_TOKENS, f"usage chunk {chunks[-1]}")
    check(all(ch["usage"] is None for ch in chunks[:-1]), "other chunks carry usage: null")
    check(chunks[-2]["choices"][0]["finish_reason"] == "stop", "finish chunk")
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True, usage=False), OAI)
    events = sse(r)
    c.close()
    chunks = [json.loads(d) for _, d in events[:-1]]
    check(events[-1][1] == "[DONE]" and all(ch["choices"] and "usage" not in ch for ch in chunks),
          "no usage without stream_options.include_usage")


@test
def openai_max_tokens_cuts_reply(fake):
    _, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(max_tokens=3), OAI)
    check(doc["choices"][0]["finish_reason"] == "length" and doc["usage"]["completion_tokens"] == 3
          and len(doc["choices"][0]["message"]["content"].split()) == 3, f"max_tokens {doc}")


@test
def openai_refusals(fake):
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), {"Content-Type": "application/json"})
    check(r.status == 401 and doc["error"]["code"] is None and "didn't provide an API key" in doc["error"]["message"],
          f"no key {r.status} {doc}")
    r, doc, raw = call(fake, "POST", "/v1/chat/completions", oai_body(), {"Authorization": "Bearer sk-wrong-key-98765"})
    check(r.status == 401 and doc["error"]["code"] == "invalid_api_key" and b"sk-wrong-key-98765" not in raw
          and "8765" in doc["error"]["message"], f"wrong key {doc}")
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, OAI)
    check(r.status == 400 and "model parameter" in doc["error"]["message"], f"no model {doc}")
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", {"model": "gpt-4o"}, OAI)
    check(r.status == 400 and doc["error"]["code"] == "missing_required_parameter"
          and doc["error"]["param"] == "messages", f"no messages {doc}")
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", b"{not json", OAI)
    check(r.status == 400 and "could not parse the JSON body" in doc["error"]["message"], f"bad json {doc}")
    r, doc, _ = call(fake, "GET", "/v1/nothing", None, OAI)
    check(r.status == 404 and doc["error"]["message"] == "Invalid URL (GET /v1/nothing)", f"unknown path {doc}")


@test
def anthropic_one_shot_and_stream(fake):
    r, doc, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    exp = expected("anthropic", "claude-3-5-haiku-latest")
    prompt = PROMPT_TOKENS  # the top-level system counts as a message
    check(r.status == 200 and doc["type"] == "message" and doc["content"] == [{"type": "text", "text": exp}]
          and doc["stop_reason"] == "end_turn", f"message {doc}")
    check(doc["usage"] == {"input_tokens": prompt, "output_tokens": len(exp.split())}, f"usage {doc['usage']}")
    check(r.getheader("request-id", "").startswith("req_"), "request-id header")
    c, r = stream_request(fake, "/v1/messages", ant_body(stream=True), ANT)
    check(r.getheader("Content-Type").startswith("text/event-stream"), "content type")
    events = sse(r)
    c.close()
    names = [e for e, _ in events]
    check(names[0] == "message_start" and names[1] == "content_block_start" and "ping" in names
          and names[-3:] == ["content_block_stop", "message_delta", "message_stop"], f"event order {names}")
    datas = [json.loads(d) for _, d in events]
    check(all(d["type"] == e for (e, _), d in zip(events, datas)), "event name = data type")
    check(datas[0]["message"]["usage"]["input_tokens"] == prompt, "input tokens in message_start")
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    check(text == exp and names.count("content_block_delta") >= 5, f"deltas {text!r}")
    check(datas[-2]["usage"]["output_tokens"] == len(exp.split()) and datas[-2]["delta"]["stop_reason"] == "end_turn",
          f"message_delta {datas[-2]}")
    _, doc, _ = call(fake, "POST", "/v1/messages", ant_body(max_tokens=2), ANT)
    check(doc["stop_reason"] == "max_tokens" and doc["usage"]["output_tokens"] == 2, f"max_tokens {doc}")


@test
def anthropic_refusals(fake):
    def refused(body, headers, status, etype, msg):
        r, doc, _ = call(fake, "POST", "/v1/messages", body, headers)
        check(r.status == status and doc["type"] == "error" and doc["error"]["type"] == etype
              and msg in doc["error"]["message"] and doc["request_id"].startswith("req_"),
              f"{msg}: {r.status} {doc}")
    refused(ant_body(), {"x-api-key": KEY}, 400, "invalid_request_error", "anthropic-version: header is required")
    refused(ant_body(), {"anthropic-version": "2023-06-01"}, 401, "authentication_error", "x-api-key header is required")
    refused(ant_body(), dict(ANT, **{"x-api-key": "nope"}), 401, "authentication_error", "invalid x-api-key")
    b = ant_body()
    del b["max_tokens"]
    refused(b, ANT, 400, "invalid_request_error", "max_tokens: Field required")
    refused({"max_tokens": 5, "messages": []}, ANT, 400, "invalid_request_error", "model: Field required")
    refused(ant_body(messages=[{"role": "system", "content": "x"}]), ANT, 400, "invalid_request_error",
            "messages.0.role")


@test
def ollama_native_chat(fake):
    c, r = stream_request(fake, "/api/chat", oll_body(), OLL)
    check(r.getheader("Content-Type") == "application/x-ndjson", f"content type {r.getheader('Content-Type')}")
    lines = ndjson(r)
    c.close()
    objs = [json.loads(l) for l in lines]
    exp = expected("ollama", "llama3.2:3b")
    check(all(l.endswith(b"\n") for l in lines) and len(objs) >= 5, "NDJSON lines")
    check(all(not o["done"] for o in objs[:-1]) and objs[-1]["done"] is True, "done only on the last line")
    check("".join(o["message"]["content"] for o in objs) == exp, "text")
    check(objs[-1]["prompt_eval_count"] == PROMPT_TOKENS and objs[-1]["eval_count"] == len(exp.split())
          and objs[-1]["done_reason"] == "stop", f"final {objs[-1]}")
    r, doc, _ = call(fake, "POST", "/api/chat", oll_body(stream=False), OLL)
    check(r.status == 200 and doc["message"]["content"] == exp and doc["done"] and doc["eval_count"] == len(exp.split()),
          f"stream false {doc}")
    r, doc, _ = call(fake, "POST", "/api/chat", {"model": "llama3.2:3b", "messages": [{"role": "user", "content": "hi"}],
                                                  "options": {"num_predict": 1}, "stream": False}, OLL)
    check(doc["done_reason"] == "length" and doc["eval_count"] == 1, f"num_predict {doc}")
    r, doc, _ = call(fake, "POST", "/api/chat", {"model": "llama3.2:3b", "stream": False}, OLL)
    check(r.status == 200 and doc["done_reason"] == "load" and doc["message"]["content"] == "", f"load {doc}")
    r, doc, _ = call(fake, "POST", "/api/chat", {"messages": []}, OLL)
    check(r.status == 400 and doc == {"error": "model is required"}, f"no model {doc}")
    r, doc, _ = call(fake, "POST", "/api/chat", oll_body(), {"Authorization": "Bearer wrong"})
    check(r.status == 401 and doc == {"error": "unauthorized"}, f"wrong key {doc}")


@test
def model_lists_and_health(fake):
    r, doc, _ = call(fake, "GET", "/v1/models", None, OAI)
    check(r.status == 200 and doc["object"] == "list" and doc["data"][0]["object"] == "model", f"openai models {doc}")
    r, doc, _ = call(fake, "GET", "/v1/models", None, ANT)
    check(r.status == 200 and doc["data"][0]["type"] == "model" and doc["has_more"] is False, f"anthropic models {doc}")
    r, doc, _ = call(fake, "GET", "/v1/models", None, {})
    check(r.status == 401, "models without a key")
    r, doc, _ = call(fake, "GET", "/api/tags", None, OLL)
    check(r.status == 200 and doc["models"][0]["details"]["format"] == "gguf", f"tags {doc}")
    r, doc, _ = call(fake, "GET", "/api/tags")
    check(r.status == 401 and doc == {"error": "unauthorized"}, f"tags without a key {doc}")
    r, doc, _ = call(fake, "GET", "/health")
    check(doc == {"status": "ok"}, "health")
    r, _, raw = call(fake, "GET", "/")
    check(raw == b"Ollama is running", "ollama root")


# --- scripted faults ---------------------------------------------------------------------


@test
def status_faults_every_named_error(fake):
    cases = [
        ("/v1/chat/completions", OAI, oai_body(), [
            ("rate_limit_exceeded", 429, "rate_limit_exceeded"), ("insufficient_quota", 429, "insufficient_quota"),
            ("invalid_api_key", 401, "invalid_api_key"), ("model_not_found", 404, "model_not_found"),
            ("context_length_exceeded", 400, "context_length_exceeded"), ("server_error", 500, None),
            ("overloaded", 503, None)]),
        ("/v1/messages", ANT, ant_body(), [
            ("invalid_request_error", 400, "invalid_request_error"), ("credit_balance_too_low", 400, "invalid_request_error"),
            ("authentication_error", 401, "authentication_error"), ("permission_error", 403, "permission_error"),
            ("not_found_error", 404, "not_found_error"), ("request_too_large", 413, "request_too_large"),
            ("rate_limit_error", 429, "rate_limit_error"), ("enforced_spend_limit_reached", 429, "rate_limit_error"),
            ("api_error", 500, "api_error"), ("overloaded_error", 529, "overloaded_error")]),
        ("/api/chat", OLL, oll_body(stream=False), [
            ("model_not_found", 404, None), ("unauthorized", 401, None), ("server_error", 500, None),
            ("server_busy", 503, None)]),
    ]
    for path, headers, body, errors in cases:
        for name, status, code in errors:
            script(fake, {"fault": "status", "error": name, "match": {"path": path}, "retry_after": "7"})
            r, doc, raw = call(fake, "POST", path, body, headers)
            check(r.status == status and r.getheader("retry-after") == "7", f"{path} {name}: {r.status}")
            if path == "/v1/chat/completions":
                check(doc["error"]["code"] == code and doc["error"]["message"], f"{name} body {doc}")
            elif path == "/v1/messages":
                check(doc["type"] == "error" and doc["error"]["type"] == code, f"{name} body {doc}")
            else:
                check(isinstance(doc["error"], str) and doc["error"], f"{name} body {doc}")
    script(fake, {"fault": "status", "error": "invalid_request_error", "match": {"path": "/v1/messages"}})
    _, doc, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    check(doc["error"]["message"].startswith("prompt is too long"), f"prompt too long {doc}")
    script(fake, {"fault": "status", "error": "enforced_spend_limit_reached"})
    r, doc, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    check(doc["error"]["details"]["error_code"] == "enforced_spend_limit_reached" and r.getheader("retry-after") is None,
          f"spend limit {doc}")
    script(fake, {"fault": "status", "error": "insufficient_quota", "match": {"path": "/v1/chat/completions"}})
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    check(r.status == 429 and json.loads(r.read())["error"]["type"] == "insufficient_quota", "status fault on a stream")
    c.close()
    # a status code alone: the provider's first error of that status, else its generic shape
    script(fake, {"fault": "status", "code": 503}, {"fault": "status", "code": 502}, {"fault": "status", "code": 529})
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)
    check(r.status == 503 and "overloaded" in doc["error"]["message"], f"503 {doc}")
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)
    check(r.status == 502 and doc["error"]["type"] == "server_error", f"502 {doc}")
    r, doc, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    check(r.status == 529 and doc["error"]["type"] == "overloaded_error", f"529 {doc}")
    r, doc, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    check(r.status == 200, "faults are used up")


@test
def fault_matching_times_and_order(fake):
    script(fake, {"fault": "status", "code": 500, "times": 2, "match": {"model": "gpt-4o"}},
           {"fault": "status", "code": 429, "match": {"path": "/v1/chat/completions"}},
           {"fault": "status", "code": 503})
    statuses = [call(fake, "POST", "/v1/chat/completions", oai_body(model=m), OAI)[0].status
                for m in ("gpt-4o-mini", "gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o")]
    check(statuses == [429, 500, 500, 503, 200], f"order/times/match {statuses}")
    script(fake, {"fault": "status", "code": 500, "times": -1, "match": {"stream": True}})
    for _ in range(3):
        c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
        check(r.status == 500, "times -1 keeps faulting")
        r.read()
        c.close()
    check(call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)[0].status == 200, "match stream false")
    reset(fake)
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    check(r.status == 200, "reset clears forever faults")
    r.read()
    c.close()


@test
def hang_before_headers(fake):
    script(fake, {"fault": "hang_before_headers", "seconds": 0.6})
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=0.3)
    body = json.dumps(oai_body()).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
              + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    t0 = time.monotonic()
    try:
        s.recv(1)
        raise AssertionError("a byte arrived during the hang")
    except socket.timeout:
        pass
    s.settimeout(3)
    check(s.recv(1) == b"" and time.monotonic() - t0 >= 0.5, "closed without a byte after the hang")
    s.close()
    # a hang with no end is woken by a reset
    script(fake, {"fault": "hang_before_headers"})
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=3)
    s.sendall(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
              + b"\r\nContent-Length: 23\r\n\r\n{\"model\":\"llama3.2:3b\"}")
    wait_for_fault(fake, "hang_before_headers")
    t0 = time.monotonic()
    reset(fake)
    check(s.recv(1) == b"" and time.monotonic() - t0 < 1, "reset ends a hang")
    s.close()


@test
def stall_mid_stream(fake):
    script(fake, {"fault": "stall", "after": 3, "seconds": 0.8})
    r = Raw(fake, "/v1/chat/completions", oai_body(stream=True), OAI, timeout=0.3)
    got = []
    for _ in range(3):
        got.append(r.readline())
        r.readline()
    check(all(l.startswith(b"data: {") for l in got), f"events before the stall {got}")
    try:
        r.readline()
        raise AssertionError("a byte arrived during the stall")
    except socket.timeout:
        pass
    r.sock.settimeout(3)
    rest = sse(r)
    r.close()
    check(rest[-1][1] == "[DONE]", "the stream resumes after the stall")
    # streamed Anthropic stalls too; a reset ends it (connection closed)
    script(fake, {"fault": "stall", "after": 1})
    r = Raw(fake, "/v1/messages", ant_body(stream=True), ANT, timeout=3)
    first = r.readline()
    check(first == b"event: message_start\n", f"first event {first}")
    r.readline(), r.readline()
    threading.Timer(0.2, reset, (fake,)).start()
    t0 = time.monotonic()
    try:
        sse(r)
        raise AssertionError("a stalled stream ended cleanly after a reset")
    except http.client.IncompleteRead:
        pass
    check(time.monotonic() - t0 < 2, "reset ends a stall")
    r.close()
    script(fake, {"fault": "stall", "seconds": 0.5})
    t0 = time.monotonic()
    r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)
    check(r.status == 200 and doc["usage"] and time.monotonic() - t0 >= 0.45, "a one-shot reply stalls mid-body")


@test
def cut_streams(fake):
    for path, body, headers, terminator in (
            ("/v1/chat/completions", oai_body(stream=True), OAI, "[DONE]"),
            ("/v1/messages", ant_body(stream=True), ANT, "message_stop"),
            ("/api/chat", oll_body(), OLL, '"done":true')):
        script(fake, {"fault": "cut", "after": 4})
        r = Raw(fake, path, body, headers)
        got = []
        try:
            while True:
                line = r.readline()
                if not line:
                    raise AssertionError(f"{path}: the cut stream ended cleanly")
                got.append(line)
        except http.client.IncompleteRead:
            pass
        r.close()
        events = [l for l in got if l.startswith((b"data:", b"{"))]
        check(len(events) == 4 and not any(terminator.encode() in l for l in got), f"{path}: cut after 4: {got}")
    script(fake, {"fault": "cut", "after": 10000})
    r = Raw(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    got = []
    try:
        while True:
            got.append(r.readline())
    except http.client.IncompleteRead:
        pass
    r.close()
    check(any(b'"finish_reason":"stop"' in l for l in got) and not any(b"[DONE]" in l for l in got),
          "cut past the end: everything but the terminator")
    script(fake, {"fault": "cut"})
    c = fake.conn()
    c.request("POST", "/v1/chat/completions", body=json.dumps(oai_body()).encode(), headers=OAI)
    r = c.getresponse()
    try:
        r.read()
        raise AssertionError("a cut one-shot reply read completely")
    except http.client.IncompleteRead as e:
        check(0 < len(e.partial) < int(r.getheader("Content-Length")), "half the body")
    c.close()


@test
def malformed_lines(fake):
    script(fake, {"fault": "malformed", "after": 2})
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    events = sse(r)
    c.close()
    bad = [d for _, d in events if d != "[DONE]" and not _parses(d)]
    check(len(bad) == 1 and events[2][1] == bad[0] and events[-1][1] == "[DONE]", f"openai malformed {bad}")
    script(fake, {"fault": "malformed", "after": 3})
    c, r = stream_request(fake, "/v1/messages", ant_body(stream=True), ANT)
    events = sse(r)
    c.close()
    check(sum(not _parses(d) for _, d in events) == 1 and events[-1][0] == "message_stop", "anthropic malformed")
    script(fake, {"fault": "malformed", "after": 1})
    c, r = stream_request(fake, "/api/chat", oll_body(), OLL)
    lines = ndjson(r)
    c.close()
    check(not _parses(lines[1]) and sum(not _parses(l) for l in lines) == 1 and json.loads(lines[-1])["done"],
          "ollama malformed")
    script(fake, {"fault": "malformed", "after": 1, "line": "data: {}\n\ndata: oops\n\n"})
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    events = sse(r)
    c.close()
    check(events[1][1] == "{}" and events[2][1] == "oops", "custom malformed line")
    script(fake, {"fault": "malformed"})
    r, doc, raw = call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)
    check(r.status == 200 and doc is None and raw.startswith(b'{"id"'), "malformed one-shot body")


def _parses(s):
    try:
        json.loads(s)
        return True
    except ValueError:
        return False


@test
def no_usage(fake):
    script(fake, {"fault": "no_usage", "times": 4})
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    events = sse(r)
    c.close()
    check(events[-1][1] == "[DONE]" and all(json.loads(d)["choices"] and not json.loads(d).get("usage")
                                            for _, d in events[:-1]), "openai: no usage chunk")
    c, r = stream_request(fake, "/v1/messages", ant_body(stream=True), ANT)
    events = sse(r)
    c.close()
    check(events[-1][0] == "message_stop" and not any("usage" in d for _, d in events), "anthropic: no usage")
    c, r = stream_request(fake, "/api/chat", oll_body(), OLL)
    final = json.loads(ndjson(r)[-1])
    c.close()
    check(final["done"] and "eval_count" not in final and "prompt_eval_count" not in final, "ollama: no counts")
    _, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)
    check("usage" not in doc, "one-shot: no usage")


@test
def error_events(fake):
    script(fake, {"fault": "error_event", "after": 4})
    r, _, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    check(r.status == 200, "a one-shot request does not take an error_event")
    c, r = stream_request(fake, "/v1/messages", ant_body(stream=True), ANT)
    check(r.status == 200, "200 first")
    events = sse(r)  # a complete body: no IncompleteRead
    c.close()
    check(len(events) == 5 and events[-1][0] == "error" and json.loads(events[-1][1]) ==
          {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, f"anthropic {events[-1]}")
    script(fake, {"fault": "error_event", "error": "api_error"})
    c, r = stream_request(fake, "/v1/messages", ant_body(stream=True), ANT)
    events = sse(r)
    c.close()
    check(json.loads(events[-1][1])["error"]["type"] == "api_error", "named error event")
    script(fake, {"fault": "error_event"})
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    events = sse(r)
    c.close()
    check(json.loads(events[-1][1])["error"]["type"] == "server_error" and "[DONE]" not in [d for _, d in events],
          "openai in-stream error")
    script(fake, {"fault": "error_event"})
    c, r = stream_request(fake, "/api/chat", oll_body(), OLL)
    lines = ndjson(r)
    c.close()
    check("error" in json.loads(lines[-1]) and len(lines) == 3, "ollama in-stream error")


@test
def delays(fake):
    script(fake, {"fault": "delay_ms", "ms": 60})
    t0 = time.monotonic()
    c, r = stream_request(fake, "/v1/chat/completions", oai_body(stream=True), OAI)
    first = r.readline()
    ttft = time.monotonic() - t0
    events = sse(r)
    total = time.monotonic() - t0
    c.close()
    check(first.startswith(b"data:") and ttft >= 0.055, f"time to first event {ttft:.3f}")
    check(total >= 0.055 * (len(events) + 1), f"per event delay: {total:.3f} for {len(events) + 1} events")
    script(fake, {"fault": "delay_ms", "ms": 80})
    t0 = time.monotonic()
    r, doc, _ = call(fake, "POST", "/v1/messages", ant_body(), ANT)
    check(r.status == 200 and time.monotonic() - t0 >= 0.075, "one-shot delay")
    script(fake, {"fault": "cut", "after": 2, "delay_ms": 50})
    t0 = time.monotonic()
    r = Raw(fake, "/api/chat", oll_body(), OLL)
    try:
        ndjson(r)
        raise AssertionError("cut with delay ended cleanly")
    except http.client.IncompleteRead:
        pass
    r.close()
    check(time.monotonic() - t0 >= 0.095, "delay_ms on another fault")


@test
def script_validation(fake):
    bad = [
        ({"faults": [{"fault": "explode"}]}, "faults[0].fault"),
        ({"faults": [{"fault": "cut", "times": 0}]}, "faults[0].times"),
        ({"faults": [{"fault": "cut", "after": -1}]}, "faults[0].after"),
        ({"faults": [{"fault": "cut", "seconds": 3}]}, "unknown key(s) seconds"),
        ({"faults": [{"fault": "status"}]}, "needs \"code\""),
        ({"faults": [{"fault": "status", "code": 200}]}, "faults[0].code"),
        ({"faults": [{"fault": "status", "error": "overloaded_error", "match": {"path": "/v1/chat/completions"}}]},
         "not a known error of openai"),
        ({"faults": [{"fault": "cut", "match": {"path": "/v2/x"}}]}, "faults[0].match.path"),
        ({"faults": [{"fault": "cut", "match": {"user": "x"}}]}, "faults[0].match"),
        ({"fault": "cut"}, 'expected {"faults"'),
    ]
    for doc, msg in bad:
        r, body, raw = call(fake, "POST", "/_fake/script", doc)
        check(r.status == 400 and msg in body["error"], f"{doc}: {raw!r}")
    r, body, _ = call(fake, "POST", "/_fake/script", b"{oops")
    check(r.status == 400 and body["error"].startswith("/_fake/script:"), "bad JSON script")
    check(call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)[0].status == 200, "nothing queued by bad scripts")


@test
def request_log(fake):
    reset(fake)
    call(fake, "POST", "/v1/chat/completions", oai_body(), OAI)
    script(fake, {"fault": "status", "code": 429})
    call(fake, "POST", "/v1/messages", ant_body(), ANT)
    call(fake, "GET", "/api/tags", None, OLL)
    log = requests(fake)
    check([(e["method"], e["path"], e["status"], e["fault"]) for e in log] ==
          [("POST", "/v1/chat/completions", 200, None), ("POST", "/v1/messages", 429, "status"),
           ("GET", "/api/tags", 200, None)], f"log {log}")
    check(log[0]["headers"]["authorization"] == f"Bearer {KEY}" and log[1]["headers"]["anthropic-version"] == "2023-06-01",
          "headers, lower-case names")
    check(log[0]["body"] == oai_body() and log[0]["seq"] < log[1]["seq"] and log[0]["time"] <= log[1]["time"], "bodies, order")
    reset(fake)
    check(requests(fake) == [], "reset clears the log")


@test
def concurrent_streams(fake):
    results, errors = [], []

    def one(i):
        try:
            c, r = stream_request(fake, "/v1/chat/completions", oai_body(model=f"m{i}", stream=True), OAI)
            ev = sse(r)
            c.close()
            results.append("".join(json.loads(d)["choices"][0]["delta"].get("content") or ""
                                   for _, d in ev[:-1] if json.loads(d)["choices"]))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    check(not errors and sorted(results) == sorted(expected("openai", f"m{i}") for i in range(20)),
          f"20 concurrent streams: {errors}")


def startup_flags():
    """--script FILE, --latency-ms, --models; no --api-key: no key needed."""
    d = tempfile.mkdtemp(prefix="llm-fake-script-")
    path = os.path.join(d, "faults.json")
    with open(path, "w") as f:
        json.dump({"faults": [{"fault": "status", "error": "rate_limit_exceeded", "retry_after": 1}]}, f)
    fake = Fake("--script", path, "--latency-ms", "50", "--models", "gpt-4o-mini,llama3.2:3b")
    try:
        t0 = time.monotonic()
        r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), {})
        check(r.status == 429 and doc["error"]["code"] == "rate_limit_exceeded" and time.monotonic() - t0 >= 0.045,
              f"--script / --latency-ms {r.status} {doc}")
        r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(), {})
        check(r.status == 200, "no key needed without --api-key")
        r, doc, _ = call(fake, "POST", "/v1/chat/completions", oai_body(model="gpt-9"), {})
        check(r.status == 404 and doc["error"]["code"] == "model_not_found", f"--models openai {doc}")
        r, doc, _ = call(fake, "POST", "/v1/messages", ant_body(model="claude-x"), {"anthropic-version": "2023-06-01"})
        check(r.status == 404 and doc["error"]["type"] == "not_found_error", f"--models anthropic {doc}")
        r, doc, _ = call(fake, "POST", "/api/chat", oll_body(model="mistral", stream=False))
        check(r.status == 404 and "not found, try pulling it first" in doc["error"], f"--models ollama {doc}")
        _, doc, _ = call(fake, "GET", "/api/tags")
        check([m["name"] for m in doc["models"]] == ["gpt-4o-mini", "llama3.2:3b"], "tags list --models")
    finally:
        rc = fake.stop()
    check(rc == 0, f"exit status {rc}")
    bad = os.path.join(d, "bad.json")
    with open(bad, "w") as f:
        f.write('{"faults":[{"fault":"nope"}]}')
    p = subprocess.run([sys.executable, FAKE, "--port-file", os.path.join(d, "p"), "--script", bad],
                       capture_output=True, text=True, timeout=10)
    shutil.rmtree(d, ignore_errors=True)
    check(p.returncode != 0 and "faults[0].fault" in p.stderr and bad in p.stderr, f"bad --script: {p.stderr}")


def shutdown(fake):
    """SIGTERM with a hung request in progress: exit 0 at once, port file removed."""
    reset(fake)
    script(fake, {"fault": "hang_before_headers"})
    s = socket.create_connection(("127.0.0.1", fake.port), timeout=3)
    body = json.dumps(oai_body()).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
              + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    wait_for_fault(fake, "hang_before_headers")
    t0 = time.monotonic()
    rc = fake.stop()
    check(rc == 0 and time.monotonic() - t0 < 3, f"SIGTERM: rc {rc} after {time.monotonic() - t0:.2f} s")
    check(not fake.port_file_left, "port file removed")
    s.close()


def bench(fake, n):
    """The fake's own latency over one keep-alive connection (what the agent adds is measured on top)."""
    reset(fake)
    c = fake.conn()
    body = json.dumps(oai_body()).encode()
    one, ttft = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body=body, headers=OAI)
        c.getresponse().read()
        one.append(time.perf_counter() - t0)
    sbody = json.dumps(oai_body(stream=True)).encode()
    for _ in range(n):
        t0 = time.perf_counter()
        c.request("POST", "/v1/chat/completions", body=sbody, headers=OAI)
        r = c.getresponse()
        r.readline()
        ttft.append(time.perf_counter() - t0)
        r.read()
    c.close()
    reset(fake)

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] * 1000

    print(f"     one-shot p50 {pct(one, 50):.3f} ms p99 {pct(one, 99):.3f} ms; "
          f"stream first event p50 {pct(ttft, 50):.3f} ms p99 {pct(ttft, 99):.3f} ms (n={n})")
    # Nagle's algorithm with delayed ACKs would put ~40 ms on every stream event.
    check(pct(one, 50) < 10 and pct(ttft, 50) < 10, "the fake is slow: p50 over 10 ms")


def main():
    n = int(sys.argv[sys.argv.index("--bench") + 1]) if "--bench" in sys.argv else 300
    fake = Fake("--api-key", KEY)
    failed = False
    try:
        for fn in CHECKS:
            reset(fake)
            t0 = time.monotonic()
            try:
                fn(fake)
                print(f"ok   {fn.__name__} ({time.monotonic() - t0:.2f} s)", flush=True)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                failed = True
                print(f"FAIL {fn.__name__}: {type(e).__name__}: {e}", flush=True)
        try:
            bench(fake, n)
            print("ok   bench", flush=True)
        except AssertionError as e:
            failed = True
            print(f"FAIL bench: {e}", flush=True)
        try:
            shutdown(fake)
            print("ok   shutdown", flush=True)
        except AssertionError as e:
            failed = True
            print(f"FAIL shutdown: {e}", flush=True)
        try:
            startup_flags()
            print("ok   startup_flags", flush=True)
        except AssertionError as e:
            failed = True
            print(f"FAIL startup_flags: {e}", flush=True)
    finally:
        fake.stop()
    print("FAILED" if failed else "all passed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
