"""Prints, as one JSON line per process, the TCP sockets each pid holds and whether Nagle's
algorithm is off on each (TCP_NODELAY), read from the socket itself.

Node has no getsockopt and `ss -i` does not show TCP_NODELAY, so this duplicates each socket
descriptor of the target into this process with pidfd_getfd(2) (Linux 5.6+; needs ptrace rights
over the target, i.e. root or the same user) and asks getsockopt on the duplicate: the same
kernel socket, so the same option. The duplicate is closed again; the target's socket is untouched.

Usage: python3 tcp-nodelay.py PID...
"""

import ctypes
import json
import os
import socket
import sys

SYS_PIDFD_GETFD = 438  # x86_64 and aarch64 (asm-generic) alike
libc = ctypes.CDLL(None, use_errno=True)


def address(sock, peer):
    try:
        host, port = (sock.getpeername() if peer else sock.getsockname())[:2]
    except OSError:
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_sockets(pid):
    pidfd = os.pidfd_open(pid)
    found = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except FileNotFoundError:
                continue  # closed meanwhile
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                err = ctypes.get_errno()
                if err == 9:  # EBADF: closed meanwhile
                    continue
                raise OSError(err, f"pidfd_getfd({pid}, {name}): {os.strerror(err)}")
            sock = socket.socket(fileno=fd)
            try:
                if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
                    continue
                found.append({
                    "fd": int(name),
                    "local": address(sock, False),
                    "peer": address(sock, True),
                    "listening": sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1,
                    "noDelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0,
                })
            finally:
                sock.close()
    finally:
        os.close(pidfd)
    return found


for arg in sys.argv[1:]:
    print(json.dumps({"pid": int(arg), "sockets": tcp_sockets(int(arg))}))
