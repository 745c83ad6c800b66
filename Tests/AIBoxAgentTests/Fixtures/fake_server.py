"""What the loopback fakes share (telegram_fake.py, discord_fake.py, slack_fake.py,
whatsapp_fake.py; llm_fake.py and range_server.py take the command line and the serving):
each fake's own docstring says what it serves.

Python 3 standard library only. A fake built on it:

    class State(fake_server.State):        # faults, requests, sent, hangs under one lock
        def reset(self): ...               # its own records too (super().reset() first)

    class Handler(fake_server.Handler):
        def service(self, http_method, url, raw): ...   # what is not a control path
        def control_post_send(self, body): ...   # POST /_fake/send (JSON body, {} when empty)

    args = fake_server.arguments().parse_args()      # --port, --host, --port-file
    Handler.state = State(...)
    fake_server.serve(Handler, args)

serve() listens on --host (127.0.0.1 without it) at --port (0: any free port), sets
Handler.port, writes the port to --port-file atomically (write, fsync, rename) once
listening, serves until SIGTERM/SIGINT, then removes the port file and exits 0.
"""

import argparse
import json
import os
import signal
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import websocket_server  # noqa: E402


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # A test may open many connections at once (llm_fake's load checks).
    request_queue_size = 128


def arguments(host=True, description=None):
    """The command line every fake takes; a fake adds its own options."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, default=0)
    if host:
        p.add_argument("--host", default="127.0.0.1", help="the address to listen on (URLs it gives out still name 127.0.0.1: a relay there reaches it)")
    p.add_argument("--port-file", required=True)
    return p


def write_port_file(path, port):
    # Atomic: a test polling the file never reads a half-written port.
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(port))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def serve(handler, args, on_stop=None):
    """Serves HANDLER until SIGTERM/SIGINT (ON_STOP runs first: ending what would hold the
    shutdown up), then exits 0."""
    server = Server((getattr(args, "host", "127.0.0.1"), args.port), handler)
    handler.port = server.server_address[1]

    def stop(*_):
        if on_stop:
            on_stop()
        # shutdown() waits for serve_forever, which runs on this (the main) thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    write_port_file(args.port_file, handler.port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        try:
            os.unlink(args.port_file)
        except OSError:
            pass
    sys.exit(0)


def take_fault(faults, match=lambda f: True):
    """The first queued fault MATCH accepts, its "times" counted down (-1: forever; gone from
    FAULTS at 0); None when none matches. The caller holds the lock over FAULTS."""
    for f in faults:
        if not match(f):
            continue
        times = f.get("times", 1)
        if times != -1:
            f["times"] = times - 1
            if f["times"] <= 0:
                faults.remove(f)
        return f
    return None


def check_fault(f, known, more=None, coded=("status",), code_note=""):
    """Why the scripted fault F is malformed (None: it is well formed): an object naming one of
    KNOWN, then MORE's own checks, an integer "code" on the faults named in CODED, "times"."""
    if not isinstance(f, dict):
        return "a fault is an object"
    name = f.get("fault")
    if name not in known:
        return f"unknown fault {name!r}; known: {sorted(known)}"
    why = more(f) if more else None
    if why:
        return why
    if name in coded and not isinstance(f.get("code"), int):
        return f"a {name} fault needs an integer \"code\"{code_note}"
    times = f.get("times", 1)
    if not isinstance(times, int) or (times < 1 and times != -1):
        return "\"times\" is a positive integer or -1"
    return None


class State:
    """A fake's records: the fault queue, the requests, what was sent, the requests held by a
    hang fault; all under `lock` (reentrant; a condition to wait on)."""

    def __init__(self):
        self.lock = threading.Condition(threading.RLock())
        self.hangs = []
        self.reset()

    def reset(self):
        """Clears faults and records; ends every hang (closing its connection)."""
        with self.lock:
            for ev in self.hangs:
                ev.set()
            self.hangs = []
            self.faults = []
            self.requests = []
            self.sent = []
            self.lock.notify_all()


class Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive, JSON answers, the common control paths; GET and POST come
    to route(), which sends a request to a control path, a WebSocket or the faked service."""

    protocol_version = "HTTP/1.1"
    content_type = "application/json"
    state: State = None
    port = 0  # set by serve(): for the URLs a fake gives out
    # Whether a malformed fault is named in /_fake/script's 400 answer beside the reason.
    echo_bad_fault = False
    # A WebSocket upgrade (GET) of one of these paths goes to self.websocket(url).
    websocket_paths = ()

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def route(self, http_method):
        url = urllib.parse.urlsplit(self.path)
        if http_method == "GET" and url.path in self.websocket_paths and websocket_server.is_upgrade(self.headers):
            return self.websocket(url)
        raw = self.read_body()
        if url.path.startswith("/_fake/"):
            return self.control(http_method, url.path, raw)
        return self.service(http_method, url, raw)

    def service(self, http_method, url, raw):
        """A request to the faked service: URL split, RAW its body."""
        raise NotImplementedError

    def answer(self, status, obj, headers=(), content_type=None):
        """OBJ as JSON (bytes as they are) with STATUS and HEADERS (name, value) pairs."""
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", content_type or self.content_type)
        self.send_header("content-length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def read_body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def hang(self):
        """Holds the request unanswered until a reset, then closes the connection."""
        ev = threading.Event()
        with self.state.lock:
            self.state.hangs.append(ev)
        ev.wait()
        self.close_connection = True

    # --- control paths ---

    def control(self, http_method, path, raw):
        """METHOD /_fake/NAME goes to self.control_METHOD_NAME(body) (as do_GET in http.server)."""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return self.answer(400, {"error": "the body is not JSON"})
        act = getattr(self, f"control_{http_method.lower()}_{path[len('/_fake/'):]}", None)
        if act is None:
            return self.answer(404, {"error": f"no control path {http_method} {path}"})
        return act(body)

    def check_fault(self, f):
        """Why the fault F is malformed, or None (each fake says what it takes)."""
        raise NotImplementedError

    def add_fault(self, f):
        """Takes a checked fault: queued by default; why it cannot be taken, or None."""
        with self.state.lock:
            self.state.faults.append(f)
        return None

    def control_post_script(self, body):
        faults = body.get("faults")
        if not isinstance(faults, list):
            return self.answer(400, {"error": "\"faults\" is a list"})
        for f in faults:
            why = self.check_fault(f)
            if why:
                return self.answer(400, {"error": why, "fault": f} if self.echo_bad_fault else {"error": why})
        for f in faults:
            why = self.add_fault(f)
            if why:
                return self.answer(409, {"error": why, "fault": f})
        return self.answer(200, {"queued": len(faults)})

    def control_post_reset(self, body):
        self.state.reset()
        return self.answer(200, {})

    def control_get_requests(self, body):
        with self.state.lock:
            return self.answer(200, {"requests": list(self.state.requests)})

    def control_get_sent(self, body):
        with self.state.lock:
            return self.answer(200, {"sent": list(self.state.sent)})
