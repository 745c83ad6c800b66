#!/usr/bin/python3
"""Loopback fake of Discord's Gateway and the REST calls a bot uses, with scripted faults.

    python3 discord_fake.py --port 0 --port-file F --token T [--heartbeat-ms 500]

Listens on 127.0.0.1 (or --host), writes the port to F (write + rename) once listening, serves until
SIGTERM/SIGINT (exit 0). Python 3 standard library only; the WebSocket side is
websocket_server.py beside it.

REST (https://discord.com/developers/docs/reference), under /api/v10, `Authorization: Bot T`
(anything else: 401 {"message": "401: Unauthorized", "code": 0}):
  GET  /api/v10/gateway/bot              {"url": "ws://127.0.0.1:PORT", "shards": 1,
                                         "session_start_limit": {...}}
  POST /api/v10/users/@me/channels       {"recipient_id": ID} → the DM channel {"id": "dm-" + ID,
                                         "type": 1}: the channel id _fake/send gives a DM
  POST /api/v10/channels/ID/messages     {"content": S}: empty → 400 50006 "Cannot send an
                                         empty message"; over 2000 characters → 400 50035
                                         "Invalid Form Body"; else recorded, answered with the
                                         Message object.
Gateway (https://discord.com/developers/docs/events/gateway), a WebSocket at / or /resume
(the resume_gateway_url READY gives), ?v=10&encoding=json (another v or encoding: close 4012 /
4002). JSON text frames {"op", "d", "s", "t"}:
  on connect   op 10 Hello {"heartbeat_interval": --heartbeat-ms}
  op 1         → op 11 Heartbeat ACK (counted)
  op 2         Identify: a wrong token → close 4004; intents without MESSAGE_CONTENT (1 << 15)
               are accepted, but message content then arrives empty (as on Discord). A new
               session: op 0 READY {session_id, resume_gateway_url: ws://127.0.0.1:PORT/resume}
  op 6         Resume: a wrong token → close 4004; an unknown session → op 9 d=false; else every
               event after `seq` replayed, then RESUMED
  a second Identify/Resume on a connection, or a frame that is not JSON → close 4002/4005
A close frame from the client is answered and recorded with its code; a close the client
starts with 1000/1001 ends the session, as on Discord (an answer to the fake's close does not).

Control paths (never recorded; no token):
  POST /_fake/send      {"author_id", "channel_id" (default "dm-" + author_id), "guild_id"
                        (absent: a DM), "content", "bot": false} → MESSAGE_CREATE dispatched
                        to every session (replayed on resume to one not connected);
                        {"message_id": ID}
  POST /_fake/script    {"faults": [FAULT, ...]}; {"queued": N}
  POST /_fake/reset     clears faults and records
  GET  /_fake/requests  {"requests": [{"method", "path", "auth_ok", "body", "fault", "status"}]}
  GET  /_fake/sent      {"sent": [{"channel_id", "content", "id"}]}
  GET  /_fake/gateway   {"identifies": [{"session_id", "intents"}], "resumes": [{"session_id",
                        "seq", "ok"}], "connections": [{"path", "query", "client_close_code",
                        "client_initiated_close", "open"}], "heartbeats": N, "acks": N, "sessions": [ids valid]}

FAULT = {"fault": NAME, ...}. Gateway faults act at once on every open connection, or on the
next Identify ("on": "identify"):
  mute            stop answering (no ACKs, no dispatches) without closing: a zombie socket
  reconnect       send op 7
  invalid_session "resumable": true|false: send op 9 (false also forgets the session)
  close           "code": N: close with N (4004, 4014, 4000, ...)
  drop            end the TCP connection without a close frame
  {"fault": "close", "code": N, "on": "identify"} answers the next Identify with close N.
REST faults ("times": N, default 1, -1 = forever), taken by the next matching REST call:
  status          "code" (429, 500, 401, ...), "retry_after" (seconds, in the JSON body for
                  429), "reset_after" (the X-RateLimit-Reset-After header)
Run it with /usr/bin/python3, as the other test fixtures are run.
"""

import json
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402
import websocket_server  # noqa: E402

GATEWAY_FAULTS = {"mute", "reconnect", "invalid_session", "close", "drop"}
REST_FAULTS = {"status"}
MESSAGE_CONTENT = 1 << 15


class Conn:
    """An open Gateway connection."""

    def __init__(self, ws, record):
        self.ws = ws
        self.record = record
        self.session = None  # its session id once identified or resumed
        self.muted = False


class State(fake_server.State):
    def __init__(self, token, heartbeat_ms):
        self.token = token
        self.heartbeat_ms = heartbeat_ms
        self.next_id = 1000
        super().__init__()

    def reset(self):
        with self.lock:
            super().reset()
            self.identify_faults = []
            self.identifies = []
            self.resumes = []
            self.connections = []
            self.conns = []
            self.sessions = {}  # id → {"seq": N, "events": [(seq, frame)], "intents": N}
            self.heartbeats = 0
            self.acks = 0

    def new_id(self):
        with self.lock:
            self.next_id += 1
            return str(self.next_id)

    def dispatch(self, name, data):
        """Appends the event to every session; sends it where that session is connected."""
        with self.lock:
            for sid, s in self.sessions.items():
                s["seq"] += 1
                d = dict(data)
                if not (s["intents"] & MESSAGE_CONTENT) and name == "MESSAGE_CREATE":
                    d["content"] = ""
                frame = {"op": 0, "s": s["seq"], "t": name, "d": d}
                s["events"].append((s["seq"], frame))
                for c in self.conns:
                    if c.session == sid and not c.muted:
                        c.ws.send_text(json.dumps(frame))


class Handler(fake_server.Handler):
    state: State = None
    echo_bad_fault = True
    websocket_paths = ("/", "/resume")

    # --- REST ---

    def service(self, http_method, url, raw):
        st = self.state
        path = url.path
        auth_ok = self.headers.get("Authorization") == "Bot " + st.token
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self.answer(400, {"message": "400: Bad Request", "code": 0})
        with st.lock:
            rec = {"method": http_method, "path": path, "auth_ok": auth_ok, "body": body, "fault": None, "status": None}
            st.requests.append(rec)
            fault = fake_server.take_fault(st.faults) if auth_ok else None
        status, obj, headers = self.serve(http_method, path, auth_ok, body, fault, rec)
        with st.lock:
            rec["status"] = status
        self.answer(status, obj, headers)

    def serve(self, http_method, path, auth_ok, body, fault, rec):
        st = self.state
        if not auth_ok:
            return 401, {"message": "401: Unauthorized", "code": 0}, ()
        if fault:
            rec["fault"] = fault["fault"]
            code = fault["code"]
            headers = []
            obj = {"message": fault.get("message", "fault %d" % code), "code": 0}
            if code == 429:
                obj = {"message": "You are being rate limited.", "global": False}
                if "retry_after" in fault:
                    obj["retry_after"] = fault["retry_after"]
                headers.append(("X-RateLimit-Remaining", "0"))
            if "reset_after" in fault:
                headers.append(("X-RateLimit-Reset-After", str(fault["reset_after"])))
            return code, obj, headers
        if http_method == "GET" and path == "/api/v10/gateway/bot":
            return 200, {
                "url": "ws://127.0.0.1:%d" % self.port, "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14400000, "max_concurrency": 1},
            }, ()
        parts = path.strip("/").split("/")
        if http_method == "POST" and path == "/api/v10/users/@me/channels":
            # Create DM: the DM channel with the recipient (the same one each time, as on Discord).
            recipient = (body or {}).get("recipient_id") if isinstance(body, dict) else None
            if not isinstance(recipient, str) or not recipient.isdigit():
                return 400, {"message": "Invalid Form Body", "code": 50035}, ()
            return 200, {"id": "dm-" + recipient, "type": 1, "recipients": [{"id": recipient}]}, ()
        if http_method == "POST" and len(parts) == 5 and parts[:3] == ["api", "v10", "channels"] and parts[4] == "messages":
            content = (body or {}).get("content") if isinstance(body, dict) else None
            if not content:
                return 400, {"message": "Cannot send an empty message", "code": 50006}, ()
            if len(content) > 2000:
                return 400, {"message": "Invalid Form Body", "code": 50035,
                             "errors": {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length."}]}}}, ()
            mid = st.new_id()
            with st.lock:
                st.sent.append({"channel_id": parts[3], "content": content, "id": mid})
            return 200, {"id": mid, "channel_id": parts[3], "content": content, "author": {"id": "9", "bot": True}}, ()
        return 404, {"message": "404: Not Found", "code": 0}, ()

    # --- Gateway ---

    def websocket(self, url):
        """The Gateway."""
        st = self.state
        query = dict(urllib.parse.parse_qsl(url.query))
        ws = websocket_server.accept(self)
        if ws is None:
            return
        record = {"path": url.path, "query": url.query, "client_close_code": None, "open": True}
        conn = Conn(ws, record)
        with st.lock:
            st.connections.append(record)
            st.conns.append(conn)
        try:
            if query.get("v") != "10":
                return ws.close(4012, "Invalid API version")
            if query.get("encoding") != "json":
                return ws.close(4002, "Decode error")
            ws.send_text(json.dumps({"op": 10, "d": {"heartbeat_interval": st.heartbeat_ms}, "s": None, "t": None}))
            while True:
                msg = ws.receive()
                if msg is None:
                    break
                if conn.muted:
                    continue
                try:
                    frame = json.loads(msg[1])
                    op = frame["op"]
                except (ValueError, KeyError, TypeError):
                    ws.close(4002, "Decode error")
                    break
                self.on_frame(conn, op, frame.get("d"))
        finally:
            with st.lock:
                record["open"] = False
                record["client_close_code"] = ws.peer_close_code
                record["client_initiated_close"] = ws.peer_initiated_close
                if conn in st.conns:
                    st.conns.remove(conn)
                # A client's own close with 1000/1001 ends its session; an answer to ours does not.
                if ws.peer_initiated_close and ws.peer_close_code in (1000, 1001) and conn.session:
                    st.sessions.pop(conn.session, None)

    def on_frame(self, conn, op, d):
        st = self.state
        ws = conn.ws
        if op == 1:
            with st.lock:
                st.heartbeats += 1
                st.acks += 1
            ws.send_text(json.dumps({"op": 11}))
        elif op == 2:
            d = d if isinstance(d, dict) else {}
            if conn.session:
                return ws.close(4005, "Already authenticated")
            if d.get("token") != st.token:
                return ws.close(4004, "Authentication failed")
            with st.lock:
                if st.identify_faults:
                    f = st.identify_faults.pop(0)
                    return ws.close(f["code"], f.get("reason", "scripted"))
                sid = "sess-" + st.new_id()
                intents = d.get("intents") if isinstance(d.get("intents"), int) else 0
                st.sessions[sid] = {"seq": 1, "events": [], "intents": intents}
                st.identifies.append({"session_id": sid, "intents": intents})
                conn.session = sid
                ready = {"op": 0, "s": 1, "t": "READY", "d": {
                    "v": 10, "session_id": sid, "resume_gateway_url": "ws://127.0.0.1:%d/resume" % self.port,
                    "user": {"id": "9", "username": "aibox", "bot": True}, "guilds": [], "application": {"id": "9"}}}
                ws.send_text(json.dumps(ready))
        elif op == 6:
            d = d if isinstance(d, dict) else {}
            if conn.session:
                return ws.close(4005, "Already authenticated")
            if d.get("token") != st.token:
                return ws.close(4004, "Authentication failed")
            with st.lock:
                sid = d.get("session_id")
                s = st.sessions.get(sid)
                st.resumes.append({"session_id": sid, "seq": d.get("seq"), "ok": s is not None})
                if s is None:
                    ws.send_text(json.dumps({"op": 9, "d": False}))
                    return
                conn.session = sid
                seq = d.get("seq") or 0
                for n, frame in s["events"]:
                    if n > seq:
                        ws.send_text(json.dumps(frame))
                s["seq"] += 1
                ws.send_text(json.dumps({"op": 0, "s": s["seq"], "t": "RESUMED", "d": {}}))
        # Other opcodes are ignored, as Discord does with those it does not take.

    def apply_gateway_fault(self, f):
        st = self.state
        with st.lock:
            if f.get("on") == "identify":
                st.identify_faults.append(f)
                return
            conns = list(st.conns)
        for c in conns:
            name = f["fault"]
            if name == "mute":
                c.muted = True
            elif name == "reconnect":
                c.ws.send_text(json.dumps({"op": 7, "d": None}))
            elif name == "invalid_session":
                resumable = bool(f.get("resumable", False))
                if not resumable and c.session:
                    with st.lock:
                        st.sessions.pop(c.session, None)
                c.ws.send_text(json.dumps({"op": 9, "d": resumable}))
            elif name == "close":
                c.ws.close(f["code"], f.get("reason", "scripted"))
            elif name == "drop":
                c.ws.drop()

    # --- control ---

    def control_post_send(self, body):
        author = str(body.get("author_id", "1"))
        mid = self.state.new_id()
        data = {
            "id": mid, "channel_id": str(body.get("channel_id", "dm-" + author)),
            "author": {"id": author, "username": "user" + author, "bot": bool(body.get("bot", False))},
            "content": body.get("content", ""), "type": 0,
        }
        if body.get("guild_id"):
            data["guild_id"] = str(body["guild_id"])
        self.state.dispatch("MESSAGE_CREATE", data)
        return self.answer(200, {"message_id": mid})

    def check_fault(self, f):
        return fake_server.check_fault(f, GATEWAY_FAULTS | REST_FAULTS, coded=("status", "close"))

    def add_fault(self, f):
        if f["fault"] in REST_FAULTS:
            return super().add_fault(f)
        self.apply_gateway_fault(f)
        return None

    def control_get_gateway(self, body):
        st = self.state
        with st.lock:
            return self.answer(200, {
                "identifies": list(st.identifies), "resumes": list(st.resumes),
                "connections": [dict(c) for c in st.connections], "heartbeats": st.heartbeats,
                "acks": st.acks, "sessions": sorted(st.sessions)})


def main():
    p = fake_server.arguments()
    p.add_argument("--token", required=True)
    p.add_argument("--heartbeat-ms", type=int, default=500)
    args = p.parse_args()
    Handler.state = State(args.token, args.heartbeat_ms)
    fake_server.serve(Handler, args)


if __name__ == "__main__":
    main()
