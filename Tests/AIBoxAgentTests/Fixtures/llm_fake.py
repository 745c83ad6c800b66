#!/usr/bin/python3
"""Loopback fake of the LLM provider APIs the agent speaks, with scripted faults.

    python3 llm_fake.py --port 0 --port-file F [--api-key K] [--script FILE]
                        [--latency-ms MS] [--models A,B,...] [--max-requests N]

Listens on 127.0.0.1, writes the port to F (write + rename) once listening, serves until
SIGTERM/SIGINT (exit 0). Python 3 standard library only.

Provider paths (wire formats as documented by each provider):
  POST /v1/chat/completions   OpenAI chat completions; JSON, or SSE with "stream": true
                              (usage chunk with "choices": [] only when
                              stream_options.include_usage is true; then "data: [DONE]")
  POST /v1/messages           Anthropic Messages API; JSON, or SSE events with "stream": true
  POST /api/chat              Ollama native chat; NDJSON stream unless "stream": false
  GET  /api/tags              Ollama model list      GET /api/version   GET /   (Ollama)
  GET  /v1/models             OpenAI model list; Anthropic's shape when the request carries
                              x-api-key or anthropic-version
  GET  /health                llama.cpp's health answer {"status":"ok"}

Replies are deterministic: content = "<kind> <model>: " + the first 60 characters of the last
user message (kind = openai | anthropic | ollama); prompt tokens = the words (split on
whitespace) of every message (Anthropic's top-level "system" counts as one more message) + 4
per message; completion tokens = the words of the reply. max_tokens (OpenAI max_tokens or
max_completion_tokens, Anthropic max_tokens, Ollama options.num_predict) smaller than the
reply cuts it to that many words, with finish_reason "length" / stop_reason "max_tokens" /
done_reason "length". A stream sends each word of the reply as its own delta. An Ollama chat
without messages loads the model, as Ollama does: an empty reply with done_reason "load".

Control paths (never recorded, never faulted):
  POST /_fake/script    {"faults": [FAULT, ...]} appended to the queue (400 with the reason
                        when a fault is malformed); answers {"queued": N}
  POST /_fake/reset     clears the faults and the recorded requests; wakes every hang/stall
                        in progress (those connections are closed)
  GET  /_fake/requests  {"requests": [{"seq", "time" (monotonic s), "method", "path",
                        "query", "headers" (lower-case names), "body" (parsed JSON or null),
                        "body_text" (only when not JSON), "fault" (name or null),
                        "status"}], "dropped": N} in arrival order

FAULT = {"fault": NAME, "match": {"path": P, "model": M, "stream": B}, "times": N, ...params}
  match keys are optional (absent = any); times defaults to 1, -1 = forever. A request that
  passes the key and validation checks takes the first queued fault it matches. Every fault
  also takes "delay_ms" (per stream event).
  status               "code" (HTTP status) and/or "error" (the provider's real error body,
                       by name, see ERRORS below), optional "retry_after" (Retry-After header
                       value) and "message" (replaces the body's message)
  hang_before_headers  "seconds" (default 3600): accept the request, send no byte, then close
  stall                "after" events (default 2), then no byte for "seconds" (default 3600),
                       then the rest of the stream; a non-streamed reply stalls mid-body
  cut                  "after" events (default 2), then close without the terminator
                       (a non-streamed reply: half its body, then close)
  malformed            "after" events (default 2), then one garbage line ("line": raw text
                       to send instead), then the rest of the stream
                       (a non-streamed reply: a truncated JSON body)
  no_usage             no usage anywhere (usage chunk, message_start/message_delta usage,
                       prompt_eval_count/eval_count, the JSON reply's usage)
  error_event          streams only: "after" events (default 2), then the provider's in-stream
                       error (an "error" name of ERRORS; by default Anthropic's
                       overloaded_error event, OpenAI's server_error data line, Ollama's
                       {"error": ...} line) and the end of the body
  delay_ms             "ms" before each stream event (before the headers of a JSON reply)
  A stream event is one SSE event or one NDJSON line; "after" never reaches the terminator
  ("data: [DONE]", message_stop, the done:true line).

ERRORS (status fault "error" names; "code" alone picks the first of that status):
  openai:    rate_limit_exceeded 429, insufficient_quota 429, invalid_api_key 401,
             model_not_found 404, context_length_exceeded 400, server_error 500, overloaded 503
  anthropic: invalid_request_error 400 ("prompt is too long"), credit_balance_too_low 400,
             authentication_error 401, permission_error 403, not_found_error 404,
             request_too_large 413, rate_limit_error 429, enforced_spend_limit_reached 429,
             api_error 500, overloaded_error 529
  ollama:    model_not_found 404, unauthorized 401, server_error 500, server_busy 503

--api-key K: OpenAI and Ollama want "Authorization: Bearer K", Anthropic "x-api-key: K" (on
the chat paths and the model lists); a missing or wrong key gets that provider's real 401
body. --models A,B: only these models exist (others get the provider's not-found error); also
what the model lists show. --latency-ms: a fixed delay before every provider answer.
Run it with /usr/bin/python3, as the other test fixtures are run.
"""

import collections
import http
import itertools
import json
import os
import re
import socket
import sys
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402

OPENAI, ANTHROPIC, OLLAMA = "openai", "anthropic", "ollama"
CHAT_PATHS = {"/v1/chat/completions": OPENAI, "/v1/messages": ANTHROPIC, "/api/chat": OLLAMA}
DEFAULT_MODELS = {
    OPENAI: ["gpt-4o-mini", "gpt-4o"],
    ANTHROPIC: ["claude-3-5-haiku-latest", "claude-sonnet-4-0"],
    OLLAMA: ["llama3.2:3b", "qwen2.5:3b"],
}
FAULTS = {"status", "hang_before_headers", "stall", "cut", "malformed", "no_usage", "error_event", "delay_ms"}
FAULT_PARAMS = {
    "status": {"code", "error", "retry_after", "message"},
    "hang_before_headers": {"seconds"},
    "stall": {"after", "seconds"},
    "cut": {"after"},
    "malformed": {"after", "line"},
    "no_usage": set(),
    "error_event": {"after", "error", "message"},
    "delay_ms": {"ms"},
}
COMMON_KEYS = {"fault", "match", "times", "delay_ms"}


def words(text):
    return len(text.split())


def text_of(content):
    """The text of a message's content: a string, or a list of text parts/blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


# The providers' error bodies. Each entry: name -> (status, message(ctx)); ctx has model,
# prompt tokens, the key sent and the fault's params.
def masked(key):
    if not key:
        return "sk-fake****"
    return key[:3] + "*" * max(len(key) - 7, 4) + key[-4:] if len(key) > 8 else "*" * len(key)


OPENAI_ERRORS = {
    "rate_limit_exceeded": (429, "tokens", "rate_limit_exceeded", None, lambda c: (
        f"Rate limit reached for {c['model']} in organization org-fake on tokens per min (TPM): "
        f"Limit 30000, Used 30000, Requested {c['prompt']}. Please try again in 2s. "
        "Visit https://platform.openai.com/account/rate-limits to learn more.")),
    "insufficient_quota": (429, "insufficient_quota", "insufficient_quota", None, lambda c: (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, read the docs: "
        "https://platform.openai.com/docs/guides/error-codes/api-errors.")),
    "invalid_api_key": (401, "invalid_request_error", "invalid_api_key", None, lambda c: (
        f"Incorrect API key provided: {masked(c['key'])}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.")),
    "model_not_found": (404, "invalid_request_error", "model_not_found", None, lambda c: (
        f"The model `{c['model']}` does not exist or you do not have access to it.")),
    "context_length_exceeded": (400, "invalid_request_error", "context_length_exceeded", "messages", lambda c: (
        f"This model's maximum context length is {c['context']} tokens. However, your messages "
        f"resulted in {max(c['prompt'], c['context'] + 1)} tokens. Please reduce the length of the messages.")),
    "server_error": (500, "server_error", None, None, lambda c: (
        "The server had an error while processing your request. Sorry about that!")),
    "overloaded": (503, "server_error", None, None, lambda c: (
        "That model is currently overloaded with other requests. You can retry your request, or "
        "contact us through our help center at help.openai.com if the error persists.")),
}
ANTHROPIC_ERRORS = {
    "invalid_request_error": (400, "invalid_request_error", lambda c: (
        f"prompt is too long: {max(c['prompt'], c['context'] + 1)} tokens > {c['context']} maximum")),
    "credit_balance_too_low": (400, "invalid_request_error", lambda c: (
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
        "to upgrade or purchase credits.")),
    "authentication_error": (401, "authentication_error", lambda c: "invalid x-api-key"),
    "permission_error": (403, "permission_error", lambda c: (
        "Your API key does not have permission to use the specified resource.")),
    "not_found_error": (404, "not_found_error", lambda c: f"model: {c['model']}"),
    "request_too_large": (413, "request_too_large", lambda c: (
        "Request exceeds the maximum allowed number of bytes.")),
    "rate_limit_error": (429, "rate_limit_error", lambda c: (
        "This request would exceed the rate limit for your organization (org-fake) of 50 requests "
        "per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see "
        "the response headers for current usage. Please reduce the prompt length or the maximum "
        "tokens requested, or try again later.")),
    "enforced_spend_limit_reached": (429, "rate_limit_error", lambda c: (
        "You have reached your organization's monthly spend limit. Usage will resume at the start "
        "of next month, or raise the limit by moving to a higher tier.")),
    "api_error": (500, "api_error", lambda c: "Internal server error"),
    "overloaded_error": (529, "overloaded_error", lambda c: "Overloaded"),
}
OLLAMA_ERRORS = {
    "model_not_found": (404, lambda c: f'model "{c["model"]}" not found, try pulling it first'),
    "unauthorized": (401, lambda c: "unauthorized"),
    "server_error": (500, lambda c: "llama runner process has terminated: exit status 2"),
    "server_busy": (503, lambda c: "server busy, please try again.  maximum pending requests exceeded"),
}
ERRORS = {OPENAI: OPENAI_ERRORS, ANTHROPIC: ANTHROPIC_ERRORS, OLLAMA: OLLAMA_ERRORS}
ALL_ERROR_NAMES = set(OPENAI_ERRORS) | set(ANTHROPIC_ERRORS) | set(OLLAMA_ERRORS)


def error_body(kind, name, ctx, message=None, request_id="req_fake"):
    """(status, body dict) of the provider's error NAME."""
    if kind == OPENAI:
        status, etype, code, param, msg = OPENAI_ERRORS[name]
        return status, {"error": {"message": message or msg(ctx), "type": etype, "param": param, "code": code}}
    if kind == ANTHROPIC:
        status, etype, msg = ANTHROPIC_ERRORS[name]
        err = {"type": etype, "message": message or msg(ctx)}
        if name == "enforced_spend_limit_reached":
            err["details"] = {"error_code": "enforced_spend_limit_reached"}
        return status, {"type": "error", "error": err, "request_id": request_id}
    status, msg = OLLAMA_ERRORS[name]
    return status, {"error": message or msg(ctx)}


def generic_error_body(kind, status, message, request_id="req_fake"):
    """A body in the provider's error shape for a status without a named error."""
    if kind == OPENAI:
        etype = "server_error" if status >= 500 else "invalid_request_error"
        return {"error": {"message": message, "type": etype, "param": None, "code": None}}
    if kind == ANTHROPIC:
        etype = "api_error" if status >= 500 else "invalid_request_error"
        return {"type": "error", "error": {"type": etype, "message": message}, "request_id": request_id}
    return {"error": message}


class ScriptError(ValueError):
    pass


def validate_fault(i, f):
    where = f"faults[{i}]"
    if not isinstance(f, dict):
        raise ScriptError(f"{where}: expected an object like {{\"fault\": \"cut\"}}, got {json.dumps(f)}")
    name = f.get("fault")
    if name not in FAULTS:
        raise ScriptError(f"{where}.fault: {json.dumps(name)} is not a fault; one of {', '.join(sorted(FAULTS))}")
    unknown = set(f) - COMMON_KEYS - FAULT_PARAMS[name]
    if unknown:
        allowed = sorted(COMMON_KEYS | FAULT_PARAMS[name])
        raise ScriptError(f"{where}: unknown key(s) {', '.join(sorted(unknown))} for fault {name}; allowed: {', '.join(allowed)}")
    match = f.get("match", {})
    if not isinstance(match, dict) or set(match) - {"path", "model", "stream"}:
        raise ScriptError(f"{where}.match: an object with optional keys path, model, stream; got {json.dumps(match)}")
    if "path" in match and match["path"] not in CHAT_PATHS:
        raise ScriptError(f"{where}.match.path: {json.dumps(match['path'])} is not one of {', '.join(CHAT_PATHS)}")
    if "stream" in match and not isinstance(match["stream"], bool):
        raise ScriptError(f"{where}.match.stream: true or false, got {json.dumps(match['stream'])}")
    times = f.get("times", 1)
    if not isinstance(times, int) or isinstance(times, bool) or (times < 1 and times != -1):
        raise ScriptError(f"{where}.times: a count >= 1, or -1 for forever; got {json.dumps(times)}")
    for key in ("after",):
        if key in f and (not isinstance(f[key], int) or isinstance(f[key], bool) or f[key] < 0):
            raise ScriptError(f"{where}.{key}: a count of stream events >= 0; got {json.dumps(f[key])}")
    for key in ("seconds", "ms", "delay_ms"):
        if key in f and (not isinstance(f[key], (int, float)) or isinstance(f[key], bool) or f[key] < 0):
            raise ScriptError(f"{where}.{key}: a number >= 0; got {json.dumps(f[key])}")
    if name == "status":
        code, err = f.get("code"), f.get("error")
        if code is None and err is None:
            raise ScriptError(f"{where}: a status fault needs \"code\" (an HTTP status) or \"error\" (an error name)")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599):
            raise ScriptError(f"{where}.code: an HTTP error status 400-599; got {json.dumps(code)}")
    if "error" in f:
        err = f["error"]
        kind = CHAT_PATHS.get(match.get("path"))
        known = set(ERRORS[kind]) if kind else ALL_ERROR_NAMES
        if err not in known:
            raise ScriptError(f"{where}.error: {json.dumps(err)} is not a known error"
                              f"{' of ' + kind if kind else ''}; one of {', '.join(sorted(known))}")
    if "retry_after" in f and not isinstance(f["retry_after"], (str, int, float)):
        raise ScriptError(f"{where}.retry_after: a header value (string or number); got {json.dumps(f['retry_after'])}")
    if "line" in f and not isinstance(f["line"], str):
        raise ScriptError(f"{where}.line: a string; got {json.dumps(f['line'])}")
    if "message" in f and not isinstance(f["message"], str):
        raise ScriptError(f"{where}.message: a string; got {json.dumps(f['message'])}")
    return dict(f, times=times)


def parse_script(doc):
    if not isinstance(doc, dict) or not isinstance(doc.get("faults"), list) or set(doc) - {"faults"}:
        raise ScriptError('expected {"faults": [ ... ]}')
    return [validate_fault(i, f) for i, f in enumerate(doc["faults"])]


class State:
    def __init__(self, max_requests):
        self.lock = threading.Lock()
        self.faults = []
        self.requests = collections.deque(maxlen=max_requests)
        self.dropped = 0
        self.seq = itertools.count(1)
        self.wake = threading.Event()  # set (and replaced) by reset/shutdown: ends hangs and stalls

    def add(self, faults):
        with self.lock:
            self.faults.extend(faults)
            return len(self.faults)

    def reset(self):
        with self.lock:
            self.faults.clear()
            self.requests.clear()
            self.dropped = 0
            old, self.wake = self.wake, threading.Event()
        old.set()

    def record(self, entry):
        with self.lock:
            entry["seq"] = next(self.seq)
            if len(self.requests) == self.requests.maxlen:
                self.dropped += 1
            self.requests.append(entry)
            return self.wake

    def take(self, path, model, stream):
        def match(f):
            m = f.get("match", {})
            return (m.get("path", path) == path and m.get("model", model) == model and m.get("stream", stream) == stream
                    and (stream or f["fault"] != "error_event"))

        with self.lock:
            return fake_server.take_fault(self.faults, match)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "llm-fake"
    sys_version = ""

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    # --- wire helpers ---------------------------------------------------------------

    def head(self, status, ctype, length=None, extra=()):
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Overloaded" if status == 529 else "Error"
        lines = [f"HTTP/1.1 {status} {reason}", f"Date: {formatdate(usegmt=True)}", f"Content-Type: {ctype}"]
        lines.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
        lines.extend(f"{k}: {v}" for k, v in extra)
        if self.entry is not None:
            self.entry["status"] = status
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_json(self, status, obj, extra=(), ctype="application/json"):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.wfile.write(self.head(status, ctype, len(body), extra) + body)

    def send_text(self, status, text, ctype="text/plain; charset=utf-8"):
        body = text.encode()
        self.wfile.write(self.head(status, ctype, len(body)) + body)

    @staticmethod
    def chunk(data):
        return b"%x\r\n%s\r\n" % (len(data), data)

    def wait(self, seconds):
        """Sleeps up to SECONDS; True when a reset or shutdown cut the wait short."""
        return self.wake.wait(seconds)

    # --- request intake -------------------------------------------------------------

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PUT(self):
        self.dispatch("PUT")

    def dispatch(self, method):
        self.entry = None
        path, _, query = self.path.partition("?")
        try:
            raw = self.read_body()
            if path.startswith("/_fake/"):
                return self.control(method, path, raw)
            try:
                body = json.loads(raw) if raw else None
                body_ok = True
            except ValueError:
                body, body_ok = None, False
            self.entry = {
                "time": time.monotonic(), "method": method, "path": path, "query": query,
                "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body,
                "fault": None, "status": None,
            }
            if not body_ok:
                self.entry["body_text"] = raw.decode("utf-8", "replace")
            self.wake = STATE.record(self.entry)
            if LATENCY:
                self.wait(LATENCY)
            self.route(method, path, body, body_ok)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True

    def control(self, method, path, raw):
        if method == "POST" and path == "/_fake/reset":
            STATE.reset()
            return self.send_json(200, {"ok": True})
        if method == "GET" and path == "/_fake/requests":
            with STATE.lock:
                doc = {"requests": list(STATE.requests), "dropped": STATE.dropped}
            return self.send_json(200, doc)
        if method == "POST" and path == "/_fake/script":
            try:
                faults = parse_script(json.loads(raw or b"null"))
            except ValueError as e:  # ScriptError and JSONDecodeError
                return self.send_json(400, {"error": f"/_fake/script: {e}"})
            return self.send_json(200, {"queued": STATE.add(faults)})
        return self.send_json(404, {"error": f"no control path {method} {path}; "
                                             "POST /_fake/script, POST /_fake/reset, GET /_fake/requests"})

    def route(self, method, path, body, body_ok):
        kind = CHAT_PATHS.get(path)
        if kind and method == "POST":
            return self.chat(kind, path, body, body_ok)
        if method == "GET":
            if path == "/v1/models":
                anth = "x-api-key" in self.entry["headers"] or "anthropic-version" in self.entry["headers"]
                return self.models(ANTHROPIC if anth else OPENAI)
            if path == "/api/tags":
                return self.models(OLLAMA)
            if path == "/api/version":
                return self.send_json(200, {"version": "0.12.6"})
            if path == "/":
                return self.send_text(200, "Ollama is running")
            if path == "/health":
                return self.send_json(200, {"status": "ok"})
        if path.startswith("/v1/"):
            return self.send_json(404, generic_error_body(OPENAI, 404, f"Invalid URL ({method} {path})"))
        return self.send_text(404, "404 page not found")

    # --- authentication and validation, as the real APIs answer -------------------

    def auth_error(self, kind):
        """(status, body) when --api-key is set and the request's key is missing or wrong."""
        if API_KEY is None:
            return None
        h = self.entry["headers"]
        if kind == ANTHROPIC:
            key = h.get("x-api-key")
            if key is None:
                return 401, {"type": "error", "error": {"type": "authentication_error",
                                                        "message": "x-api-key header is required"},
                             "request_id": self.request_id()}
            if key != API_KEY:
                return error_body(ANTHROPIC, "authentication_error", {}, request_id=self.request_id())
            return None
        auth = h.get("authorization")
        key = auth[7:] if auth and auth.startswith("Bearer ") else None
        if key == API_KEY:
            return None
        if kind == OLLAMA:
            return error_body(OLLAMA, "unauthorized", {})
        if auth is None:
            return 401, generic_error_body(OPENAI, 401, (
                "You didn't provide an API key. You need to provide your API key in an Authorization "
                "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
                "(with blank username) if you're accessing the API from your browser and are prompted for a "
                "username and password. You can obtain an API key from https://platform.openai.com/account/api-keys."))
        return error_body(OPENAI, "invalid_api_key", {"key": key or auth})

    def request_id(self):
        return f"req_fake{self.entry['seq']:06d}"

    def invalid(self, kind, body, body_ok):
        """(status, body) for a request the real API would refuse, or None."""
        rid = self.request_id()
        if kind == OPENAI:
            if not body_ok or not isinstance(body, dict):
                return 400, generic_error_body(OPENAI, 400, (
                    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
                    "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
                    "contact us through our help center at help.openai.com.)"))
            if not isinstance(body.get("model"), str) or not body["model"]:
                return 400, generic_error_body(OPENAI, 400, "you must provide a model parameter")
            msgs = body.get("messages")
            if msgs is None:
                return 400, {"error": {"message": "Missing required parameter: 'messages'.",
                                       "type": "invalid_request_error", "param": "messages",
                                       "code": "missing_required_parameter"}}
            if not isinstance(msgs, list) or not msgs:
                return 400, {"error": {"message": "Invalid 'messages': empty array. Expected an array with "
                                                  "minimum length 1, but got an empty array instead.",
                                       "type": "invalid_request_error", "param": "messages",
                                       "code": "empty_array"}}
            return None
        if kind == ANTHROPIC:
            def bad(message):
                return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": message},
                             "request_id": rid}
            if "anthropic-version" not in self.entry["headers"]:
                return bad("anthropic-version: header is required")
            if not body_ok or not isinstance(body, dict):
                return bad("There was an issue with the format or content of your request: the body is not valid JSON.")
            for field in ("model", "max_tokens", "messages"):
                if field not in body:
                    return bad(f"{field}: Field required")
            if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1:
                return bad("max_tokens: Input should be a valid integer greater than or equal to 1")
            msgs = body["messages"]
            if not isinstance(msgs, list) or not msgs:
                return bad("messages: at least one message is required")
            for i, m in enumerate(msgs):
                if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
                    return bad(f"messages.{i}.role: Input should be 'user' or 'assistant'")
            return None
        if not body_ok or not isinstance(body, dict):
            return 400, {"error": "invalid character in request body: not valid JSON"}
        if not isinstance(body.get("model"), str) or not body["model"]:
            return 400, {"error": "model is required"}
        return None

    # --- the chat endpoints -------------------------------------------------------

    def chat(self, kind, path, body, body_ok):
        refusal = self.auth_error(kind) or self.invalid(kind, body, body_ok)
        if refusal:
            return self.send_json(refusal[0], refusal[1], self.id_headers(kind))
        model = body["model"]
        stream = body.get("stream", kind == OLLAMA) is True
        fault = STATE.take(path, model, stream)
        if fault:
            self.entry["fault"] = fault["fault"]
        if MODELS is not None and model not in MODELS and not (fault and fault["fault"] == "status"):
            name = {OPENAI: "model_not_found", ANTHROPIC: "not_found_error", OLLAMA: "model_not_found"}[kind]
            status, err = error_body(kind, name, {"model": model}, request_id=self.request_id())
            return self.send_json(status, err, self.id_headers(kind))
        reply = Reply(kind, body, self.entry["seq"])
        if fault and fault["fault"] == "status":
            return self.status_fault(kind, fault, reply)
        if fault and fault["fault"] == "hang_before_headers":
            self.wait(fault.get("seconds", 3600))
            self.close_connection = True
            return
        if kind == OLLAMA and not body.get("messages"):
            reply.load_only()
        if stream:
            return self.stream(kind, reply, fault)
        return self.one_shot(kind, reply, fault)

    def id_headers(self, kind):
        rid = self.request_id()
        if kind == OPENAI:
            return (("x-request-id", rid), ("openai-processing-ms", "1"))
        if kind == ANTHROPIC:
            return (("request-id", rid),)
        return ()

    def status_fault(self, kind, fault, reply):
        ctx = {"model": reply.model, "prompt": reply.prompt_tokens, "key": self.sent_key(kind),
               "context": {OPENAI: 8192, ANTHROPIC: 200000, OLLAMA: 2048}[kind]}
        name, code = fault.get("error"), fault.get("code")
        if name is None:
            name = next((n for n, e in ERRORS[kind].items() if e[0] == code), None)
        if name is not None and name not in ERRORS[kind]:
            msg = f"llm_fake: fault error {name!r} is not a {kind} error; one of {', '.join(sorted(ERRORS[kind]))}"
            print(msg, file=sys.stderr, flush=True)
            return self.send_json(500, {"llm_fake_error": msg})
        if name is not None:
            status, err = error_body(kind, name, ctx, fault.get("message"), self.request_id())
        else:
            try:
                phrase = http.HTTPStatus(code).phrase
            except ValueError:
                phrase = "Error"
            status, err = code, generic_error_body(kind, code, fault.get("message") or phrase, self.request_id())
        status = code or status
        extra = list(self.id_headers(kind))
        if "retry_after" in fault:
            extra.append(("retry-after", str(fault["retry_after"])))
        if fault.get("delay_ms"):
            self.wait(fault["delay_ms"] / 1000)
        ctype = "application/json; charset=utf-8" if kind == OLLAMA else "application/json"
        self.send_json(status, err, extra, ctype)

    def sent_key(self, kind):
        h = self.entry["headers"]
        if kind == ANTHROPIC:
            return h.get("x-api-key")
        auth = h.get("authorization") or ""
        return auth[7:] if auth.startswith("Bearer ") else auth

    def one_shot(self, kind, reply, fault):
        name = fault["fault"] if fault else None
        delay = (fault.get("ms", 0) if name == "delay_ms" else fault.get("delay_ms", 0)) if fault else 0
        if delay and self.wait(delay / 1000):
            self.close_connection = True
            return
        obj = reply.json(usage=name != "no_usage")
        data = json.dumps(obj, separators=(",", ":")).encode()
        ctype = "application/json; charset=utf-8" if kind == OLLAMA else "application/json"
        extra = self.id_headers(kind)
        if name == "malformed":
            data = data[: len(data) // 2]
        if name in ("cut", "stall"):
            half = len(data) // 2
            self.wfile.write(self.head(200, ctype, len(data), extra) + data[:half])
            if name == "cut" or self.wait(fault.get("seconds", 3600)):
                self.close_connection = True
                return
            self.wfile.write(data[half:])
            return
        self.wfile.write(self.head(200, ctype, len(data), extra) + data)

    def stream(self, kind, reply, fault):
        name = fault["fault"] if fault else None
        events = reply.events(usage=name != "no_usage")
        last = len(events) - 1  # the terminator: "[DONE]", message_stop, the done:true line
        after = min(fault.get("after", 2), last) if fault else None
        delay = (fault.get("ms", 0) if name == "delay_ms" else fault.get("delay_ms", 0)) if fault else 0
        ctype = {OPENAI: "text/event-stream; charset=utf-8", ANTHROPIC: "text/event-stream; charset=utf-8",
                 OLLAMA: "application/x-ndjson"}[kind]
        extra = list(self.id_headers(kind)) + ([("Cache-Control", "no-cache")] if kind != OLLAMA else [])
        if delay and self.wait(delay / 1000):
            self.close_connection = True
            return
        self.wfile.write(self.head(200, ctype, None, extra))
        for i, event in enumerate(events):
            if i == after:
                if name == "cut":
                    self.close_connection = True
                    return
                if name == "stall" and self.wait(fault.get("seconds", 3600)):
                    self.close_connection = True
                    return
                if name == "malformed":
                    self.wfile.write(self.chunk(fault["line"].encode() if "line" in fault else reply.garbage()))
                if name == "error_event":
                    self.wfile.write(self.chunk(reply.error_event(fault)) + b"0\r\n\r\n")
                    return
            if i and delay and self.wait(delay / 1000):
                self.close_connection = True
                return
            self.wfile.write(self.chunk(event))
        self.wfile.write(b"0\r\n\r\n")

    def models(self, kind):
        refusal = self.auth_error(kind)
        if refusal:
            return self.send_json(refusal[0], refusal[1], self.id_headers(kind))
        if kind == OLLAMA:
            names = MODELS if MODELS is not None else DEFAULT_MODELS[OLLAMA]
            return self.send_json(200, {"models": [{
                "name": n, "model": n, "modified_at": "2025-01-01T00:00:00Z", "size": 2019393189,
                "digest": "%064x" % (hash(n) & (2**256 - 1)),
                "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                            "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}} for n in names]},
                ctype="application/json; charset=utf-8")
        names = MODELS if MODELS is not None else DEFAULT_MODELS[kind]
        if kind == ANTHROPIC:
            data = [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"} for n in names]
            return self.send_json(200, {"data": data, "has_more": False,
                                        "first_id": names[0] if names else None,
                                        "last_id": names[-1] if names else None})
        return self.send_json(200, {"object": "list", "data": [
            {"id": n, "object": "model", "created": 1700000000, "owned_by": "system"} for n in names]})


class Reply:
    """The deterministic answer to one chat request, in each provider's wire format."""

    def __init__(self, kind, body, seq):
        self.kind, self.seq = kind, seq
        self.model = body["model"]
        msgs = body.get("messages") or []
        msgs = msgs if isinstance(msgs, list) else []
        texts = [text_of(m.get("content")) for m in msgs if isinstance(m, dict)]
        if kind == ANTHROPIC and body.get("system"):
            texts.append(text_of(body["system"]))
        self.prompt_tokens = sum(words(t) + 4 for t in texts)
        last_user = next((text_of(m.get("content")) for m in reversed(msgs)
                          if isinstance(m, dict) and m.get("role") == "user"), "")
        content = f"{kind} {self.model}: {last_user[:60]}"
        self.pieces = re.findall(r"\S+\s*", content)
        limit = body.get("max_tokens") if kind != OLLAMA else (body.get("options") or {}).get("num_predict")
        if kind == OPENAI and body.get("max_completion_tokens") is not None:
            limit = body["max_completion_tokens"]
        self.stop = {OPENAI: "stop", ANTHROPIC: "end_turn", OLLAMA: "stop"}[kind]
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < len(self.pieces):
            self.pieces = self.pieces[:limit]
            self.stop = {OPENAI: "length", ANTHROPIC: "max_tokens", OLLAMA: "length"}[kind]
        self.content = "".join(self.pieces)
        self.completion_tokens = words(self.content)
        self.created = int(time.time())
        self.id = {OPENAI: f"chatcmpl-fake{seq:06d}", ANTHROPIC: f"msg_fake{seq:06d}", OLLAMA: ""}[kind]
        self.include_usage = kind == OPENAI and isinstance(body.get("stream_options"), dict) and \
            body["stream_options"].get("include_usage") is True

    def load_only(self):
        """Ollama answers a chat without messages by loading the model: done_reason "load"."""
        self.pieces, self.content, self.stop, self.completion_tokens = [], "", "load", 0

    def created_at(self):
        return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())

    def ollama_stats(self, usage):
        stats = {"total_duration": 1000000, "load_duration": 100000}
        if usage:
            stats.update({"prompt_eval_count": self.prompt_tokens, "prompt_eval_duration": 300000,
                          "eval_count": self.completion_tokens, "eval_duration": 600000})
        return stats

    def json(self, usage=True):
        if self.kind == OPENAI:
            obj = {"id": self.id, "object": "chat.completion", "created": self.created, "model": self.model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": self.content, "refusal": None},
                                "logprobs": None, "finish_reason": self.stop}],
                   "system_fingerprint": "fp_fake"}
            if usage:
                obj["usage"] = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                                "total_tokens": self.prompt_tokens + self.completion_tokens}
            return obj
        if self.kind == ANTHROPIC:
            obj = {"id": self.id, "type": "message", "role": "assistant", "model": self.model,
                   "content": [{"type": "text", "text": self.content}], "stop_reason": self.stop,
                   "stop_sequence": None}
            if usage:
                obj["usage"] = {"input_tokens": self.prompt_tokens, "output_tokens": self.completion_tokens}
            return obj
        obj = {"model": self.model, "created_at": self.created_at(),
               "message": {"role": "assistant", "content": self.content}, "done_reason": self.stop, "done": True}
        obj.update(self.ollama_stats(usage))
        return obj

    def events(self, usage=True):
        """The stream, one entry per SSE event / NDJSON line; the last one is the terminator."""
        dump = lambda o: json.dumps(o, separators=(",", ":"))
        if self.kind == OPENAI:
            def chunk(delta, finish=None):
                o = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "system_fingerprint": "fp_fake",
                     "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
                if self.include_usage:
                    o["usage"] = None
                return f"data: {dump(o)}\n\n".encode()
            out = [chunk({"role": "assistant", "content": "", "refusal": None})]
            out += [chunk({"content": p}) for p in self.pieces]
            out.append(chunk({}, self.stop))
            if self.include_usage and usage:
                o = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
                     "system_fingerprint": "fp_fake", "choices": [],
                     "usage": {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                               "total_tokens": self.prompt_tokens + self.completion_tokens}}
                out.append(f"data: {dump(o)}\n\n".encode())
            out.append(b"data: [DONE]\n\n")
            return out
        if self.kind == ANTHROPIC:
            def ev(name, o):
                return f"event: {name}\ndata: {dump(o)}\n\n".encode()
            msg = {"id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
                   "stop_reason": None, "stop_sequence": None}
            if usage:
                msg["usage"] = {"input_tokens": self.prompt_tokens, "output_tokens": 1}
            delta = {"type": "message_delta", "delta": {"stop_reason": self.stop, "stop_sequence": None}}
            if usage:
                delta["usage"] = {"output_tokens": self.completion_tokens}
            out = [ev("message_start", {"type": "message_start", "message": msg}),
                   ev("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}}),
                   ev("ping", {"type": "ping"})]
            out += [ev("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": p}}) for p in self.pieces]
            out += [ev("content_block_stop", {"type": "content_block_stop", "index": 0}),
                    ev("message_delta", delta), ev("message_stop", {"type": "message_stop"})]
            return out
        out = [(dump({"model": self.model, "created_at": self.created_at(),
                      "message": {"role": "assistant", "content": p}, "done": False}) + "\n").encode()
               for p in self.pieces]
        final = {"model": self.model, "created_at": self.created_at(),
                 "message": {"role": "assistant", "content": ""}, "done_reason": self.stop, "done": True}
        final.update(self.ollama_stats(usage))
        out.append((dump(final) + "\n").encode())
        return out

    def garbage(self):
        """One malformed line: an event whose JSON is cut off (LiteLLM #40404's shape)."""
        if self.kind == OPENAI:
            return f'data: {{"id":"{self.id}","object":"chat.completion.chunk","choices":[{{"index":0,"delta":{{"content":"tru\n\n'.encode()
        if self.kind == ANTHROPIC:
            return b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_del\n\n'
        return f'{{"model":"{self.model}","message":{{"role":"assist\n'.encode()

    def error_event(self, fault):
        """The provider's in-stream error after a 200."""
        name, message = fault.get("error"), fault.get("message")
        ctx = {"model": self.model, "prompt": self.prompt_tokens, "key": None, "context": 0}
        if self.kind == ANTHROPIC:
            name = name if name in ANTHROPIC_ERRORS else "overloaded_error"
            _, body = error_body(ANTHROPIC, name, ctx, message)
            body.pop("request_id", None)
            return f"event: error\ndata: {json.dumps(body, separators=(',', ':'))}\n\n".encode()
        if self.kind == OPENAI:
            name = name if name in OPENAI_ERRORS else "server_error"
            _, body = error_body(OPENAI, name, ctx, message)
            return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()
        name = name if name in OLLAMA_ERRORS else "server_error"
        _, body = error_body(OLLAMA, name, ctx, message)
        return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def main():
    global STATE, API_KEY, LATENCY, MODELS
    ap = fake_server.arguments(host=False, description=__doc__.split("\n\n")[0])
    ap.add_argument("--api-key")
    ap.add_argument("--script", help="a JSON file like POST /_fake/script's body, queued at start")
    ap.add_argument("--latency-ms", type=float, default=0)
    ap.add_argument("--models", help="comma-separated: the only models that exist")
    ap.add_argument("--max-requests", type=int, default=100000, help="requests kept for GET /_fake/requests")
    args = ap.parse_args()
    STATE = State(args.max_requests)
    API_KEY = args.api_key
    LATENCY = args.latency_ms / 1000
    MODELS = [m for m in args.models.split(",") if m] if args.models is not None else None
    if args.script:
        try:
            with open(args.script) as f:
                STATE.add(parse_script(json.load(f)))
        except (OSError, ValueError) as e:
            sys.exit(f"llm_fake: --script {args.script}: {e}")
    # Stopping wakes every hang and stall, which would hold the shutdown up.
    fake_server.serve(Handler, args, on_stop=lambda: STATE.wake.set())


STATE = API_KEY = MODELS = None
LATENCY = 0

if __name__ == "__main__":
    main()
