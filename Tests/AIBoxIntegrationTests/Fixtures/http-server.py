#!/usr/bin/python3
# Test HTTP server for update downloads, on 127.0.0.1 (a free port, printed on stdout once
# listening). Serves the files of DIR under /MODE/NAME:
#   ok        plain, with Range support (206)
#   cut-N     the first request of each file is cut after N bytes (connection closed);
#             later requests are served normally (resume with Range)
#   cuts-K-N  the first K requests of each file are each cut after N bytes of their body
#   norange   ignores Range: always the whole file (200)
#   more      sends 4096 bytes more than the file (a server sending more than promised)
#   hold      answers only once the file DIR/release exists (at most 60 s): a request in flight
# Every request's path and Range header is appended to DIR/requests.log.
# With CERT and KEY after DIR it speaks HTTPS.
import http.server
import os
import sys
import time

root = sys.argv[1]
served = {}  # (mode, name) -> requests cut so far


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = self.path.strip("/").split("/", 1)
        with open(os.path.join(root, "requests.log"), "a") as log:
            log.write(f"{self.path} {self.headers.get('Range', '-')}\n")
        if len(parts) != 2 or "/" in parts[1] or parts[1].startswith("."):
            self.send_error(404)
            return
        mode, name = parts
        if mode == "hold":
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(root, "release")) and time.monotonic() < deadline:
                time.sleep(0.05)
        path = os.path.join(root, name)
        if not os.path.isfile(path):
            self.send_error(404)
            return
        data = open(path, "rb").read()
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "norange" and rng.startswith("bytes=") and rng.endswith("-"):
            start = int(rng[len("bytes="):-1])
        body = data[start:]
        if mode == "more":
            body += b"\0" * 4096
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cuts, cut_at = 0, 0
        if mode.startswith("cut-"):
            cuts, cut_at = 1, int(mode[4:])
        elif mode.startswith("cuts-"):
            cuts, cut_at = (int(x) for x in mode[5:].split("-"))
        if served.get((mode, name), 0) < cuts:
            served[(mode, name)] = served.get((mode, name), 0) + 1
            self.wfile.write(body[:cut_at])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
if len(sys.argv) == 4:
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[2], sys.argv[3])
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
