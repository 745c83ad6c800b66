"""A minimal RFC 6455 WebSocket server side, for the loopback fakes (Discord, Slack).

Python 3 standard library only. Used from a http.server BaseHTTPRequestHandler:

    if websocket_server.is_upgrade(self.headers):
        ws = websocket_server.accept(self)      # answers 101, or 400 and returns None
        while True:
            msg = ws.receive()                  # (opcode, bytes) of a whole message, or None at the end
            ...
        ws.send_text("...") / ws.ping() / ws.close(4000, "why") / ws.drop()
        ws.go_silent()                          # a peer gone without a FIN: nothing sent, pings unanswered

What it does: the opening handshake (Sec-WebSocket-Accept), masked client frames (an unmasked
one is a protocol error: close 1002), fragmented messages (continuation frames put together),
ping answered with pong (the peer's pongs counted in `pongs`), the close handshake (the peer's
close code is kept in `peer_close_code`), messages of at most `max_message` bytes (bigger:
close 1009). Not done: extensions (permessage-deflate is never negotiated), subprotocols.
"""

import base64
import hashlib
import socket
import struct
import threading

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def is_upgrade(headers):
    return "websocket" in (headers.get("Upgrade") or "").lower() and "upgrade" in (headers.get("Connection") or "").lower()


def accept_key(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def accept(handler, max_message=1 << 20):
    """Completes the opening handshake on a BaseHTTPRequestHandler; a WebSocket or None."""
    key = handler.headers.get("Sec-WebSocket-Key")
    if not key or handler.headers.get("Sec-WebSocket-Version") != "13":
        body = b"a WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n"
        handler.send_response(400)
        handler.send_header("content-length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        return None
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept_key(key))
    handler.end_headers()
    handler.wfile.flush()
    handler.close_connection = True
    return WebSocket(handler.connection, handler.rfile, max_message)


class WebSocket:
    def __init__(self, sock, rfile, max_message):
        self.sock = sock
        self.rfile = rfile
        self.max_message = max_message
        self.lock = threading.Lock()
        self.closed = False  # a close frame was sent, or the socket is gone
        self.peer_close_code = None
        # True when the peer sent its close frame first (not an answer to ours).
        self.peer_initiated_close = False
        # A dead peer as seen from the other side: nothing is sent any more, pings included.
        self.silent = False
        self.pongs = 0

    # --- sending (thread-safe) ---

    def _send_frame(self, opcode, payload):
        head = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([n])
        elif n < 1 << 16:
            head += bytes([126]) + struct.pack("!H", n)
        else:
            head += bytes([127]) + struct.pack("!Q", n)
        with self.lock:
            if self.silent or (self.closed and opcode != OP_CLOSE):
                return False
            try:
                self.sock.sendall(head + payload)
                return True
            except OSError:
                self.closed = True
                return False

    def send_text(self, text):
        return self._send_frame(OP_TEXT, text.encode())

    def ping(self, payload=b""):
        return self._send_frame(OP_PING, payload[:125])

    def go_silent(self):
        """Nothing is sent from now on. Taken under the send lock: a frame another thread is
        sending is finished first, so once this returns not one more byte leaves."""
        with self.lock:
            self.silent = True

    def close(self, code=1000, reason=""):
        """Sends a close frame (once), then ends the TCP connection shortly after."""
        if self.closed:
            return
        self._send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode()[:120])
        self.closed = True
        # The server ends the TCP connection after the close frame (RFC 6455 7.1.1).
        threading.Timer(0.2, self.drop).start()

    def drop(self):
        """Ends the TCP connection without a close frame."""
        with self.lock:
            self.closed = True
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # --- receiving (one reader thread) ---

    def _read(self, n):
        data = self.rfile.read(n)
        if data is None or len(data) < n:
            raise EOFError
        return data

    def _frame(self):
        b0, b1 = self._read(2)
        fin, opcode = b0 & 0x80, b0 & 0x0F
        masked, n = b1 & 0x80, b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        if not masked:
            raise ProtocolError(1002, "a client frame must be masked")
        if n > self.max_message:
            raise ProtocolError(1009, "message too big")
        mask = self._read(4)
        data = self._read(n)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(fin), opcode, payload

    def receive(self):
        """The next whole text or binary message as (opcode, bytes); None once the peer closed
        or the connection ended."""
        message, kind = b"", None
        try:
            while True:
                fin, opcode, payload = self._frame()
                if opcode == OP_PING:
                    self._send_frame(OP_PONG, payload)
                    continue
                if opcode == OP_PONG:
                    self.pongs += 1
                    continue
                if opcode == OP_CLOSE:
                    self.peer_close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    self.peer_initiated_close = not self.closed
                    if not self.closed:
                        self._send_frame(OP_CLOSE, payload[:2])
                        self.closed = True
                    self.drop()
                    return None
                if opcode in (OP_TEXT, OP_BINARY):
                    message, kind = payload, opcode
                elif opcode == OP_CONT and kind is not None:
                    message += payload
                else:
                    raise ProtocolError(1002, "unexpected opcode %d" % opcode)
                if len(message) > self.max_message:
                    raise ProtocolError(1009, "message too big")
                if fin:
                    return kind, message
        except ProtocolError as e:
            self.close(e.code, e.reason)
            return None
        except (EOFError, OSError, ValueError):
            self.closed = True
            return None


class ProtocolError(Exception):
    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason
