"""A loopback TCP forwarder that tests switch off and on, to make a server unreachable for a while.

Tests put it in front of the S3 server instead of stopping that server,
because the embedded S3 server keeps its objects in memory only.
"""

from __future__ import annotations

import select
import socket
import threading

BUFFER_BYTES = 65536
# How often the threads look at the switch.
POLL_SECONDS = 0.1


class TcpProxy:
    """Forward connections from a free port of 127.0.0.1 to `target_host:target_port`.

    While it is down, the listening socket is closed, so connection attempts
    are refused (ECONNREFUSED), and every forwarded connection has been cut.
    Use it as a context manager, which starts and stops it.
    """

    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._running = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = self._listen(0)
        self.accepted = 0

    @property
    def endpoint(self) -> str:
        """`127.0.0.1:port`, for `S3_ENDPOINT`."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> "TcpProxy":
        self._running.set()
        thread = threading.Thread(target=self._accept_loop, name="tcp-proxy-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Cut every connection, close the port and end the threads."""
        self._running.clear()
        self.down()
        for thread in self._threads:
            thread.join(timeout=5)

    def down(self) -> None:
        """Refuse new connections and cut the forwarded ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections = list(self._connections)
            self._connections.clear()
        if listener is not None:
            listener.close()
        for sock in connections:
            _close(sock)

    def up(self) -> None:
        """Accept and forward connections on the same port again."""
        with self._lock:
            if self._listener is None:
                self._listen(self.port)

    def is_up(self) -> bool:
        with self._lock:
            return self._listener is not None

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _listen(self, port: int) -> int:
        listener = socket.socket()
        # Rebinding the port while connections that the proxy closed sit in TIME_WAIT needs SO_REUSEADDR.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
        listener.settimeout(POLL_SECONDS)
        self._listener = listener
        return listener.getsockname()[1]

    def _accept_loop(self) -> None:
        while self._running.is_set():
            with self._lock:
                listener = self._listener
            if listener is None:
                self._running.wait(POLL_SECONDS)
                continue
            try:
                client, _ = listener.accept()
            except (socket.timeout, OSError):  # OSError: down() closed the listener.
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is None:  # down() came while connecting.
                    _close(client)
                    _close(upstream)
                    continue
                self._connections.update((client, upstream))
                self.accepted += 1
            thread = threading.Thread(target=self._pump, args=(client, upstream), name="tcp-proxy-pump",
                                      daemon=True)
            thread.start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while self._running.is_set():
                readable, _, _ = select.select(list(peers), [], [], POLL_SECONDS)
                for sock in readable:
                    data = sock.recv(BUFFER_BYTES)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):  # ValueError: select() on a socket that down() closed.
            return
        finally:
            with self._lock:
                self._connections.discard(client)
                self._connections.discard(upstream)
            _close(client)
            _close(upstream)


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
