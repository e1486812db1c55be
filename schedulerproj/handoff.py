"""Listening sockets that outlive server processes, and the readiness message a server sends.

A listening socket opened by a longer-lived owner (``make run``'s launcher, or systemd with a
``.socket`` unit) and inherited by each server process keeps the port open while a server is
replaced: a connect queues in the kernel until some process accepts it, and is never refused.
A server tells its owner it is accepting with systemd's readiness protocol (``READY=1`` on the
unix datagram socket named by ``NOTIFY_SOCKET``), which the launcher speaks too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Connects that queue while no process accepts (a start, a reload); the kernel caps it at
# net.core.somaxconn.
BACKLOG = socket.SOMAXCONN


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket listening on ``host:port``, for child processes to inherit (``pass_fds``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def adopt(fd: int, factory: Any) -> Any:
    """Serve ``factory`` on the inherited TCP listening socket ``fd`` (IPv4 or IPv6) with the
    Twisted reactor; returns the listening port. Stopping that port closes only this process's
    copy: the socket stays open wherever else it is held."""
    from twisted.internet import reactor

    with socket.socket(fileno=os.dup(fd)) as probe:  # the family, from the socket itself
        family = probe.family
    if family not in (socket.AF_INET, socket.AF_INET6):
        # Twisted shuts an adopted unix socket down and unlinks its path when it stops,
        # which would take it from every other holder too.
        raise ValueError(f"fd {fd} is not a TCP socket ({family.name}); a TCP listening socket is needed")
    os.set_blocking(fd, False)
    port = reactor.adoptStreamPort(fd, family, factory)  # type: ignore[attr-defined]
    os.close(fd)  # the port holds its own duplicate
    return port


def notify_ready() -> None:
    """Tell whoever started this process that it accepts connections (no-op without
    ``NOTIFY_SOCKET``)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # a Linux abstract socket, as systemd may hand out
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


class ReadinessInbox:
    """The launcher's side of ``notify_ready``: one datagram socket per started process."""

    def __init__(self) -> None:
        # In the temp folder: a unix socket path must stay under ~100 bytes.
        self.directory = Path(tempfile.mkdtemp(prefix="scheduler-ready-"))
        self.count = 0

    def open(self) -> tuple[socket.socket, dict[str, str]]:
        """A socket to wait on, and the environment that points a child's ``NOTIFY_SOCKET`` at it."""
        self.count += 1
        path = self.directory / f"{self.count}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        return sock, {"NOTIFY_SOCKET": str(path)}

    @staticmethod
    def wait(
        sock: socket.socket, process: subprocess.Popen[bytes], timeout: float, give_up: Callable[[], bool]
    ) -> bool:
        """Until ``process`` says ``READY=1``: False when it exits first, ``timeout`` passes or
        ``give_up()`` holds. Closes ``sock`` (and its file) either way."""
        deadline = time.monotonic() + timeout
        sock.settimeout(0.1)
        try:
            while process.poll() is None and time.monotonic() < deadline and not give_up():
                try:
                    message = sock.recv(4096)
                except TimeoutError:
                    continue
                if b"READY=1" in message.split(b"\n"):
                    return True
            return False
        finally:
            path = sock.getsockname()
            sock.close()
            Path(path).unlink(missing_ok=True)

    def close(self) -> None:
        for leftover in self.directory.glob("*"):
            leftover.unlink(missing_ok=True)
        self.directory.rmdir()
