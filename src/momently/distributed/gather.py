"""Ask every worker at once and gather their answers: scatter-gather over core NATS.

A request/reply (``client.request``) takes the first answer; a question whose answer is
spread over the workers (each one's partitions' models, each one's sender counters)
needs them all. :func:`gather` publishes one request with a reply inbox of its own and
collects the answers until the partitions they cover are every partition, or until
its deadline: the partitions then not covered are reported as missing (their owner is
dead, or taking over, or slow), not an error. Each answer is a JSON object with the
``owner`` that sent it and the ``partitions`` it covers; a partition two answers cover
(an owner and its successor, mid-takeover) counts from the first, and the second is
kept with the partitions it adds (perhaps none): what each worker has of its own (its
sender's counters) is then counted once per worker that answered in time.

:func:`answer` is the workers' side: it subscribes to the subject on the worker's
connection and replies with what ``build`` gives for the partitions it owns.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from starlette.datastructures import MutableHeaders

log = logging.getLogger(__name__)
ANSWERED: Final = "X-Momently-Partitions-Answered"
MISSING: Final = "X-Momently-Partitions-Missing"
COVERAGE_HEADERS: Final[dict[str, Any]] = {  # for the OpenAPI document
    ANSWERED: {
        "description": "partitions whose owner answered, of all: 7/9",
        "schema": {"type": "string"},
    },
    MISSING: {
        "description": "partitions whose owner did not answer in time (absent if none)",
        "schema": {"type": "string"},
    },
}


def say_coverage(
    headers: MutableHeaders, covered: int, partitions: int, missing: Sequence[int]
) -> None:
    """The :data:`ANSWERED` and :data:`MISSING` headers of a gathered answer."""
    headers[ANSWERED] = f"{covered}/{partitions}"
    if missing:
        headers[MISSING] = ",".join(map(str, missing))


@dataclass
class Gathered:
    """The answers that came in time, and the partitions none of them covered."""

    answers: list[dict[str, Any]] = field(default_factory=list)
    # partition -> the answer (an index into ``answers``) that covers it
    covered: dict[int, int] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)


async def gather(
    client: Client, subject: str, partitions: int, timeout_s: float, request: bytes = b"{}"
) -> Gathered:
    """Publish ``request`` on ``subject`` and collect the answers (module docstring)."""
    inbox = client.new_inbox()
    found = Gathered()
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def received(msg: Msg) -> None:
        await queue.put(msg)

    sub = await client.subscribe(inbox, cb=received)
    try:
        await client.publish(subject, request, reply=inbox)
        await client.flush(timeout=max(1, int(timeout_s)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(found.covered) < partitions:
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                msg = await asyncio.wait_for(queue.get(), left)
            except TimeoutError:
                break
            _take(found, msg, partitions)
    finally:
        await sub.unsubscribe()
    found.missing = [p for p in range(partitions) if p not in found.covered]
    return found


def _take(found: Gathered, msg: Msg, partitions: int) -> None:
    try:
        body = json.loads(msg.data)
        covers = [int(p) for p in body["partitions"]]
    except (ValueError, KeyError, TypeError) as error:
        log.warning("dropped an answer that is not one: %s", error)
        return
    # A takeover's second owner: only the partitions not covered yet are its.
    fresh = [p for p in covers if 0 <= p < partitions and p not in found.covered]
    body["partitions"] = fresh
    index = len(found.answers)
    found.answers.append(body)
    for p in fresh:
        found.covered[p] = index


async def answer(
    client: Client, subject: str, build: Callable[[], Awaitable[dict[str, Any] | None]]
) -> Subscription:
    """Reply to every request on ``subject`` with ``build()`` (None: stay silent)."""

    async def received(msg: Msg) -> None:
        if not msg.reply:
            return
        try:
            body = await build()
        except Exception:  # the asker reports this worker's partitions missing
            log.exception("could not answer %s", subject)
            return
        if body is not None:
            await msg.respond(json.dumps(body).encode())

    return await client.subscribe(subject, cb=received)
