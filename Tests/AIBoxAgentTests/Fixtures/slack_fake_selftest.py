#!/usr/bin/python3
"""Self-test of slack_fake.py (and websocket_server.py): runs it and checks its wire behaviour
and faults with a small WebSocket client of its own.

    python3 slack_fake_selftest.py      (exit 0 when every check passes)
"""
import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APP = "xapp-1-A0FAKE-selftest-app-token"
BOT = "xoxb-0000-selftest-bot-token"


def call(base, path, body=None, token=None, method=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data is not None else "GET"))
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw.startswith(b"{") else raw, r.headers
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw.startswith(b"{") else raw, e.headers


class Client:
    """A WebSocket client: masked frames, whole messages, pings seen (and answered unless told)."""

    def __init__(self, url, pong=True):
        u = urllib.parse.urlsplit(url)
        self.s = socket.create_connection((u.hostname, u.port), timeout=5)
        self.pong = pong
        self.pings = 0
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {u.path}?{u.query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.s.recv(1)
            if not chunk:
                break
            head += chunk
        self.status = int(head.split(b" ")[1]) if head else 0

    def read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def send(self, payload, opcode=1):
        payload = json.dumps(payload).encode() if opcode == 1 else payload
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def recv(self):
        """The next JSON message, ("close", code), or ("eof", None); pings are counted."""
        while True:
            try:
                b0, b1 = self.read(2)
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self.read(2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self.read(8))[0]
                payload = self.read(n)
            except (EOFError, ConnectionResetError):
                return ("eof", None)
            op = b0 & 0x0F
            if op == 9:
                self.pings += 1
                if self.pong:
                    self.send(payload, opcode=10)
                continue
            if op == 8:
                return ("close", struct.unpack("!H", payload[:2])[0])
            return json.loads(payload)


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def main():
    d = tempfile.mkdtemp()
    pf = os.path.join(d, "port")
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "slack_fake.py"), "--port", "0", "--port-file", pf,
                          "--app-token", APP, "--bot-token", BOT, "--ping-ms", "200", "--ack-timeout-ms", "400",
                          "--refresh-close-ms", "300"])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(pf) and time.monotonic() < deadline:
            time.sleep(0.02)
        base = "http://127.0.0.1:%d" % int(open(pf).read())

        # apps.connections.open: the app token only.
        check(call(base, "/api/apps.connections.open", {}, token="xapp-wrong")[1] == {"ok": False, "error": "invalid_auth"}, "wrong token")
        check(call(base, "/api/apps.connections.open", {})[1]["error"] == "not_authed", "no token")
        check(call(base, "/api/apps.connections.open", {}, token=BOT)[1]["error"] == "not_allowed_token_type", "bot token")
        status, opened, _ = call(base, "/api/apps.connections.open", {}, token=APP)
        check(status == 200 and opened["ok"] and opened["url"].startswith("ws://127.0.0.1:"), "connections.open")

        # Hello, an event acknowledged, pings; a used ticket is refused.
        c = Client(opened["url"])
        check(c.status == 101, "upgrade")
        hello = c.recv()
        check(hello["type"] == "hello" and hello["num_connections"] == 1, "hello")
        used = Client(opened["url"])
        check(used.status == 401, "a ticket is good once")
        used.s.close()
        _, sent, _ = call(base, "/_fake/send", {"user": "U1", "text": "hi"})
        env = c.recv()
        ev = env["payload"]["event"]
        check(env["type"] == "events_api" and env["retry_attempt"] == 0 and env["envelope_id"] == sent["envelope_id"], "envelope")
        check(env["payload"]["event_id"] == sent["event_id"] and ev["text"] == "hi" and ev["channel_type"] == "im"
              and ev["user"] == "U1" and env["payload"]["team_id"] == "T0AIBOX", "event")
        c.send({"envelope_id": env["envelope_id"]})
        time.sleep(0.6)
        _, evs, _ = call(base, "/_fake/events")
        check(evs["events"][0]["acked"] and len(evs["events"][0]["envelopes"]) == 1, "acked, not retried")

        # Not acknowledged: retried with the same event_id, retry_attempt 1, a new envelope.
        _, sent2, _ = call(base, "/_fake/send", {"user": "U1", "text": "unacked"})
        first = c.recv()
        retry = c.recv()
        check(retry["payload"]["event_id"] == sent2["event_id"] and retry["retry_attempt"] == 1 and retry["retry_reason"] == "timeout"
              and retry["envelope_id"] != first["envelope_id"], "retry after the ack timeout")
        c.send({"envelope_id": retry["envelope_id"]})

        # Duplicate: delivered twice even though acknowledged.
        call(base, "/_fake/script", {"faults": [{"fault": "duplicate"}]})
        call(base, "/_fake/send", {"user": "U1", "text": "dup"})
        a = c.recv()
        c.send({"envelope_id": a["envelope_id"]})
        b = c.recv()
        check(b["payload"]["event_id"] == a["payload"]["event_id"] and b["retry_attempt"] == 1, "duplicate")
        c.send({"envelope_id": b["envelope_id"]})
        check(c.pings >= 1, "Slack's pings")

        # refresh_requested: the disconnect frame, then the fake closes the socket.
        call(base, "/_fake/script", {"faults": [{"fault": "disconnect", "reason": "refresh_requested"}]})
        check(c.recv() == {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-fake-1"}}, "disconnect")
        check(c.recv() == ("close", 1000), "closed after the refresh")

        # Silent: no more pings, no pongs; no_hello; drop.
        c = Client(call(base, "/api/apps.connections.open", {}, token=APP)[1]["url"])
        c.recv()
        call(base, "/_fake/script", {"faults": [{"fault": "silent"}]})
        # A keepalive ping sent before the fault took hold may be waiting here already (on
        # loopback a frame is in our buffer once the fake's send returns, and the fault call
        # returns only after any send under way): take it; it must be a ping.
        c.s.setblocking(False)
        early = b""
        while True:
            try:
                chunk = c.s.recv(4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            early += chunk
        c.s.settimeout(5)
        while early:
            check(early[0] == 0x89 and len(early) >= 2 + (early[1] & 0x7F), f"before the silence only pings: {early!r}")
            early = early[2 + (early[1] & 0x7F):]
        c.send(b"are you there", opcode=9)
        c.s.settimeout(0.8)
        try:
            c.s.recv(1)
            check(False, "a silent socket sent something")
        except socket.timeout:
            pass
        c.s.close()
        call(base, "/_fake/script", {"faults": [{"fault": "no_hello"}]})
        c = Client(call(base, "/api/apps.connections.open", {}, token=APP)[1]["url"])
        time.sleep(0.5)
        check(call(base, "/_fake/sockets")[1]["connections"][-1]["hello"] is False, "no hello")
        c.s.close()
        c = Client(call(base, "/api/apps.connections.open", {}, token=APP)[1]["url"])
        c.recv()
        call(base, "/_fake/script", {"faults": [{"fault": "drop"}]})
        check(c.recv() == ("eof", None), "drop without a close frame")

        # chat.postMessage: the bot token, errors, faults; the echo of a DM post.
        c = Client(call(base, "/api/apps.connections.open", {}, token=APP)[1]["url"])
        c.recv()
        check(call(base, "/api/chat.postMessage", {"channel": "D1", "text": "x"}, token=APP)[1]["error"] == "not_allowed_token_type", "app token")
        check(call(base, "/api/chat.postMessage", {"channel": "C404", "text": "x"}, token=BOT)[1]["error"] == "channel_not_found", "404")
        check(call(base, "/api/chat.postMessage", {"channel": "CNOTIN", "text": "x"}, token=BOT)[1]["error"] == "not_in_channel", "not in")
        check(call(base, "/api/chat.postMessage", {"channel": "C1", "text": ""}, token=BOT)[1]["error"] == "no_text", "no text")
        status, posted, _ = call(base, "/api/chat.postMessage", {"channel": "U7", "text": "hello"}, token=BOT)
        check(status == 200 and posted["ok"] and posted["channel"] == "DU7", "post to a user's DM")
        echo = c.recv()
        check(echo["payload"]["event"]["bot_id"] == "B0FAKEBOT" and echo["payload"]["event"]["text"] == "hello", "the bot's echo")
        c.send({"envelope_id": echo["envelope_id"]})
        call(base, "/_fake/script", {"faults": [{"fault": "status", "method": "chat.postMessage", "code": 429, "retry_after": 2},
                                                {"fault": "error", "method": "apps.connections.open", "error": "token_revoked"}]})
        status, body, headers = call(base, "/api/chat.postMessage", {"channel": "C1", "text": "x"}, token=BOT)
        check(status == 429 and body == {"ok": False, "error": "ratelimited"} and headers["Retry-After"] == "2", "429")
        check(call(base, "/api/apps.connections.open", {}, token=APP)[1] == {"ok": False, "error": "token_revoked"}, "scripted error")

        # link_disabled: the frame, then a close at once.
        call(base, "/_fake/script", {"faults": [{"fault": "disconnect", "reason": "link_disabled"}]})
        check(c.recv()["reason"] == "link_disabled", "link_disabled")
        check(c.recv() == ("close", 1000), "closed after link_disabled")

        deadline = time.monotonic() + 3
        while call(base, "/_fake/sockets")[1]["open"] and time.monotonic() < deadline:
            time.sleep(0.05)
        _, socks, _ = call(base, "/_fake/sockets")
        check(len(socks["connections"]) == 5 and socks["open"] == 0 and socks["max_open"] >= 1 and socks["bad_tickets"] == 1,
              "socket record: %s" % socks)
        check(socks["connections"][0]["pongs"] >= 1 and socks["connections"][0]["disconnect"] == "refresh_requested", "pongs, disconnect")
        _, reqs, _ = call(base, "/_fake/requests")
        check(all(APP not in json.dumps(r) and BOT not in json.dumps(r) for r in reqs["requests"]), "no token recorded")
        _, sent, _ = call(base, "/_fake/sent")
        check([s["text"] for s in sent["sent"]] == ["hello"], "sent recorded")
        print("ok")
    finally:
        # SIGKILL: a test runner may hand its children a blocked SIGTERM.
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
