#!/usr/bin/python3
"""Self-test of discord_fake.py (and websocket_server.py): runs it and checks its wire
behaviour and faults with a small WebSocket client of its own.

    python3 discord_fake_selftest.py      (exit 0 when every check passes)
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "MTA.selftest-token"


def call(base, path, body=None, token=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("Authorization", "Bot " + token)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), e.headers


class Client:
    """A WebSocket client: masked frames, whole messages, close codes."""

    def __init__(self, port, path="/?v=10&encoding=json"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head

    def read(self, n):
        out = b""
        while len(out) < n:
            chunk = self.s.recv(n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def send(self, obj, opcode=1):
        payload = json.dumps(obj).encode() if opcode == 1 else obj
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n))
        self.s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self, code):
        self.send(struct.pack("!H", code), opcode=8)

    def recv(self):
        """A JSON message, ("close", code), or ("eof", None)."""
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
        if b0 & 0x0F == 8:
            return ("close", struct.unpack("!H", payload[:2])[0])
        return json.loads(payload)


def check(cond, what):
    if not cond:
        print("FAIL:", what)
        sys.exit(1)


def main():
    d = tempfile.mkdtemp()
    pf = os.path.join(d, "port")
    p = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "discord_fake.py"), "--port", "0", "--port-file", pf,
                          "--token", TOKEN, "--heartbeat-ms", "300"])
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(pf) and time.monotonic() < deadline:
            time.sleep(0.02)
        port = int(open(pf).read())
        base = "http://127.0.0.1:%d" % port

        status, gw, _ = call(base, "/api/v10/gateway/bot", token=TOKEN)
        check(status == 200 and gw["url"] == "ws://127.0.0.1:%d" % port, "gateway/bot")
        check(call(base, "/api/v10/gateway/bot", token="wrong")[0] == 401, "gateway/bot with a wrong token is 401")

        # Hello, identify, READY, a heartbeat ACKed, a message dispatched.
        c = Client(port)
        hello = c.recv()
        check(hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 300, "hello")
        c.send({"op": 2, "d": {"token": TOKEN, "intents": 37376, "properties": {}}})
        ready = c.recv()
        check(ready["t"] == "READY" and ready["d"]["resume_gateway_url"].endswith("/resume"), "ready")
        sid = ready["d"]["session_id"]
        c.send({"op": 1, "d": 1})
        check(c.recv() == {"op": 11}, "heartbeat ack")
        call(base, "/_fake/send", {"author_id": "42", "content": "hello"})
        m = c.recv()
        check(m["t"] == "MESSAGE_CREATE" and m["d"]["content"] == "hello" and "guild_id" not in m["d"] and m["s"] == 2, "message create")

        # A close with 4000 keeps the session; a resume replays what came while away.
        c.close(4000)
        check(c.recv() == ("close", 4000), "close answered")
        call(base, "/_fake/send", {"author_id": "42", "content": "while away"})
        c = Client(port, "/resume?v=10&encoding=json")
        c.recv()
        c.send({"op": 6, "d": {"token": TOKEN, "session_id": sid, "seq": 2}})
        replay = c.recv()
        check(replay["d"]["content"] == "while away", "replayed on resume")
        check(c.recv()["t"] == "RESUMED", "resumed")

        # Mute: heartbeats are no longer answered, and the socket stays open.
        call(base, "/_fake/script", {"faults": [{"fault": "mute"}]})
        c.send({"op": 1, "d": 3})
        c.s.settimeout(1)
        try:
            c.s.recv(1)
            check(False, "a muted socket answered")
        except socket.timeout:
            pass
        c.s.close()

        # Invalid session false forgets the session; op 7; close with a code; drop.
        c = Client(port)
        c.recv()
        c.send({"op": 2, "d": {"token": TOKEN, "intents": 37376, "properties": {}}})
        sid2 = c.recv()["d"]["session_id"]
        call(base, "/_fake/script", {"faults": [{"fault": "reconnect"}]})
        check(c.recv()["op"] == 7, "op 7")
        call(base, "/_fake/script", {"faults": [{"fault": "invalid_session", "resumable": False}]})
        check(c.recv() == {"op": 9, "d": False}, "op 9")
        _, g, _ = call(base, "/_fake/gateway")
        check(sid2 not in g["sessions"], "invalid session forgets the session")
        call(base, "/_fake/script", {"faults": [{"fault": "close", "code": 4014}]})
        check(c.recv() == ("close", 4014), "close 4014")
        c = Client(port)
        c.recv()
        call(base, "/_fake/script", {"faults": [{"fault": "drop"}]})
        check(c.recv() == ("eof", None), "drop without a close frame")

        # A wrong token closes with 4004; a scripted identify close.
        c = Client(port)
        c.recv()
        c.send({"op": 2, "d": {"token": "wrong", "intents": 1}})
        check(c.recv() == ("close", 4004), "wrong token → 4004")
        call(base, "/_fake/script", {"faults": [{"fault": "close", "code": 4014, "on": "identify"}]})
        c = Client(port)
        c.recv()
        c.send({"op": 2, "d": {"token": TOKEN, "intents": 37376}})
        check(c.recv() == ("close", 4014), "identify answered by 4014")

        # REST: create message, 2000 limit, 429 with retry_after and the header.
        status, _, _ = call(base, "/api/v10/channels/77/messages", {"content": "hi"}, token=TOKEN)
        check(status == 200, "create message")
        status, body, _ = call(base, "/api/v10/channels/77/messages", {"content": "x" * 2001}, token=TOKEN)
        check(status == 400 and body["code"] == 50035, "2001 characters refused")
        call(base, "/_fake/script", {"faults": [{"fault": "status", "code": 429, "retry_after": 0.5, "reset_after": 0.5}]})
        status, body, headers = call(base, "/api/v10/channels/77/messages", {"content": "hi"}, token=TOKEN)
        check(status == 429 and body["retry_after"] == 0.5 and headers["X-RateLimit-Reset-After"] == "0.5", "429")
        _, sent, _ = call(base, "/_fake/sent")
        check([s["content"] for s in sent["sent"]] == ["hi"], "sent recorded")
        _, g, _ = call(base, "/_fake/gateway")
        check(len(g["identifies"]) == 2 and len(g["resumes"]) == 1 and g["connections"][0]["client_close_code"] == 4000, "gateway record")
        print("ok")
    finally:
        # SIGKILL: a test runner may hand its children a blocked SIGTERM.
        p.kill()
        p.wait()


if __name__ == "__main__":
    main()
