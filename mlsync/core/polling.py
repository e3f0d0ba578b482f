"""One polling policy for every wait and retry in mlsync: a back-off (first delay, growth factor, cap)
and one loop that polls until a condition holds or a deadline passes.

Pure: the loop is given its clock and its sleep, so the executor's tests run it on a fake clock and
the adapter on the real one. Users: the task waiter (one search for every pending task), waiting for
a model to leave REGISTERING, a remote deploy settling, a group delete waiting for chunk documents
to vanish, and the re-send of an idempotent call after an ambiguous failure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    initial: float          # the first delay, seconds
    factor: float           # each next delay is the previous one times this ...
    maximum: float          # ... up to this

    def delays(self) -> Iterator[float]:
        """initial, initial*factor, ... capped at maximum; endless."""
        delay = self.initial
        while True:
            yield delay
            delay = min(delay * self.factor, self.maximum)

    def delay(self, attempt: int) -> float:
        """The delay before re-send number `attempt` (1-based)."""
        return min(self.initial * (self.factor ** (attempt - 1)), self.maximum)


TASK_POLL = Backoff(0.2, 1.5, 2.0)        # ML tasks and model states: 0.2 s growing to 2 s
RESEND = Backoff(0.4, 2.0, 2.0)           # an idempotent call after an ambiguous failure: 0.4, 0.8, 1.6, 2 s
SETTLE = Backoff(0.02, 2.0, 0.5)          # a remote deploy's model document catching up with its answer
GROUP_DELETE = Backoff(0.2, 1.5, 1.0)     # a group delete waiting for chunk documents to vanish


class Timeout(Exception):
    """poll_until's deadline passed; `last` is the last value fetched."""

    def __init__(self, last: object) -> None:
        super().__init__("deadline passed")
        self.last = last


def poll_until(fetch: Callable[[], T], done: Callable[[T], bool], *, policy: Backoff, deadline: float,
               clock: Callable[[], float], sleep: Callable[[float], None],
               between: Optional[Callable[[], None]] = None) -> T:
    """fetch() until done(value); then return the value. Raises Timeout when a fetch that is not done
    comes at or after `deadline` (a clock() instant). `between` runs before each sleep (renew a lease, check for
    an abort: it may raise to stop the wait)."""
    for delay in policy.delays():
        value = fetch()
        if done(value):
            return value
        if clock() >= deadline:
            raise Timeout(value)
        if between is not None:
            between()
        sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover - delays() is endless
