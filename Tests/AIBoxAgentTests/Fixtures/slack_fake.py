#!/usr/bin/python3
"""Loopback fake of Slack's Socket Mode and the Web API calls a bot uses, with scripted faults.

    python3 slack_fake.py --port 0 --port-file F --app-token XAPP --bot-token XOXB
        [--team T0AIBOX] [--ping-ms 5000] [--ack-timeout-ms 3000] [--refresh-close-ms 1000]

Listens on 127.0.0.1 (or --host), writes the port to F (write + rename) once listening, serves until
SIGTERM/SIGINT (exit 0). Python 3 standard library only; the WebSocket side is
websocket_server.py beside it.

Web API (https://docs.slack.dev/reference/methods), POST under /api, the token as
`Authorization: Bearer T`; errors are HTTP 200 with {"ok": false, "error": CODE}, as Slack's:
  apps.connections.open  the app-level token → {"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=…&app_id=…"}
                         (a ticket is good for one socket); no token → not_authed; the bot token →
                         not_allowed_token_type; another → invalid_auth
  chat.postMessage       the bot token (the app token → not_allowed_token_type, another →
                         invalid_auth), JSON or form {"channel", "text"}: no channel →
                         channel_not_found, "C404…" → channel_not_found, "CNOTIN…" →
                         not_in_channel, no text → no_text, over 40,000 characters →
                         msg_too_long; a user id (U…) posts to the DM "D" + its id. Recorded, then
                         answered {"ok": true, "channel", "ts", "message"}; a post to a DM comes
                         back as a message event with the bot's `bot_id` (Slack's echo of the
                         bot's own message)
  anything else          {"ok": false, "error": "unknown_method"}

Socket Mode (https://docs.slack.dev/apis/events-api/using-socket-mode), at /link/?ticket=…:
  on connect    {"type": "hello", "num_connections": N, "debug_info": {...}, "connection_info": {...}}
  every --ping-ms   a WebSocket ping (Slack's keepalive); pongs are counted
  an event      {"envelope_id", "type": "events_api", "accepts_response_payload": false,
                "retry_attempt": N, "retry_reason": "" | "timeout", "payload": {"team_id",
                "api_app_id", "type": "event_callback", "event_id", "event_time", "event": {...}}}
                on the newest socket that said hello and was not told to disconnect (else any
                open one; else it waits for one). Not acknowledged ({"envelope_id": …} back on
                any socket) within --ack-timeout-ms: delivered again in a new envelope with the
                same event_id, retry_attempt + 1, up to 3 retries, then dropped (as Slack does).
  open sockets are counted: `max_open` is the most open at once.

Control paths (never recorded; no token):
  POST /_fake/send      {"user", "team" (default --team), "text", "channel" (default "D" + user),
                        "channel_type" ("im"), "subtype", "bot_id", "event_type" ("message")}
                        → {"event_id", "envelope_id" (null while no socket)}
  POST /_fake/script    {"faults": [FAULT, ...]}; {"queued": N}
  POST /_fake/reset     clears faults and records
  GET  /_fake/requests  {"requests": [{"method", "auth" ("app"|"bot"|"other"|"none"), "body",
                        "status", "error", "fault", "time", "end"}]}
  GET  /_fake/sent      {"sent": [{"channel", "text", "ts"}]}
  GET  /_fake/sockets   {"connections": [{"id", "open", "hello", "silent", "disconnect",
                        "pings", "pongs", "acks", "client_close_code", "client_initiated_close",
                        "opened", "closed"}], "open": N, "max_open": N, "bad_tickets": N}
  GET  /_fake/events    {"events": [{"event_id", "acked", "dropped", "envelopes": [{"envelope_id",
                        "socket", "retry_attempt", "acked"}]}]}

FAULT = {"fault": NAME, ...}. Socket faults act at once on the newest open socket that said
hello (a "times" count does not apply), except those marked "next":
  disconnect   "reason": refresh_requested | warning | link_disabled: send {"type": "disconnect",
               "reason": …}, then close the socket (1000) after "close_after_ms" (default
               --refresh-close-ms) unless the client did first
  silent       the socket goes silent without closing: nothing more is sent on it (no pings, no
               pongs, no events) and nothing it receives is taken (a peer gone without a FIN)
  drop         end the TCP connection without a close frame
  close        "code": N: close with N
  no_hello     next: the next socket opened never gets its hello
  duplicate    next: the next event is delivered twice, the second time as Slack's retry
               (retry_attempt 1, retry_reason "timeout", a new envelope_id, the same event_id)
               whether or not the first was acknowledged (an acknowledgement that came too late)
Web API faults ("method": NAME, "times": N, default 1, -1 = forever), taken by the next matching
call (after the token check):
  error        "error": CODE → HTTP 200 {"ok": false, "error": CODE}
  status       "code": N (429, 500, …), "retry_after": S → HTTP N with Retry-After: S (429's body
               {"ok": false, "error": "ratelimited"})
  hang         never answer (the connection stays open)
Run it with /usr/bin/python3, as the other test fixtures are run.
"""

import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402
import websocket_server  # noqa: E402

SOCKET_FAULTS = {"disconnect", "silent", "drop", "close", "no_hello", "duplicate"}
API_FAULTS = {"error", "status", "hang"}
APP_ID = "A0FAKEAPP"
BOT_ID = "B0FAKEBOT"
BOT_USER = "U0FAKEBOT"
MAX_RETRIES = 3


class Sock:
    """An open Socket Mode connection."""

    def __init__(self, sid, ws, record):
        self.id = sid
        self.ws = ws
        self.record = record
        self.hello = False
        self.disconnecting = False


class State(fake_server.State):
    def __init__(self, args):
        self.app_token = args.app_token
        self.bot_token = args.bot_token
        self.team = args.team
        self.ping_ms = args.ping_ms
        self.ack_timeout = args.ack_timeout_ms / 1000
        self.refresh_close_ms = args.refresh_close_ms
        self.counter = 1000
        super().__init__()

    def reset(self):
        with self.lock:
            super().reset()
            self.next_faults = []
            self.tickets = set()
            self.bad_tickets = 0
            self.connections = []
            self.socks = []
            self.max_open = 0
            self.events = {}  # event_id → {"event_id", "body", "acked", "dropped", "envelopes": [...]}
            self.order = []
            self.envelopes = {}  # envelope_id → the envelope's record
            self.pending = []  # (event_id, retry_attempt) waiting for a socket

    def new_id(self, prefix):
        with self.lock:
            self.counter += 1
            return "%s%d" % (prefix, self.counter)

    def take_next(self, name):
        for f in self.next_faults:
            if f["fault"] == name:
                self.next_faults.remove(f)
                return f
        return None

    def target(self):
        """The socket an envelope goes to: the newest that said hello and is not going away."""
        ready = [s for s in self.socks if s.hello and not s.ws.closed]
        fresh = [s for s in ready if not s.disconnecting]
        pick = fresh or ready
        return pick[-1] if pick else None

    # --- events ---

    def new_event(self, body):
        user = str(body.get("user", "U0USER"))
        team = str(body.get("team", self.team))
        ts = "%.6f" % time.time()
        event_id = self.new_id("Ev")
        event = {
            "type": body.get("event_type", "message"), "channel": str(body.get("channel", "D" + user)),
            "user": user, "text": body.get("text", ""), "ts": ts, "event_ts": ts, "team": team, "user_team": team,
            "channel_type": body.get("channel_type", "im"),
            "blocks": [{"type": "rich_text", "block_id": "b1", "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": body.get("text", "")}]}]}],
        }
        if body.get("bot_id"):
            event["bot_id"] = str(body["bot_id"])
        else:
            event["client_msg_id"] = str(uuid.uuid4())
        if body.get("subtype"):
            event["subtype"] = str(body["subtype"])
        payload = {
            "token": "verification-token-unused", "team_id": self.team, "api_app_id": APP_ID, "event": event,
            "type": "event_callback", "event_id": event_id, "event_time": int(time.time()),
            "authorizations": [{"team_id": self.team, "user_id": BOT_USER, "is_bot": True}],
            "is_ext_shared_channel": False,
        }
        with self.lock:
            self.events[event_id] = {"event_id": event_id, "payload": payload, "acked": False, "dropped": False, "envelopes": []}
            self.order.append(event_id)
            duplicate = self.take_next("duplicate")
        envelope = self.deliver(event_id, 0, "")
        if duplicate:
            threading.Timer(0.1, self.deliver, args=(event_id, 1, "timeout", True)).start()
        return event_id, envelope

    def deliver(self, event_id, attempt, reason, forced=False):
        """Sends the event in a new envelope; its id (None: no socket, it waits)."""
        with self.lock:
            ev = self.events.get(event_id)
            if ev is None or ev["dropped"] or (ev["acked"] and not forced):
                return None
            sock = self.target()
            if sock is None:
                self.pending.append((event_id, attempt, reason))
                return None
            envelope_id = str(uuid.uuid4())
            rec = {"envelope_id": envelope_id, "socket": sock.id, "retry_attempt": attempt, "acked": False}
            ev["envelopes"].append(rec)
            self.envelopes[envelope_id] = rec
            frame = {"envelope_id": envelope_id, "type": "events_api", "accepts_response_payload": False,
                     "retry_attempt": attempt, "retry_reason": reason, "payload": ev["payload"]}
        sock.ws.send_text(json.dumps(frame))
        threading.Timer(self.ack_timeout, self.check_ack, args=(event_id, envelope_id, attempt)).start()
        return envelope_id

    def check_ack(self, event_id, envelope_id, attempt):
        with self.lock:
            ev = self.events.get(event_id)
            rec = self.envelopes.get(envelope_id)
            if ev is None or rec is None or rec["acked"] or ev["acked"] or ev["dropped"]:
                return
            # Only the newest envelope of the event retries.
            if ev["envelopes"][-1] is not rec:
                return
            if attempt >= MAX_RETRIES:
                ev["dropped"] = True
                return
        self.deliver(event_id, attempt + 1, "timeout")

    def flush_pending(self):
        with self.lock:
            waiting, self.pending = self.pending, []
        for event_id, attempt, reason in waiting:
            self.deliver(event_id, attempt, reason)

    def acked(self, sock, envelope_id):
        with self.lock:
            sock.record["acks"] += 1
            rec = self.envelopes.get(envelope_id)
            if rec is None:
                return
            rec["acked"] = True
            for ev in self.events.values():
                if rec in ev["envelopes"]:
                    ev["acked"] = True


def check_more(f):
    """Slack's own checks of a scripted fault (fake_server.check_fault does the rest)."""
    name = f["fault"]
    if name in API_FAULTS and f.get("method") not in ("apps.connections.open", "chat.postMessage"):
        return "a Web API fault needs \"method\": apps.connections.open or chat.postMessage"
    if name == "error" and not isinstance(f.get("error"), str):
        return "an error fault needs \"error\": a Slack error code"
    if name == "disconnect" and f.get("reason") not in ("refresh_requested", "warning", "link_disabled"):
        return "a disconnect fault needs \"reason\": refresh_requested, warning or link_disabled"
    return None


class Handler(fake_server.Handler):
    state: State = None
    content_type = "application/json; charset=utf-8"
    echo_bad_fault = True
    websocket_paths = ("/link/",)

    def service(self, http_method, url, raw):
        if http_method == "POST" and url.path.startswith("/api/"):
            return self.api(url.path[len("/api/"):], raw)
        return self.answer(404, {"ok": False, "error": "not_found"})

    # --- Web API ---

    def api(self, method, raw):
        st = self.state
        auth = self.headers.get("Authorization") or ""
        who = "none"
        if auth.startswith("Bearer "):
            token = auth[len("Bearer "):]
            who = "app" if token == st.app_token else "bot" if token == st.bot_token else "other"
        body = None
        if raw:
            ctype = (self.headers.get("content-type") or "").split(";")[0].strip()
            try:
                body = json.loads(raw) if ctype == "application/json" else dict(urllib.parse.parse_qsl(raw.decode()))
            except (ValueError, UnicodeDecodeError):
                body = None
        rec = {"method": method, "auth": who, "body": body, "status": None, "error": None, "fault": None, "time": time.time(), "end": None}
        with st.lock:
            st.requests.append(rec)
        status, obj, headers = self.serve(method, who, body if isinstance(body, dict) else {}, rec)
        with st.lock:
            rec["status"] = status
            rec["error"] = obj.get("error") if isinstance(obj, dict) else None
            rec["end"] = time.time()
        if status is None:
            return  # hang: never answered
        self.answer(status, obj, headers, None if isinstance(obj, dict) else "text/plain")

    def serve(self, method, who, body, rec):
        st = self.state
        wanted = {"apps.connections.open": "app", "chat.postMessage": "bot"}.get(method)
        if wanted is None:
            return 200, {"ok": False, "error": "unknown_method"}, ()
        if who == "none":
            return 200, {"ok": False, "error": "not_authed"}, ()
        if who == "other":
            return 200, {"ok": False, "error": "invalid_auth"}, ()
        if who != wanted:
            return 200, {"ok": False, "error": "not_allowed_token_type"}, ()
        with st.lock:
            fault = fake_server.take_fault(st.faults, lambda f: f.get("method") == method)
        if fault:
            rec["fault"] = fault["fault"]
            if fault["fault"] == "hang":
                while True:  # until the client gives up and the server is stopped
                    time.sleep(1)
            if fault["fault"] == "error":
                return 200, {"ok": False, "error": fault["error"]}, ()
            code = fault["code"]
            headers = [("Retry-After", str(fault["retry_after"]))] if "retry_after" in fault else []
            if code == 429:
                return 429, {"ok": False, "error": "ratelimited"}, headers
            return code, b"upstream trouble\n", headers
        if method == "apps.connections.open":
            ticket = str(uuid.uuid4())
            with st.lock:
                st.tickets.add(ticket)
            return 200, {"ok": True, "url": "ws://127.0.0.1:%d/link/?ticket=%s&app_id=%s" % (self.port, ticket, APP_ID)}, ()
        channel = str(body.get("channel") or "")
        text = body.get("text")
        if not channel or channel.startswith("C404"):
            return 200, {"ok": False, "error": "channel_not_found"}, ()
        if channel.startswith("CNOTIN"):
            return 200, {"ok": False, "error": "not_in_channel"}, ()
        if not isinstance(text, str) or not text:
            return 200, {"ok": False, "error": "no_text"}, ()
        if len(text) > 40000:
            return 200, {"ok": False, "error": "msg_too_long"}, ()
        if channel.startswith("U"):
            channel = "D" + channel
        ts = "%.6f" % time.time()
        with st.lock:
            st.sent.append({"channel": channel, "text": text, "ts": ts})
        message = {"type": "message", "subtype": "bot_message", "text": text, "ts": ts, "bot_id": BOT_ID, "user": BOT_USER}
        if channel.startswith("D"):
            # Slack's echo of the bot's own message in the DM.
            threading.Thread(target=st.new_event, args=({"user": BOT_USER, "text": text, "channel": channel, "bot_id": BOT_ID},),
                             daemon=True).start()
        return 200, {"ok": True, "channel": channel, "ts": ts, "message": message}, ()

    # --- Socket Mode ---

    def websocket(self, url):
        """A Socket Mode connection."""
        st = self.state
        query = dict(urllib.parse.parse_qsl(url.query))
        with st.lock:
            ticket_ok = query.get("ticket") in st.tickets
            st.tickets.discard(query.get("ticket"))
            if not ticket_ok:
                st.bad_tickets += 1
        if not ticket_ok:
            body = b"invalid or used ticket\n"
            self.send_response(401)
            self.send_header("content-length", str(len(body)))
            self.send_header("connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            return
        ws = websocket_server.accept(self)
        if ws is None:
            return
        with st.lock:
            sid = len(st.connections) + 1
            record = {"id": sid, "open": True, "hello": False, "silent": False, "disconnect": None, "pings": 0, "pongs": 0,
                      "acks": 0, "client_close_code": None, "client_initiated_close": False, "opened": time.time(), "closed": None}
            sock = Sock(sid, ws, record)
            st.connections.append(record)
            st.socks.append(sock)
            st.max_open = max(st.max_open, sum(1 for r in st.connections if r["open"]))
            no_hello = st.take_next("no_hello")
        threading.Thread(target=self.pinger, args=(sock,), daemon=True).start()
        try:
            if not no_hello:
                # The hello and the mark that it was said in one step: a client that has read its
                # hello is a target for envelopes and faults at once, and no envelope goes out
                # before the hello (the first frame: its send does not wait on the client).
                with st.lock:
                    n = sum(1 for r in st.connections if r["open"])
                    ws.send_text(json.dumps({"type": "hello", "num_connections": n, "debug_info": {
                        "host": "applink-fake-%d" % sid, "build_number": 1, "approximate_connection_time": 18060},
                        "connection_info": {"app_id": APP_ID}}))
                    sock.hello = True
                    record["hello"] = True
                st.flush_pending()
            while True:
                msg = ws.receive()
                if msg is None:
                    break
                if ws.silent:
                    continue
                try:
                    frame = json.loads(msg[1])
                except ValueError:
                    continue
                if isinstance(frame, dict) and isinstance(frame.get("envelope_id"), str):
                    st.acked(sock, frame["envelope_id"])
        finally:
            with st.lock:
                record["open"] = False
                record["closed"] = time.time()
                record["client_close_code"] = ws.peer_close_code
                record["client_initiated_close"] = ws.peer_initiated_close
                record["pongs"] = ws.pongs
                if sock in st.socks:
                    st.socks.remove(sock)

    def pinger(self, sock):
        """Slack's keepalive: a WebSocket ping every --ping-ms while the socket is open."""
        st = self.state
        while not sock.ws.closed:
            time.sleep(st.ping_ms / 1000)
            if sock.ws.silent or sock.ws.closed:
                continue
            if sock.ws.ping(b"slack-fake"):
                with st.lock:
                    sock.record["pings"] += 1
                    sock.record["pongs"] = sock.ws.pongs

    def apply_socket_fault(self, f):
        st = self.state
        name = f["fault"]
        with st.lock:
            if name in ("no_hello", "duplicate"):
                st.next_faults.append(f)
                return None
            sock = st.target()
        if sock is None:
            return "no socket is open"
        if name == "disconnect":
            reason = f["reason"]
            with st.lock:
                sock.disconnecting = True
                sock.record["disconnect"] = reason
            sock.ws.send_text(json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake-%d" % sock.id}}))
            delay = f.get("close_after_ms", 0 if reason == "link_disabled" else st.refresh_close_ms) / 1000
            threading.Timer(delay, sock.ws.close, args=(1000, "")).start()
        elif name == "silent":
            sock.ws.go_silent()
            with st.lock:
                sock.record["silent"] = True
        elif name == "drop":
            sock.ws.drop()
        elif name == "close":
            sock.ws.close(f["code"], f.get("reason", "scripted"))
        return None

    # --- control ---

    def control_post_send(self, body):
        event_id, envelope_id = self.state.new_event(body)
        return self.answer(200, {"event_id": event_id, "envelope_id": envelope_id})

    def check_fault(self, f):
        return fake_server.check_fault(f, SOCKET_FAULTS | API_FAULTS, check_more, coded=("status", "close"))

    def add_fault(self, f):
        if f["fault"] in API_FAULTS:
            return super().add_fault(f)
        return self.apply_socket_fault(f)

    def control_get_sockets(self, body):
        st = self.state
        with st.lock:
            for s in st.socks:
                s.record["pongs"] = s.ws.pongs
            return self.answer(200, {
                "connections": [dict(r) for r in st.connections], "open": sum(1 for r in st.connections if r["open"]),
                "max_open": st.max_open, "bad_tickets": st.bad_tickets})

    def control_get_events(self, body):
        st = self.state
        with st.lock:
            events = [{"event_id": e, "acked": st.events[e]["acked"], "dropped": st.events[e]["dropped"],
                       "text": st.events[e]["payload"]["event"].get("text"),
                       "envelopes": [dict(x) for x in st.events[e]["envelopes"]]} for e in st.order]
            return self.answer(200, {"events": events})


def main():
    p = fake_server.arguments()
    p.add_argument("--app-token", required=True)
    p.add_argument("--bot-token", required=True)
    p.add_argument("--team", default="T0AIBOX")
    p.add_argument("--ping-ms", type=int, default=5000)
    p.add_argument("--ack-timeout-ms", type=int, default=3000)
    p.add_argument("--refresh-close-ms", type=int, default=1000)
    args = p.parse_args()
    Handler.state = State(args)
    fake_server.serve(Handler, args)


if __name__ == "__main__":
    main()
