#!/usr/bin/python3
"""Loopback fake of Telegram's Bot API (the part a polling bot uses), with scripted faults.

    python3 telegram_fake.py --port 0 --port-file F --token T [--first-update-id N]

Listens on 127.0.0.1 (or --host), writes the port to F (write + rename) once listening, serves until
SIGTERM/SIGINT (exit 0). Python 3 standard library only.

Bot API paths (https://core.telegram.org/bots/api): /bot<TOKEN>/<METHOD>, GET or POST;
parameters from the query string, a JSON body (content-type application/json) or a form body.
Every answer is {"ok": true, "result": ...} or {"ok": false, "error_code": N, "description":
"...", "parameters": {"retry_after": S}} with that HTTP status.
  A wrong token             401 {"ok":false,"error_code":401,"description":"Unauthorized"}
  An unknown method         404 "Not Found"
  getMe                     the bot's User object
  getUpdates                offset, limit (1-100, default 100), timeout (seconds, default 0),
                            allowed_updates. An offset confirms every update below it: those are
                            forgotten. Answers at once when an update at or above the offset
                            is waiting, else holds the request until one arrives or `timeout`
                            passes (then "result": []). A second getUpdates while one is held
                            ends the held one with Telegram's 409 "Conflict: terminated by
                            other getUpdates request; make sure that only one bot instance is
                            running".
  sendMessage               chat_id, text. Empty text: 400 "Bad Request: message text is
                            empty"; more than 4096 UTF-16 code units: 400 "Bad Request:
                            message is too long". Else recorded and answered with the Message.

Updates are {"update_id": N, "message": {"message_id", "date", "chat": {"id", "type"},
"from": {"id", "is_bot": false, "first_name"}, "text"}}; update ids count up from
--first-update-id (default 500000).

Control paths (never recorded, never faulted; no token):
  POST /_fake/send      {"from_id": N, "chat_id": N (default from_id), "text": S (absent: a
                        sticker message without text), "chat_type": "private" (default) |
                        "group" | ..., "kind": "message" (default) | "edited_message"}
                        queues an update, wakes a held getUpdates; answers {"update_id": N,
                        "at": monotonic s when queued}
  POST /_fake/script    {"faults": [FAULT, ...]} appended to the queue; {"queued": N}
  POST /_fake/reset     clears faults, records and updates; ends every hang (closing it)
  GET  /_fake/requests  {"requests": [{"seq", "time" (monotonic s at arrival), "end" (at the
                        answer, null while held), "http_method", "method" (the Bot API
                        method), "token_ok", "query", "body" (parsed), "fault", "status"}]}
  GET  /_fake/sent      {"sent": [{"chat_id", "text", "message_id", "at" (monotonic s)}]} in order

FAULT = {"fault": NAME, "method": M (optional: only this Bot API method), "times": N
(default 1, -1 = forever), ...params}; a request takes the first queued fault it matches.
  status      "code" (409, 429, 500, 401, ...), optional "description" (default: Telegram's
              own for the code) and "retry_after" (seconds, into parameters.retry_after)
  hang        accept the request, send nothing, never close (until reset or exit)
  duplicate   getUpdates: ignore the offset once: the previous answer's updates are served
              again (after the offset confirmed them), with anything newer
Run it with /usr/bin/python3, as the other test fixtures are run.
"""

import json
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402

DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
    502: "Bad Gateway",
}
FAULTS = {"status", "hang", "duplicate"}


class State(fake_server.State):
    def __init__(self, token, first_id):
        self.token = token
        self.first_id = first_id
        super().__init__()

    def reset(self):
        with self.lock:
            super().reset()
            self.updates = []  # update dicts, in id order
            self.next_id = self.first_id
            self.confirmed = 0  # every id below is forgotten
            self.last_served = []  # ids of the last getUpdates answer
            self.next_message_id = 1
            self.poll_generation = 0
            self.served_copies = []  # the last answer's updates, for the duplicate fault


class Handler(fake_server.Handler):
    state: State = None

    def check_fault(self, f):
        return fake_server.check_fault(f, FAULTS)

    def service(self, http_method, url, raw):
        st = self.state
        parts = url.path.strip("/").split("/")
        token_ok = len(parts) == 2 and parts[0] == "bot" + st.token
        method = parts[1] if len(parts) == 2 and parts[0].startswith("bot") else None
        params = dict(urllib.parse.parse_qsl(url.query))
        body = None
        ctype = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        if raw:
            if ctype == "application/json":
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self.answer(400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"})
                if isinstance(body, dict):
                    params.update(body)
            elif ctype == "application/x-www-form-urlencoded":
                body = dict(urllib.parse.parse_qsl(raw.decode()))
                params.update(body)
        with st.lock:
            rec = {
                "seq": len(st.requests), "time": time.monotonic(), "end": None, "http_method": http_method,
                "method": method, "token_ok": token_ok, "query": url.query,
                "body": body, "fault": None, "status": None,
            }
            st.requests.append(rec)
            fault = fake_server.take_fault(st.faults, lambda f: f.get("method") in (None, method)) if token_ok and method else None
            if fault:
                rec["fault"] = fault["fault"]
        status, obj = self.serve(method, token_ok, params, fault, rec)
        if status is None:
            return  # a hang ended by reset: the connection closes
        with st.lock:
            rec["status"] = status
            rec["end"] = time.monotonic()
        self.answer(status, obj)

    def serve(self, method, token_ok, params, fault, rec):
        st = self.state
        if method is None:
            return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
        if not token_ok:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if fault and fault["fault"] == "hang":
            self.hang()
            return None, None
        if fault and fault["fault"] == "status":
            code = fault["code"]
            err = {"ok": False, "error_code": code}
            ra = fault.get("retry_after")
            desc = fault.get("description") or DESCRIPTIONS.get(code, "Error").format(retry_after=ra)
            err["description"] = desc
            if ra is not None:
                err["parameters"] = {"retry_after": ra}
            return code, err
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 7000001, "is_bot": True, "first_name": "AIBox fake", "username": "aibox_fake_bot"}}
        if method == "getUpdates":
            return self.get_updates(params, duplicate=bool(fault and fault["fault"] == "duplicate"))
        if method == "sendMessage":
            return self.send_message(params)
        return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    def get_updates(self, params, duplicate):
        st = self.state
        try:
            offset = int(params.get("offset", 0) or 0)
            limit = int(params.get("limit", 100) or 100)
            timeout = float(params.get("timeout", 0) or 0)
        except (TypeError, ValueError):
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: wrong parameter type"}
        limit = max(1, min(limit, 100))
        deadline = time.monotonic() + max(0.0, timeout)
        with st.lock:
            st.poll_generation += 1
            generation = st.poll_generation
            st.lock.notify_all()
            if offset > st.confirmed and not duplicate:
                st.confirmed = offset
                st.updates = [u for u in st.updates if u["update_id"] >= offset]
            while True:
                if duplicate and st.last_served:
                    floor = min(st.last_served)
                    byid = {u["update_id"]: u for u in st.served_copies + st.updates if u["update_id"] >= floor}
                    ready = [byid[k] for k in sorted(byid)]
                    duplicate = False
                else:
                    ready = [u for u in st.updates if u["update_id"] >= max(offset, st.confirmed)]
                if ready:
                    ready = ready[:limit]
                    st.last_served = [u["update_id"] for u in ready]
                    st.served_copies = list(ready)
                    return 200, {"ok": True, "result": ready}
                if st.poll_generation != generation:
                    return 409, {"ok": False, "error_code": 409, "description": DESCRIPTIONS[409]}
                left = deadline - time.monotonic()
                if left <= 0:
                    return 200, {"ok": True, "result": []}
                st.lock.wait(left)

    def send_message(self, params):
        st = self.state
        chat_id = params.get("chat_id")
        text = params.get("text")
        if chat_id is None or chat_id == "":
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
        if not isinstance(text, str) or text == "":
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        if len(text.encode("utf-16-le")) // 2 > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        with st.lock:
            mid = st.next_message_id
            st.next_message_id += 1
            st.sent.append({"chat_id": chat_id, "text": text, "message_id": mid, "at": time.monotonic()})
        try:
            cid = int(chat_id)
        except (TypeError, ValueError):
            cid = chat_id
        return 200, {"ok": True, "result": {
            "message_id": mid, "date": int(time.time()),
            "chat": {"id": cid, "type": "private"},
            "from": {"id": 7000001, "is_bot": True, "first_name": "AIBox fake"}, "text": text}}

    def control_post_send(self, body):
        st = self.state
        if not isinstance(body.get("from_id"), int):
            return self.answer(400, {"error": "from_id (an integer) is required"})
        kind = body.get("kind", "message")
        with st.lock:
            uid = st.next_id
            st.next_id += 1
            msg = {
                "message_id": uid, "date": int(time.time()),
                "chat": {"id": body.get("chat_id", body["from_id"]), "type": body.get("chat_type", "private")},
                "from": {"id": body["from_id"], "is_bot": False, "first_name": "User"},
            }
            if "text" in body:
                msg["text"] = body["text"]
            else:
                msg["sticker"] = {"file_id": "sticker-1", "emoji": "👍"}
            st.updates.append({"update_id": uid, kind: msg})
            st.lock.notify_all()
        return self.answer(200, {"update_id": uid, "at": time.monotonic()})


def main():
    p = fake_server.arguments()
    p.add_argument("--token", required=True)
    p.add_argument("--first-update-id", type=int, default=500000)
    args = p.parse_args()
    Handler.state = State(args.token, args.first_update_id)
    fake_server.serve(Handler, args)


if __name__ == "__main__":
    main()
