#!/usr/bin/python3
"""Loopback fake of the WhatsApp Business Cloud API (the Graph API's messages call) and of
Meta's webhook deliveries, with scripted faults.

    python3 whatsapp_fake.py --port 0 --port-file F --token T --app-secret S
        [--verify-token V] [--webhook URL] [--phone-number-id ID]

Listens on 127.0.0.1, writes the port to F (write + rename) once listening, serves until
SIGTERM/SIGINT (exit 0). Python 3 standard library only.

Graph API (https://developers.facebook.com/docs/whatsapp/cloud-api/reference/messages):
  POST /v{N}/{phone-number-id}/messages  with `Authorization: Bearer TOKEN` and a JSON body
      {"messaging_product": "whatsapp", "to": NUMBER, "type": "text", "text": {"body": S}}.
      Answers 200 {"messaging_product": "whatsapp", "contacts": [{"input": NUMBER, "wa_id":
      NUMBER}], "messages": [{"id": "wamid.…"}]}; errors as Graph sends them, with their
      HTTP status: {"error": {"message", "type", "code", "error_subcode"?, "fbtrace_id"}}.
  A missing or wrong token     401, code 190 OAuthException "Invalid OAuth access token -
                               Cannot parse access token"
  Another phone number id      400, code 100 "Unsupported post request. Object with ID '…'
                               does not exist"
  A body that is not as above  400, code 100 "(#100) Invalid parameter"
  A text over 4096 characters  400, code 100 "(#100) Param text['body'] must be at most 4096
                               characters long."

Control paths (never recorded, never faulted; no token):
  POST /_fake/deliver   {"from": NUMBER, "text": S (absent: an image message), "id": WAMID
                        (default a new one), "bad_signature": bool, "no_signature": bool,
                        "duplicate": bool (deliver the same payload twice), "statuses_only":
                        bool (a delivery receipt, no message)} POSTs a webhook payload, shaped
                        as Meta's, to the webhook URL, signed `X-Hub-Signature-256:
                        sha256=HMAC-SHA256(app secret, body)` (or with a wrong key);
                        answers {"id": WAMID, "statuses": [HTTP status per POST], "error"?}
  POST /_fake/verify    {"verify_token": V (default --verify-token), "challenge": C
                        (default a random number), "mode": "subscribe"} runs the GET handshake
                        against the webhook: {"status": N, "body": S, "challenge": C}
  POST /_fake/webhook   {"url": URL} sets the webhook URL
  POST /_fake/script    {"faults": [FAULT, ...]} appended to the queue; {"queued": N}
  POST /_fake/reset     clears faults and records; ends every hang
  GET  /_fake/requests  {"requests": [{"seq", "time", "end", "path", "token_ok", "body",
                        "fault", "status"}]}
  GET  /_fake/sent      {"sent": [{"to", "text", "id"}]} in order

FAULT = {"fault": NAME, "times": N (default 1, -1 = forever), ...params}; a messages call
with the right token takes the first queued fault.
  status      "code" (Graph's error code: 130429, 131047, 131056, 190, ...), "http" (the
              HTTP status; default from the code), optional "message", "retry_after"
              (seconds, as a Retry-After header)
  hang        accept the request, send nothing, never close (until reset or exit)
Run it with /usr/bin/python3, as the other test fixtures are run.
"""

import hashlib
import hmac
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402

# Graph's own words and statuses for the codes a test scripts.
ERRORS = {
    190: (401, "OAuthException", "Invalid OAuth access token - Cannot parse access token"),
    100: (400, "OAuthException", "(#100) Invalid parameter"),
    130429: (400, "OAuthException", "(#130429) Rate limit hit"),
    131056: (400, "OAuthException", "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    80007: (400, "OAuthException", "(#80007) Rate limit issues"),
    131047: (400, "OAuthException", "(#131047) Re-engagement message"),
    131026: (400, "OAuthException", "(#131026) Message undeliverable"),
    131000: (500, "OAuthException", "(#131000) Something went wrong"),
    4: (429, "OAuthException", "(#4) Application request limit reached"),
}
FAULTS = {"status", "hang"}


def graph_error(code, http=None, message=None, subcode=None):
    status, etype, text = ERRORS.get(code, (400, "OAuthException", f"(#{code}) Error"))
    err = {"message": message or text, "type": etype, "code": code,
           "fbtrace_id": "A" + "".join(random.choice("abcdefghijkXYZ0123456789") for _ in range(22))}
    if subcode is not None:
        err["error_subcode"] = subcode
    if code == 131047:
        err["error_data"] = {"messaging_product": "whatsapp",
                             "details": "Message failed to send because more than 24 hours have passed since the customer last replied to this number."}
    return http or status, {"error": err}


class State(fake_server.State):
    def __init__(self, args):
        self.token = args.token
        self.app_secret = args.app_secret.encode()
        self.verify_token = args.verify_token
        self.webhook = args.webhook
        self.phone_number_id = args.phone_number_id
        super().__init__()

    def reset(self):
        with self.lock:
            super().reset()
            self.next_id = 1


def payload(state, sender, text, wamid, statuses_only):
    """A webhook payload as Meta sends it for one incoming message (or one status)."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": state.phone_number_id},
    }
    if statuses_only:
        value["statuses"] = [{"id": wamid, "status": "delivered", "timestamp": str(int(time.time())),
                              "recipient_id": sender}]
    else:
        value["contacts"] = [{"profile": {"name": "Owner"}, "wa_id": sender}]
        msg = {"from": sender, "id": wamid, "timestamp": str(int(time.time()))}
        if text is None:
            msg["type"] = "image"
            msg["image"] = {"mime_type": "image/jpeg", "sha256": "0" * 64, "id": "1234"}
        else:
            msg["type"] = "text"
            msg["text"] = {"body": text}
        value["messages"] = [msg]
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"value": value, "field": "messages"}]}]}


def post_webhook(url, raw, signature):
    req = urllib.request.Request(url, data=raw, method="POST")
    req.add_header("content-type", "application/json")
    if signature is not None:
        req.add_header("X-Hub-Signature-256", signature)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status, None
    except urllib.error.HTTPError as e:
        return e.code, None
    except Exception as e:  # noqa: BLE001 - reported to the test
        return None, f"{type(e).__name__}: {e}"


class Handler(fake_server.Handler):
    state: State = None

    def service(self, http_method, url, raw):
        st = self.state
        parts = url.path.strip("/").split("/")
        auth = self.headers.get("authorization") or ""
        token_ok = auth == "Bearer " + st.token
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        with st.lock:
            rec = {"seq": len(st.requests), "time": time.monotonic(), "end": None, "path": url.path,
                   "token_ok": token_ok, "body": body, "fault": None, "status": None}
            st.requests.append(rec)
            is_messages = http_method == "POST" and len(parts) == 3 and parts[0].startswith("v") and parts[2] == "messages"
            fault = fake_server.take_fault(st.faults) if token_ok and is_messages else None
            if fault:
                rec["fault"] = fault["fault"]
        if fault and fault["fault"] == "hang":
            return self.hang()
        headers = []
        if not is_messages:
            status, obj = 400, {"error": {"message": "Unknown path components: " + url.path, "type": "OAuthException", "code": 2500, "fbtrace_id": "Afake"}}
        elif not token_ok:
            status, obj = graph_error(190)
        elif fault:
            status, obj = graph_error(fault["code"], fault.get("http"), fault.get("message"), fault.get("subcode"))
            if fault.get("retry_after") is not None:
                headers.append(("retry-after", str(fault["retry_after"])))
        elif parts[1] != st.phone_number_id:
            status, obj = graph_error(100, 400, f"Unsupported post request. Object with ID '{parts[1]}' does not exist, cannot be loaded due to missing permissions, or does not support this operation.", 33)
        else:
            status, obj = self.send_message(body)
        with st.lock:
            rec["status"] = status
            rec["end"] = time.monotonic()
        self.answer(status, obj, headers)

    def send_message(self, body):
        st = self.state
        ok = (isinstance(body, dict) and body.get("messaging_product") == "whatsapp" and isinstance(body.get("to"), str)
              and body.get("type") == "text" and isinstance(body.get("text"), dict) and isinstance(body["text"].get("body"), str)
              and body["text"]["body"] != "")
        if not ok:
            return graph_error(100)
        text = body["text"]["body"]
        if len(text) > 4096:
            return graph_error(100, 400, "(#100) Param text['body'] must be at most 4096 characters long.")
        with st.lock:
            wamid = f"wamid.out{st.next_id:08d}"
            st.next_id += 1
            st.sent.append({"to": body["to"], "text": text, "id": wamid})
        return 200, {"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                     "messages": [{"id": wamid}]}

    def control_post_deliver(self, body):
        st = self.state
        if not st.webhook:
            return self.answer(400, {"error": "no webhook URL: start with --webhook or POST /_fake/webhook"})
        sender = body.get("from")
        if not isinstance(sender, str) or not sender.isdigit():
            return self.answer(400, {"error": "\"from\" (a number, digits only, as text) is required"})
        with st.lock:
            wamid = body.get("id") or f"wamid.in{st.next_id:08d}"
            st.next_id += 1
        raw_payload = json.dumps(payload(st, sender, body.get("text"), wamid, body.get("statuses_only", False))).encode()
        key = b"not-the-app-secret" if body.get("bad_signature") else st.app_secret
        sig = None if body.get("no_signature") else "sha256=" + hmac.new(key, raw_payload, hashlib.sha256).hexdigest()
        statuses, error = [], None
        for _ in range(2 if body.get("duplicate") else 1):
            code, error = post_webhook(st.webhook, raw_payload, sig)
            statuses.append(code)
        out = {"id": wamid, "statuses": statuses}
        if error:
            out["error"] = error
        return self.answer(200, out)

    def control_post_verify(self, body):
        st = self.state
        if not st.webhook:
            return self.answer(400, {"error": "no webhook URL: start with --webhook or POST /_fake/webhook"})
        challenge = body.get("challenge") or str(random.randint(10**8, 10**9))
        q = urllib.parse.urlencode({"hub.mode": body.get("mode", "subscribe"), "hub.challenge": challenge,
                                    "hub.verify_token": body.get("verify_token", st.verify_token)})
        try:
            with urllib.request.urlopen(st.webhook + "?" + q, timeout=10) as r:
                return self.answer(200, {"status": r.status, "body": r.read().decode(errors="replace"), "challenge": challenge})
        except urllib.error.HTTPError as e:
            return self.answer(200, {"status": e.code, "body": e.read().decode(errors="replace"), "challenge": challenge})
        except Exception as e:  # noqa: BLE001
            return self.answer(200, {"status": None, "error": f"{type(e).__name__}: {e}", "challenge": challenge})

    def control_post_webhook(self, body):
        st = self.state
        if not isinstance(body.get("url"), str):
            return self.answer(400, {"error": "\"url\" is required"})
        with st.lock:
            st.webhook = body["url"]
        return self.answer(200, {})

    def check_fault(self, f):
        return fake_server.check_fault(f, FAULTS, code_note=" (Graph's error code)")


def main():
    p = fake_server.arguments(host=False)
    p.add_argument("--token", required=True)
    p.add_argument("--app-secret", required=True)
    p.add_argument("--verify-token", default="")
    p.add_argument("--webhook", default=None)
    p.add_argument("--phone-number-id", default="106540352242922")
    args = p.parse_args()
    Handler.state = State(args)
    fake_server.serve(Handler, args)


if __name__ == "__main__":
    main()
