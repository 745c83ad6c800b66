#!/usr/bin/env python3
"""A file server for the model-pull tests: serves the files of --dir over HTTP on 127.0.0.1,
with Range requests (`bytes=N-`, answered 206), and scripted faults, one per request.

    range_server.py --dir DIR --port 0 --port-file FILE

Writes the port to FILE (write + rename) once listening, serves until SIGTERM/SIGINT (exit 0).

Control (JSON):
    POST /_control/script   {"faults": [FAULT, ...]}  queued; each GET of a file takes the next
    GET  /_control/requests {"requests": [{"path", "range", "status", "sent"}, ...]}

Faults:
    {"cut_after": N}       send N bytes of the body (of a full Content-Length), then close
    {"ignore_range": true} answer a Range request with 200 and the whole file
    {"wrong_body": true}   every byte of the body inverted (a file that is not the one named)
    {"rate": BYTES_PER_S}  send slowly, in 16 KiB pieces
    {"status": CODE}       answer CODE with a short body
    {}                     nothing: a normal answer
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fake_server  # noqa: E402

lock = threading.Lock()
faults = []
requests = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def reply_json(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        doc = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/_control/script":
            with lock:
                faults.extend(doc.get("faults", []))
            return self.reply_json(200, {"ok": True})
        self.reply_json(404, {"error": "no such control path"})

    def do_GET(self):
        if self.path == "/_control/requests":
            with lock:
                return self.reply_json(200, {"requests": list(requests)})
        with lock:
            fault = faults.pop(0) if faults else {}
        record = {"path": self.path, "range": self.headers.get("Range"), "status": None, "sent": 0}
        with lock:
            requests.append(record)
        name = os.path.basename(self.path)
        path = os.path.join(args.dir, name)
        if "status" in fault:
            record["status"] = fault["status"]
            body = b"scripted failure\n"
            self.send_response(fault["status"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if not os.path.isfile(path):
            record["status"] = 404
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as f:
            data = f.read()
        if fault.get("wrong_body"):
            data = bytes(b ^ 0xFF for b in data)
        start = 0
        rng = self.headers.get("Range")
        if rng and not fault.get("ignore_range"):
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(data):
                record["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            record["status"] = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            record["status"] = 200
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if "cut_after" in fault:
            body = body[: fault["cut_after"]]
        rate = fault.get("rate")
        piece = 16384
        try:
            for i in range(0, len(body), piece):
                self.wfile.write(body[i : i + piece])
                self.wfile.flush()
                record["sent"] += len(body[i : i + piece])
                if rate:
                    time.sleep(piece / rate)
        except (BrokenPipeError, ConnectionResetError):
            pass
        if "cut_after" in fault:
            self.close_connection = True


parser = fake_server.arguments(host=False)
parser.add_argument("--dir", required=True)
args = parser.parse_args()
fake_server.serve(Handler, args)
