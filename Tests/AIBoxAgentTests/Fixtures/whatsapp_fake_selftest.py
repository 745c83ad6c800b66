#!/usr/bin/python3
"""Self-test of whatsapp_fake.py: runs it against a small webhook receiver of its own (which
checks the signature independently) and checks its wire behaviour and faults.

    python3 whatsapp_fake_selftest.py      (exit 0 when every check passes)
"""
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "EAAG-selftest-token"
SECRET = "selftest-app-secret"
VERIFY = "selftest-verify"
PHONE = "106540352242922"
received = []


class Receiver(BaseHTTPRequestHandler):
    """A webhook: 200 for a good signature, 401 otherwise; the handshake."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        ok = q.get("hub.mode") == "subscribe" and q.get("hub.verify_token") == VERIFY
        body = q.get("hub.challenge", "").encode() if ok else b"forbidden"
        self.send_response(200 if ok else 403)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        sig = self.headers.get("x-hub-signature-256") or ""
        good = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        status = 200 if hmac.compare_digest(sig, good) else 401
        if status == 200:
            received.append(json.loads(raw))
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()


def call(base, path, body=None, headers=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), dict(e.headers)


def main():
    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    hook_url = f"http://127.0.0.1:{hook.server_address[1]}/whatsapp/webhook"
    d = tempfile.mkdtemp()
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "whatsapp_fake.py"), "--port", "0", "--port-file", pf,
                          "--token", TOKEN, "--app-secret", SECRET, "--verify-token", VERIFY, "--webhook", hook_url,
                          "--phone-number-id", PHONE], stdout=subprocess.DEVNULL)
    failures = []

    def check(cond, what):
        if not cond:
            failures.append(what)
            print("FAIL:", what)

    try:
        for _ in range(200):
            if os.path.exists(pf):
                break
            time.sleep(0.05)
        base = f"http://127.0.0.1:{open(pf).read().strip()}"
        auth = {"authorization": "Bearer " + TOKEN}
        msg = {"messaging_product": "whatsapp", "to": "4915112345678", "type": "text", "text": {"body": "hi"}}
        # Sending.
        s, a, _ = call(base, f"/v21.0/{PHONE}/messages", msg, auth)
        check(s == 200 and a["messages"][0]["id"].startswith("wamid."), f"send: {s} {a}")
        s, a, _ = call(base, f"/v21.0/{PHONE}/messages", msg, {"authorization": "Bearer wrong"})
        check(s == 401 and a["error"]["code"] == 190, f"wrong token: {s} {a}")
        s, a, _ = call(base, f"/v21.0/{PHONE}/messages", msg)
        check(s == 401 and a["error"]["code"] == 190, f"no token: {s} {a}")
        s, a, _ = call(base, "/v21.0/999/messages", msg, auth)
        check(s == 400 and a["error"]["code"] == 100, f"other phone id: {s} {a}")
        s, a, _ = call(base, f"/v21.0/{PHONE}/messages", dict(msg, text={"body": "x" * 4097}), auth)
        check(s == 400 and a["error"]["code"] == 100, f"too long: {s} {a}")
        s, a, _ = call(base, "/_fake/sent")
        check([m["text"] for m in a["sent"]] == ["hi"], f"sent: {a}")
        # Faults.
        call(base, "/_fake/script", {"faults": [{"fault": "status", "code": 130429, "http": 429, "retry_after": 7},
                                                 {"fault": "status", "code": 131047}]})
        s, a, h = call(base, f"/v21.0/{PHONE}/messages", msg, auth)
        check(s == 429 and a["error"]["code"] == 130429 and h.get("retry-after") == "7", f"429: {s} {a} {h}")
        s, a, _ = call(base, f"/v21.0/{PHONE}/messages", msg, auth)
        check(s == 400 and a["error"]["code"] == 131047 and "fbtrace_id" in a["error"], f"131047: {s} {a}")
        s, a, _ = call(base, "/_fake/script", {"faults": [{"fault": "nonsense"}]})
        check(s == 400, "an unknown fault is refused")
        call(base, "/_fake/script", {"faults": [{"fault": "hang"}]})
        t0 = time.monotonic()
        try:
            call(base, f"/v21.0/{PHONE}/messages", msg, auth, timeout=1)
            check(False, "a hang answered")
        except Exception:  # noqa: BLE001
            check(time.monotonic() - t0 >= 0.9, "a hang held the call")
        call(base, "/_fake/reset", {})
        # Deliveries: the receiver checks the signature itself.
        s, a, _ = call(base, "/_fake/deliver", {"from": "4915112345678", "text": "hello"})
        check(s == 200 and a["statuses"] == [200], f"deliver: {a}")
        check(len(received) == 1, "the receiver got one payload")
        m = received[0]["entry"][0]["changes"][0]["value"]["messages"][0]
        check(m["type"] == "text" and m["text"]["body"] == "hello" and m["from"] == "4915112345678" and m["id"] == a["id"], f"payload: {m}")
        check(received[0]["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] == PHONE, "metadata")
        s, a, _ = call(base, "/_fake/deliver", {"from": "4915112345678", "text": "x", "bad_signature": True})
        check(a["statuses"] == [401], f"bad signature: {a}")
        s, a, _ = call(base, "/_fake/deliver", {"from": "4915112345678", "text": "x", "no_signature": True})
        check(a["statuses"] == [401], f"no signature: {a}")
        s, a, _ = call(base, "/_fake/deliver", {"from": "4915112345678", "text": "twice", "id": "wamid.dup", "duplicate": True})
        check(a["statuses"] == [200, 200] and a["id"] == "wamid.dup", f"duplicate: {a}")
        s, a, _ = call(base, "/_fake/deliver", {"from": "4915112345678", "statuses_only": True})
        check("messages" not in received[-1]["entry"][0]["changes"][0]["value"], "statuses only")
        s, a, _ = call(base, "/_fake/deliver", {"from": "4915112345678"})
        check(received[-1]["entry"][0]["changes"][0]["value"]["messages"][0]["type"] == "image", "no text: an image")
        s, a, _ = call(base, "/_fake/deliver", {"from": "+49 151"})
        check(s == 400, "a sender that is not digits is refused")
        # The handshake.
        s, a, _ = call(base, "/_fake/verify", {"challenge": "1158201444"})
        check(a["status"] == 200 and a["body"] == "1158201444", f"verify: {a}")
        s, a, _ = call(base, "/_fake/verify", {"verify_token": "wrong"})
        check(a["status"] == 403, f"verify wrong: {a}")
        s, a, _ = call(base, "/_fake/requests")
        check(all("authorization" not in json.dumps(r) for r in a["requests"]), "records hold no token")
    finally:
        # SIGKILL: a test runner may hand its children a blocked SIGTERM.
        p.kill()
        p.wait(5)
        hook.shutdown()
    if failures:
        print(f"{len(failures)} check(s) failed")
        sys.exit(1)
    print("whatsapp_fake: all checks passed")


if __name__ == "__main__":
    main()
