"""A TCP proxy that injects network faults between a client and one emulator.

It forwards bytes, never parses them, so it sits equally in front of HTTP keep-alive
(moto, fake-gcs-server) and HTTPS (the Cosmos emulator). One IO thread runs a
``selectors`` loop over every socket; :meth:`FaultProxy.set_mode` takes effect at once,
on new and existing connections:

``pass``            forward both ways.
``blackhole``       move nothing: new connections are accepted but not connected
                    upstream, existing ones stall (bytes wait in kernel buffers, as on
                    a partition). Back in ``pass``, stalled traffic resumes — a request
                    sent during the partition may still land after it heals, just as a
                    TCP retransmission would.
``reset``           abort every open connection with a TCP RST and reset new ones.
``delay``           hold every chunk ``delay_s`` seconds before forwarding it (order kept).
``drop_upstream``   one-way loss: client→server bytes (and a FIN) are read and discarded.
``drop_downstream`` one-way loss: server→client bytes (and a FIN) are read and discarded.
"""

from __future__ import annotations

import collections
import errno
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

MODES = ("pass", "blackhole", "reset", "delay", "drop_upstream", "drop_downstream")
_CHUNK = 65536
_MAX_BUFFERED = 1 << 20          # stop reading a side whose peer has this much unsent
_SHORT = {"upstream": "up", "downstream": "down"}


@dataclass
class _Direction:
    """Bytes flowing one way: read from ``src``, written to ``dst``."""

    src: socket.socket
    dst: socket.socket
    name: str                                   # "upstream" (client→server) or "downstream"
    chunks: collections.deque = field(default_factory=collections.deque)   # (release_at, bytes)
    buffered: int = 0
    src_eof: bool = False
    dst_shut: bool = False


@dataclass
class _Connection:
    client: socket.socket
    upstream: socket.socket | None = None
    connected: bool = False
    up: _Direction | None = None
    down: _Direction | None = None


def _abort(sock: socket.socket | None) -> None:
    """Close with SO_LINGER 0, so the peer sees a TCP RST rather than a clean FIN."""
    if sock is None:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class FaultProxy:
    """Listens on ``listen_host`` (an OS-picked port) and forwards to the upstream address."""

    def __init__(self, upstream_host: str, upstream_port: int, listen_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listen_host = listen_host
        self.port: int | None = None
        self._mode, self._delay_s = "pass", 0.0
        self._lock = threading.Lock()
        self._pending_reset = False
        self._generation = self._applied_generation = 0
        self._applied = threading.Condition(self._lock)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conns: list[_Connection] = []
        self._stats = collections.Counter[str]()

    # -- control (any thread) -----------------------------------------------------------

    def start(self) -> int:
        """Start listening and forwarding; returns the listening port."""
        if self._thread is not None:
            raise RuntimeError("this FaultProxy is already started; create a new one to restart")
        self._listener = socket.create_server((self.listen_host, 0), backlog=128)
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy:{self.port}", daemon=True)
        self._thread.start()
        return self.port

    def set_mode(self, mode: str, delay_s: float = 0.0) -> None:
        """Switch fault mode (see the module docstring); ``delay_s`` is used by ``delay``."""
        if mode not in MODES:
            raise ValueError(f"unknown fault mode {mode!r}; use one of {', '.join(MODES)}")
        if mode == "delay" and delay_s <= 0:
            raise ValueError("mode 'delay' needs delay_s > 0 (seconds added to every chunk)")
        with self._applied:
            self._mode, self._delay_s = mode, delay_s
            self._pending_reset = self._pending_reset or mode == "reset"
            self._generation += 1
            wanted = self._generation
        self._wake()
        # return only once the IO thread has switched, so the caller's next request
        # already meets the new mode
        with self._applied:
            self._applied.wait_for(lambda: self._applied_generation >= wanted or not self._running(),
                                   timeout=5)

    @property
    def mode(self) -> str:
        """The fault mode now in force."""
        return self._mode

    def stats(self) -> dict[str, int]:
        """Counters: accepted, reset, bytes_up, bytes_down, dropped_up, dropped_down."""
        with self._lock:
            return dict(self._stats)

    def stop(self) -> None:
        """Close every socket and join the IO thread. Safe to call twice."""
        if self._thread is None or self._stopping:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout=10)
        self._wake_w.close()

    def __enter__(self) -> "FaultProxy":
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wake(self) -> None:
        if self._thread is not None:
            try:
                self._wake_w.send(b"x")
            except OSError:
                pass

    # -- IO thread ----------------------------------------------------------------------

    def _run(self) -> None:
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping:
                self._apply_mode_change()
                self._refresh_interest()
                for key, events in self._sel.select(self._next_timeout()):
                    self._dispatch(key, events)
        finally:
            for conn in list(self._conns):
                self._close(conn, abort=True)
            self._sel.close()
            self._listener.close()
            self._wake_r.close()

    def _dispatch(self, key: selectors.SelectorKey, events: int) -> None:
        tag = key.data
        if tag == "wake":
            try:
                while self._wake_r.recv(4096):
                    pass
            except BlockingIOError:
                pass
        elif tag == "accept":
            self._accept()
        else:
            conn, sock = tag
            if conn not in self._conns:
                return
            if sock is conn.upstream and not conn.connected and events & selectors.EVENT_WRITE:
                self._finish_connect(conn)
                return
            if events & selectors.EVENT_READ:
                self._read(conn, conn.up if sock is conn.client else conn.down)
            if events & selectors.EVENT_WRITE and conn in self._conns:
                self._write(conn, conn.down if sock is conn.client else conn.up)

    def _running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def _apply_mode_change(self) -> None:
        with self._applied:
            reset, self._pending_reset = self._pending_reset, False
            self._applied_generation = self._generation
            self._applied.notify_all()
        if reset:
            for conn in list(self._conns):
                self._close(conn, abort=True)
                self._count("reset")
        if self._mode != "blackhole":
            for conn in list(self._conns):
                if conn.upstream is None:
                    self._connect_upstream(conn)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            self._count("accepted")
            if self._mode == "reset":
                _abort(client)
                self._count("reset")
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(client)      # registered for reads once upstream is connected
            self._conns.append(conn)
            if self._mode != "blackhole":
                self._connect_upstream(conn)

    def _connect_upstream(self, conn: _Connection) -> None:
        upstream = socket.socket(socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET)
        upstream.setblocking(False)
        upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.upstream = upstream
        code = upstream.connect_ex(self.upstream)
        if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
            self._close(conn, abort=True)
            return
        self._set(upstream, selectors.EVENT_WRITE, conn)

    def _finish_connect(self, conn: _Connection) -> None:
        assert conn.upstream is not None
        if conn.upstream.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
            self._close(conn, abort=True)     # upstream refused: the client sees a reset
            return
        conn.connected = True
        conn.up = _Direction(conn.client, conn.upstream, "upstream")
        conn.down = _Direction(conn.upstream, conn.client, "downstream")

    def _read(self, conn: _Connection, way: _Direction | None) -> None:
        if way is None:
            return
        try:
            data = way.src.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn, abort=True)
            return
        if not data:
            way.src_eof = True
            if self._mode == f"drop_{way.name}":
                way.chunks.clear()
                way.buffered = 0
                way.dst_shut = True          # the FIN is lost with the rest of this direction
            self._maybe_shut(conn, way)
            return
        if self._mode == f"drop_{way.name}":
            self._count(f"dropped_{_SHORT[way.name]}", len(data))
            return
        if self._mode == "reset":
            self._close(conn, abort=True)
            self._count("reset")
            return
        release = time.monotonic() + self._delay_s if self._mode == "delay" else 0.0
        way.chunks.append((release, data))
        way.buffered += len(data)

    def _write(self, conn: _Connection, way: _Direction | None) -> None:
        if way is None:
            return
        now, delaying = time.monotonic(), self._mode == "delay"
        while way.chunks and (not delaying or way.chunks[0][0] <= now):
            release, data = way.chunks[0]
            try:
                sent = way.dst.send(data)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn, abort=True)
                return
            self._count(f"bytes_{_SHORT[way.name]}", sent)
            way.buffered -= sent
            if sent < len(data):
                way.chunks[0] = (release, data[sent:])
                return
            way.chunks.popleft()
        self._maybe_shut(conn, way)

    def _maybe_shut(self, conn: _Connection, way: _Direction) -> None:
        """Pass a half-close on once everything read before it has been written."""
        if way.src_eof and not way.chunks and not way.dst_shut:
            way.dst_shut = True
            try:
                way.dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        if conn.up and conn.down and conn.up.dst_shut and conn.down.dst_shut:
            self._close(conn, abort=False)

    def _refresh_interest(self) -> None:
        """Register, for every socket, exactly the events the current mode allows."""
        moving = self._mode != "blackhole"
        for conn in self._conns:
            if not conn.connected:
                if conn.upstream is not None:
                    self._set(conn.upstream, selectors.EVENT_WRITE, conn)
                continue
            assert conn.up and conn.down and conn.upstream
            for sock, inbound, outbound in ((conn.client, conn.up, conn.down),
                                            (conn.upstream, conn.down, conn.up)):
                mask = 0
                if moving and not inbound.src_eof and inbound.buffered < _MAX_BUFFERED:
                    mask |= selectors.EVENT_READ
                if moving and outbound.chunks and (self._mode != "delay"
                                                  or outbound.chunks[0][0] <= time.monotonic()):
                    mask |= selectors.EVENT_WRITE
                self._set(sock, mask, conn)

    def _set(self, sock: socket.socket, mask: int, conn: _Connection) -> None:
        registered = self._registered(sock)
        if mask and registered:
            self._sel.modify(sock, mask, (conn, sock))
        elif mask:
            self._sel.register(sock, mask, (conn, sock))
        elif registered:
            self._sel.unregister(sock)

    def _registered(self, sock: socket.socket) -> bool:
        try:
            self._sel.get_key(sock)
            return True
        except KeyError:
            return False

    def _next_timeout(self) -> float | None:
        if self._mode != "delay":
            return None
        releases = [way.chunks[0][0] for conn in self._conns for way in (conn.up, conn.down)
                    if way is not None and way.chunks]
        return max(0.0, min(releases) - time.monotonic()) if releases else None

    def _close(self, conn: _Connection, abort: bool) -> None:
        if conn in self._conns:
            self._conns.remove(conn)
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            if self._registered(sock):
                self._sel.unregister(sock)
            _abort(sock) if abort else sock.close()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._stats[name] += n
