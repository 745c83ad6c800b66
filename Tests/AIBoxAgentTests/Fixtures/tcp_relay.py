#!/usr/bin/python3
"""A plain TCP relay: the far end of a path the network can break.

    python3 tcp_relay.py LISTEN_PORT FAR_HOST:FAR_PORT [LISTEN_PORT FAR_HOST:FAR_PORT ...]

Listens on 127.0.0.1:LISTEN_PORT (each pair) and copies bytes both ways to FAR_HOST:FAR_PORT,
one upstream connection per client. It closes a side only when the other side closed or
failed, as a NAT or a proxy on the way does: when the path to the far host silently drops
packets, the client's connection stays open and silent, with no FIN and no reset — what a
dead link looks like to the agent (the agent speaks plain HTTP and WebSocket to loopback
only, so a test reaches a far test host through this relay in the agent's own namespace).

Writes "ready" on stdout once every port listens. Python 3 standard library only.
"""
import socket
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    for s in (dst, src):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def serve(listener, far):
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(far, timeout=10)
            upstream.settimeout(None)
        except OSError:
            client.close()
            continue
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: tcp_relay.py LISTEN_PORT FAR_HOST:FAR_PORT [...]")
    threads = []
    for i in range(0, len(args), 2):
        host, port = args[i + 1].rsplit(":", 1)
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", int(args[i])))
        listener.listen(64)
        threads.append(threading.Thread(target=serve, args=(listener, (host, int(port))), daemon=True))
    for t in threads:
        t.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
