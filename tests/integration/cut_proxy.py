#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A TCP proxy that breaks a download, for the client's resume tests.

cut_proxy.py UPSTREAM_PORT CUT_BYTES LOG — listens on 127.0.0.1 (the port is printed on
stdout's first line) and relays every connection to 127.0.0.1:UPSTREAM_PORT. The first
connection that carries a GET whose head has no Range header is closed after CUT_BYTES bytes
of the answer. Each request head that goes through is logged to LOG as one line: the request
line, then the Range and If-Match values (or "-").
"""
import socket
import sys
import threading

upstream, cut_at, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
state = {"cut_done": False}


def log(head):
    lines = head.decode("latin-1").split("\r\n")
    hdr = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            hdr[k.strip().lower()] = v.strip()
    with lock, open(log_path, "a") as f:
        f.write("%s range=%s if-match=%s\n" % (lines[0], hdr.get("range", "-"),
                                                hdr.get("if-match", "-")))
        return lines[0].startswith("GET ") and "range" not in hdr


def pump_up(client, server, flags):
    buf = b""
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            buf += data
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                if log(head):
                    with lock:
                        if not state["cut_done"]:
                            state["cut_done"] = True
                            flags["cut"] = True
            server.sendall(data)
    except OSError:
        pass
    finally:
        try:
            server.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def pump_down(server, client, flags):
    sent = 0
    try:
        while True:
            data = server.recv(65536)
            if not data:
                break
            if flags.get("cut"):
                room = cut_at - sent
                if room <= 0 or len(data) >= room:
                    client.sendall(data[:max(room, 0)])
                    break
            client.sendall(data)
            sent += len(data)
    except OSError:
        pass
    finally:
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def serve(client):
    server = socket.create_connection(("127.0.0.1", upstream))
    flags = {}
    threading.Thread(target=pump_up, args=(client, server, flags), daemon=True).start()
    pump_down(server, client, flags)


lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", 0))
lsock.listen(16)
print(lsock.getsockname()[1], flush=True)
while True:
    c, _ = lsock.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
