"""Batches with known ids, a writer that records what was acknowledged, and their tally.

Batch `k` holds messages `b{k}-m0`, `b{k}-m1`, ...; after a fault the test reads the session
back and `tally` sorts every batch into stored once, lost (acknowledged, yet missing),
duplicated (an id stored twice) or partial (some of its messages stored, not all).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

from memweave.errors import BackendUnavailable
from memweave.messages import ChatMessage
from memweave.providers import ChatHistoryProvider

__all__ = ["BatchWriter", "Killer", "Tally", "batch", "tally"]

_ID = re.compile(r"b(\d+)-m(\d+)")


def batch(k: int, size: int, *, filler: int = 0) -> list[ChatMessage]:
    """Batch `k`: `size` messages with ids `b{k}-m{i}`, each `filler` characters longer."""
    pad = "x" * filler
    build = (ChatMessage.user, ChatMessage.assistant)
    return [build[i % 2](f"{k}/{i} {pad}", id=f"b{k}-m{i}") for i in range(size)]


@dataclass(frozen=True)
class Tally:
    """How the batches written fared, as read back after the faults."""

    batches: int
    """Batches written (acknowledged or not)."""
    acknowledged: int
    """Batches whose `add_messages` returned."""
    stored: int
    """Batches stored whole, exactly once."""
    lost: int
    """Acknowledged batches with no message stored."""
    duplicated: int
    """Batches with an id stored more than once."""
    partial: int
    """Batches with some but not all of their messages stored."""
    out_of_order: int
    """Stored messages (first copies) that come before one written earlier."""
    foreign: int
    """Stored messages that no written batch holds."""

    @property
    def sound(self) -> bool:
        """Nothing lost, duplicated, partial, reordered or foreign."""
        return not (
            self.lost or self.duplicated or self.partial or self.out_of_order or self.foreign
        )

    def line(self, scenario: str, **extra: object) -> str:
        """One line for the test's output: the scenario, the counts and `extra`."""
        more = " ".join(f"{key}={value}" for key, value in extra.items())
        return (
            f"[faults] {scenario}: batches={self.batches} acknowledged={self.acknowledged} "
            f"stored={self.stored} lost={self.lost} duplicated={self.duplicated} "
            f"partial={self.partial} out_of_order={self.out_of_order} foreign={self.foreign} "
            f"{more}"
        ).rstrip()


def tally(
    stored_ids: Sequence[str], *, batches: int, size: int, acknowledged: Collection[int]
) -> Tally:
    """Classify batches `0 .. batches-1` of `size` messages by the ids read back."""
    counts = Counter(stored_ids)
    present: Counter[int] = Counter()
    duplicated: set[int] = set()
    foreign = 0
    order: list[tuple[int, int]] = []
    for message_id, copies in counts.items():
        match = _ID.fullmatch(message_id)
        if match is None or int(match[1]) >= batches or int(match[2]) >= size:
            foreign += copies
            continue
        k = int(match[1])
        present[k] += 1
        order.append((k, int(match[2])))
        if copies > 1:
            duplicated.add(k)
    acked = set(acknowledged)
    return Tally(
        batches=batches,
        acknowledged=len(acked),
        stored=sum(1 for k in range(batches) if present[k] == size and k not in duplicated),
        lost=sum(1 for k in acked if present[k] == 0),
        duplicated=len(duplicated),
        partial=sum(1 for k in range(batches) if 0 < present[k] < size),
        out_of_order=sum(1 for a, b in itertools.pairwise(order) if b < a),
        foreign=foreign,
    )


@dataclass
class BatchWriter:
    """Writes batches `0, 1, ...` to one session in order, recording which were acknowledged.

    With `retry=True` a batch that failed with a `BackendUnavailable` is sent again (same
    ids) after `pause` seconds until it is acknowledged; otherwise the writer moves on. Any
    other exception propagates and fails the test: only typed errors may reach a caller.
    """

    history: ChatHistoryProvider
    session_id: str
    size: int
    filler: int = 0
    retry: bool = False
    pause: float = 0.05
    acknowledged: list[int] = field(default_factory=list)
    errors: list[BackendUnavailable] = field(default_factory=list)
    written: int = 0

    async def write(self, count: int, *, deadline: float) -> None:
        """Write batches `written .. count-1`; raise `AssertionError` past `deadline`."""
        for k in range(self.written, count):
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"batch {k} was not acknowledged before the deadline; "
                        f"{len(self.errors)} errors, last: {self.errors[-1:]!r}"
                    )
                try:
                    await self.history.add_messages(
                        self.session_id, batch(k, self.size, filler=self.filler)
                    )
                except BackendUnavailable as error:
                    self.errors.append(error)
                    if not self.retry:
                        break
                    await asyncio.sleep(self.pause)
                else:
                    self.acknowledged.append(k)
                    break
            self.written = k + 1

    def error_kinds(self) -> dict[str, int]:
        """How many errors of each class the writer saw."""
        return dict(Counter(type(error).__name__ for error in self.errors))


class Killer(threading.Thread):
    """Kills the provider's connections server-side from a thread, at random moments.

    Kills are spread over the writer's run by its progress, not by the clock: each comes once
    the writer has acknowledged a random number of batches (`every`) since the last one, after
    a random `delay` that lands it anywhere in a call or between two. So one call meets at
    most one kill (a kill is over when `kill` returns): the default retries must then hide
    every kill, and an error reaching the caller is a bug, not bad luck. The count of kills
    (about batches / mean of `every`) is the same on a fast machine and a slow one.

    Args:
        kill: Ends the connections (e.g. `CLIENT KILL`); returns how many it ended.
        acknowledged: The writer's list of acknowledged batches (read, never changed).
        every: Bounds of the random number of batches acknowledged between two kills (>= 2).
        delay: Bounds of the random wait, in seconds, before each kill.
    """

    def __init__(
        self,
        kill: Callable[[], int],
        acknowledged: list[int],
        *,
        every: tuple[int, int] = (5, 35),
        delay: tuple[float, float] = (0.0, 0.005),
        seed: int = 0,
    ) -> None:
        super().__init__(daemon=True, name="fault-killer")
        self._kill = kill
        self._acknowledged = acknowledged
        self._every = every
        self._delay = delay
        self._random = random.Random(seed)
        self._done = threading.Event()
        self.kills = 0
        """Connections ended."""
        self.attempts = 0
        """Kill commands sent."""
        self.failure: BaseException | None = None

    def run(self) -> None:
        """Kill until `stop()`; remember a failure of the kill command itself."""
        try:
            seen = len(self._acknowledged)
            while not self._done.is_set():
                due = seen + self._random.randint(*self._every)
                while len(self._acknowledged) < due:
                    if self._done.wait(0.001):
                        return
                if self._done.wait(self._random.uniform(*self._delay)):
                    return
                self.attempts += 1
                self.kills += self._kill()  # returns once the connections are gone
                seen = len(self._acknowledged)
        except BaseException as exc:  # reported by stop(), in the test's thread
            self.failure = exc

    def stop(self) -> None:
        """Stop killing, wait for the thread, and re-raise a failure of the kill command."""
        self._done.set()
        self.join(timeout=30)
        if self.failure is not None:
            raise RuntimeError(f"the killer failed: {self.failure!r}") from self.failure
