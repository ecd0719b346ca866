"""Batch parsing in worker processes, off the server's GIL.

Ingestion's end-to-end rate is bound by the one GIL the event loop and the
writer thread share: decoding, validating and normalising a batch is about 20 µs
of it per event, as much as the writer's identity and profile work. A
:class:`ParsePool` runs :func:`momently.events.decode_batch` and
:func:`~momently.events.normalise_batch` in other processes (the same code, so the
same events and the same per-message errors) and hands back the events as JSON,
which the server decodes in a third of the time parsing took; it keeps each
event's JSON as its log payload, and the worker adds each event's identity keys,
so the writer thread neither encodes the events nor works out their identifiers
(:class:`~momently.engine.PreparedEvents`).

Only the bytes of a body whose write key is already known go out (the key is
in the header); anything the pool cannot do — it is broken, or closed — the caller
does in process, so a worker's death costs speed, never a request. A worker
exits by itself when the server process is gone (a ``kill -9`` leaves no
orphans waiting on their queue).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import multiprocessing
import os
import socket
import struct
import threading
import time
from collections import deque
from multiprocessing.context import SpawnContext
from typing import Final

import msgspec

from momently.engine import PreparedEvents, planned_keys
from momently.errors import InvalidInput, InvalidMessage, PayloadTooLarge
from momently.events import decode_batch, decode_event, encode_event, normalise_batch
from momently.types import IdentityKey

log = logging.getLogger(__name__)

# The error classes normalise_batch and decode_batch raise, by name.
_ERRORS: Final[dict[str, type[InvalidInput]]] = {
    "InvalidMessage": InvalidMessage,
    "PayloadTooLarge": PayloadTooLarge,
    "InvalidInput": InvalidInput,
}


class _Error(msgspec.Struct, array_like=True):
    index: int
    kind: str
    reason: str
    field: str | None


class _Parsed(msgspec.Struct, array_like=True):
    # Each event as encode_event writes it: the server decodes the event from it and
    # keeps it as the event's log payload. (JSON has no value that would not decode
    # to the same event again.)
    payloads: list[bytes]
    keys: list[list[IdentityKey] | None]  # planned_keys of each event
    rejected: list[_Error]
    failed: _Error | None = None  # the whole body was refused (decode_batch raised)


# MessagePack around the events' JSON: the server takes each payload as it is.
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(_Parsed)


def _error(index: int, error: InvalidInput) -> _Error:
    kind = type(error).__name__
    return _Error(index, kind if kind in _ERRORS else "InvalidInput", error.reason, error.field)


def parse_batch(data: bytes, received_ms: int, source: str, ip: str | None) -> bytes:
    """In a worker: the batch body parsed as the server would, for the way back."""
    try:
        envelope = decode_batch(data)
    except InvalidInput as error:
        return _encoder.encode(_Parsed([], [], [], _error(-1, error)))
    events, rejected = normalise_batch(envelope, received_ms=received_ms, source=source, ip=ip)
    return _encoder.encode(
        _Parsed(
            [encode_event(e) for e in events],
            [planned_keys(e) for e in events],
            [_error(i, e) for i, e in rejected],
        )
    )


def _rebuild(error: _Error) -> InvalidInput:
    return _ERRORS.get(error.kind, InvalidInput)(error.reason, error.field)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.25)
    os._exit(0)  # the server is gone: nobody will ask for anything again


# Requests a worker may owe answers to before the server parses batches itself: the
# load is shared when the workers fall behind, and a send never waits on a full pipe.
_MAX_OWED: Final = 4


class _Request(msgspec.Struct, array_like=True):
    data: bytes
    received_ms: int
    source: str
    ip: str | None


_LENGTH: Final = struct.Struct("!I")  # each message on a worker's socket: its length, then it


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray(size)
    view = memoryview(data)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the server closed the socket")
        got += n
    return bytes(data)


def _work(sock: socket.socket, parent: int) -> None:
    """A worker process: answer requests in the order they come, until the socket closes."""
    # As the server (momently.cli): parsing makes no reference cycles, only garbage.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    decode = msgspec.msgpack.Decoder(_Request).decode
    while True:
        try:
            (size,) = _LENGTH.unpack(_read_exactly(sock, _LENGTH.size))
            request = decode(_read_exactly(sock, size))
        except (EOFError, OSError):
            return
        try:
            answer = parse_batch(request.data, request.received_ms, request.source, request.ip)
        except Exception:  # as in the server, an unexpected error is its answer's, not ours
            log.exception("parsing a batch failed")
            answer = b""
        sock.sendall(_LENGTH.pack(len(answer)) + answer)


class _Worker:
    """One worker process, the server's end of its socket, and the answers it owes, in order."""

    def __init__(self, context: SpawnContext) -> None:
        ours, theirs = socket.socketpair()
        self.process = context.Process(
            target=_work, args=(theirs, os.getpid()), name="momently-parse", daemon=True
        )
        self.process.start()
        theirs.close()
        self.sock = ours
        self.owed: deque[asyncio.Future[bytes]] = deque()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._reading: asyncio.Task[None] | None = None
        self._sending = asyncio.Lock()

    async def ask(self, request: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        if self.loop is None:
            self.loop = loop
            self.sock.setblocking(False)
            self._reading = loop.create_task(self._read(loop))
        elif self.loop is not loop:
            raise ConnectionError("a parse pool serves the one event loop that first used it")
        if self._reading is not None and self._reading.done():
            raise ConnectionError("the parse worker is gone")
        future: asyncio.Future[bytes] = loop.create_future()
        self.owed.append(future)
        # Shielded: a request cancelled half-way through its message must not leave
        # the socket with half a message on it.
        await asyncio.shield(self._send(loop, _LENGTH.pack(len(request)) + request))
        return await future

    async def _send(self, loop: asyncio.AbstractEventLoop, message: bytes) -> None:
        async with self._sending:  # one message at a time on the socket
            await loop.sock_sendall(self.sock, message)

    async def _read_exactly(self, loop: asyncio.AbstractEventLoop, size: int) -> bytes:
        data = bytearray(size)
        view = memoryview(data)
        got = 0
        while got < size:
            n = await loop.sock_recv_into(self.sock, view[got:])
            if n == 0:
                raise EOFError("the parse worker closed its socket")
            got += n
        return bytes(data)

    async def _read(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            while True:
                (size,) = _LENGTH.unpack(await self._read_exactly(loop, _LENGTH.size))
                answer = await self._read_exactly(loop, size)
                future = self.owed.popleft()
                if not future.done():
                    future.set_result(answer)
        except (OSError, EOFError) as error:
            self.fail(ConnectionError(f"the parse worker is gone: {error!r}"))

    def fail(self, error: BaseException) -> None:
        while self.owed:
            future = self.owed.popleft()
            if not future.done():
                future.set_exception(error)

    def close(self) -> None:
        self.fail(ConnectionError("the parse pool is closed"))
        if self._reading is not None and not self._reading.done() and self.loop is not None:
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(self._reading.cancel)
        self.sock.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class ParsePool:
    """Worker processes that parse batch bodies; :meth:`parse` falls back to ``None``.

    Requests go to the worker that owes the fewest answers, over a pipe the event
    loop watches: no thread of this process takes part.
    """

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a parse pool needs at least one worker")
        context = multiprocessing.get_context("spawn")
        self._workers = [_Worker(context) for _ in range(workers)]
        self._encode = msgspec.msgpack.Encoder().encode
        self.broken = False

    async def parse(
        self, data: bytes, received_ms: int, source: str, ip: str | None
    ) -> tuple[PreparedEvents, list[tuple[int, InvalidInput]]] | None:
        """``normalise_batch(decode_batch(data), ...)`` done by a worker; raises what
        ``decode_batch`` would; ``None`` when the pool cannot do it (parse in process)."""
        if self.broken or not self._workers:
            return None
        worker = min(self._workers, key=lambda w: len(w.owed))
        if len(worker.owed) >= _MAX_OWED:
            return None  # every worker has its hands full: this process parses this one
        try:
            answer = await worker.ask(self._encode(_Request(data, received_ms, source, ip)))
        except OSError:  # ConnectionError too: the worker is gone
            log.exception("a parse worker failed; parsing in process from now on")
            self.broken = True
            return None
        if not answer:
            return None  # the worker hit an unexpected error: let the server meet it too
        parsed = _decoder.decode(answer)
        if parsed.failed is not None:
            raise _rebuild(parsed.failed)
        payloads = parsed.payloads
        events = PreparedEvents([decode_event(p) for p in payloads], payloads, parsed.keys)
        return events, [(e.index, _rebuild(e)) for e in parsed.rejected]

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()
