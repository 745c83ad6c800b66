#!/usr/bin/python3
"""Self-test of telegram_fake.py: runs it and checks its wire behaviour and faults.

    python3 telegram_fake_selftest.py      (exit 0 when every check passes)
"""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "123456:selftest-token"


def call(base, path, body=None, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def main():
    d = tempfile.mkdtemp()
    pf = os.path.join(d, "port")
    p = subprocess.Popen([sys.executable, os.path.join(HERE, "telegram_fake.py"), "--port", "0", "--port-file", pf, "--token", TOKEN])
    try:
        for _ in range(200):
            if os.path.exists(pf):
                break
            time.sleep(0.05)
        base = "http://127.0.0.1:" + open(pf).read().strip()
        bot = "/bot" + TOKEN
        assert call(base, "/botWRONG/getMe") == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        s, r = call(base, bot + "/getMe")
        assert s == 200 and r["result"]["is_bot"], r
        # Long poll: held until a message arrives.
        t0 = time.monotonic()
        threading.Timer(0.5, lambda: call(base, "/_fake/send", {"from_id": 42, "text": "hi"})).start()
        s, r = call(base, bot + "/getUpdates", {"timeout": 5})
        assert s == 200 and len(r["result"]) == 1 and 0.4 < time.monotonic() - t0 < 3, r
        u = r["result"][0]
        assert u["message"]["text"] == "hi" and u["message"]["chat"]["type"] == "private"
        # Without a new offset it is served again; with it, forgotten.
        assert call(base, bot + "/getUpdates", {"timeout": 0})[1]["result"] == [u]
        assert call(base, bot + "/getUpdates", {"offset": u["update_id"] + 1, "timeout": 0})[1]["result"] == []
        # Timeout with nothing: an empty result after the timeout.
        t0 = time.monotonic()
        assert call(base, bot + "/getUpdates", {"offset": u["update_id"] + 1, "timeout": 1})[1]["result"] == []
        assert time.monotonic() - t0 >= 0.9
        # Duplicate: the confirmed update served again once.
        call(base, "/_fake/script", {"faults": [{"fault": "duplicate"}]})
        assert call(base, bot + "/getUpdates", {"offset": u["update_id"] + 1, "timeout": 0})[1]["result"] == [u]
        assert call(base, bot + "/getUpdates", {"offset": u["update_id"] + 1, "timeout": 0})[1]["result"] == []
        # Status faults.
        call(base, "/_fake/script", {"faults": [{"fault": "status", "code": 429, "retry_after": 3}, {"fault": "status", "code": 409}]})
        s, r = call(base, bot + "/getUpdates", {})
        assert s == 429 and r["parameters"]["retry_after"] == 3 and r["description"] == "Too Many Requests: retry after 3", r
        s, r = call(base, bot + "/getUpdates", {})
        assert s == 409 and r["description"].startswith("Conflict: terminated by other getUpdates request"), r
        # A second poll ends a held one with 409.
        out = {}
        th = threading.Thread(target=lambda: out.update(r=call(base, bot + "/getUpdates", {"timeout": 5})))
        th.start()
        time.sleep(0.3)
        call(base, bot + "/getUpdates", {"timeout": 0})
        th.join(3)
        assert out["r"][0] == 409, out
        # sendMessage and its limit.
        s, r = call(base, bot + "/sendMessage", {"chat_id": 42, "text": "x" * 4096})
        assert s == 200 and r["result"]["message_id"] == 1, r
        s, r = call(base, bot + "/sendMessage", {"chat_id": 42, "text": "😀" * 2049})
        assert s == 400 and r["description"] == "Bad Request: message is too long", r
        assert [m["text"] for m in call(base, "/_fake/sent")[1]["sent"]] == ["x" * 4096]
        # Hang: no answer until reset.
        call(base, "/_fake/script", {"faults": [{"fault": "hang"}]})
        try:
            call(base, bot + "/getUpdates", {}, timeout=1)
            raise AssertionError("a hang answered")
        except (TimeoutError, OSError):
            pass
        reqs = call(base, "/_fake/requests")[1]["requests"]
        assert reqs[-1]["fault"] == "hang" and reqs[-1]["end"] is None
        assert call(base, "/_fake/script", {"faults": [{"fault": "nope"}]})[0] == 400
        call(base, "/_fake/reset", {})
        print("telegram_fake selftest: ok")
    finally:
        p.terminate()
        p.wait(5)


if __name__ == "__main__":
    main()
