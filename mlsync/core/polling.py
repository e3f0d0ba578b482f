"""One polling policy for every wait and retry in mlsync: a back-off (first delay, growth factor, cap)
and one loop that polls until a condition holds or a deadline passes.

Pure: the loop is given its clock and its sleep, so the executor's tests run it on a fake clock and
the adapter on the real one. Users: the task waiter (one search for every pending task), waiting for
a model to leave REGISTERING, a remote deploy settling, a group delete waiting for chunk documents
to vanish, and the re-send of an idempotent call after an ambiguous failure. Below them, the policy
for transient faults (429/502/503/504, connection errors): `RetryPolicy` (exponential back-off, full
jitter from an injected random source, Retry-After honoured and capped, one overall deadline) and its
loop `retry_call`, used by the transport for every request.
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


# --------------------------------------------------------------------------- retrying transient faults
#
# Reads, task polls and state writes are re-sent when the cluster (or a proxy in front of it) says
# "not now": 429 (es_rejected_execution_exception: a full thread-pool queue; circuit_breaking_exception;
# a gateway's throttling), 502/503/504, or the connection failed. Exponential back-off with FULL
# jitter (each delay uniform in [0, ceiling), so that many clients refused at once do not come back
# at once), a `Retry-After` the server sent is honoured (capped), and one overall deadline bounds
# every logical call however many attempts it takes.

RETRY = Backoff(0.25, 2.0, 8.0)         # ceilings 0.25, 0.5, 1, 2, 4, 8, 8 ... s (full jitter below them)
RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_RETRY_DEADLINE = 60.0            # seconds one logical call may spend retrying
MAX_RETRY_AFTER = 30.0                   # a longer Retry-After is cut to this


def retryable_status(status: Optional[int]) -> bool:
    """An HTTP status worth asking again for: 429 or a gateway's 502/503/504 (not 500: a server bug or
    a real refusal that asking again will not change)."""
    return status in RETRY_STATUSES


def full_jitter(ceiling: float, random: Callable[[], float]) -> float:
    """A delay uniform in [0, ceiling): `random()` returns a float in [0, 1) (random.random, or a seeded one)."""
    return max(0.0, ceiling) * random()


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """A `Retry-After` header in seconds ("3", "1.5"); None when absent, negative or an HTTP date
    (a date would need the server's clock; the back-off applies instead)."""
    if value is None:
        return None
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0 or seconds == float("inf"):   # NaN, negative, infinite
        return None
    return seconds


@dataclass(frozen=True)
class RetryPolicy:
    """How transient failures of one logical call are retried: the back-off whose delays are the
    jitter's ceilings, the overall deadline (seconds from the first attempt; 0: never retry), and the
    cap on a server's Retry-After."""

    backoff: Backoff = RETRY
    deadline: float = DEFAULT_RETRY_DEADLINE
    max_retry_after: float = MAX_RETRY_AFTER

    def delay(self, attempt: int, random: Callable[[], float], retry_after: Optional[float] = None) -> float:
        """The pause before re-send number `attempt` (1-based): full jitter under the back-off's
        ceiling, but never less than the server's Retry-After (capped at `max_retry_after`)."""
        delay = full_jitter(self.backoff.delay(attempt), random)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay


class RetriesExhausted(Exception):
    """retry_call gave up: the deadline (or the attempt limit) came before a success. `last` is the
    last failure, `attempts` how many calls were made, `elapsed` the seconds since the first."""

    def __init__(self, last: BaseException, attempts: int, elapsed: float) -> None:
        super().__init__(f"gave up after {attempts} attempts in {elapsed:.1f}s: {last}")
        self.last, self.attempts, self.elapsed = last, attempts, elapsed


def retry_call(fn: Callable[[], T], *, transient: Callable[[Exception], tuple[bool, Optional[float]]],
               policy: RetryPolicy, clock: Callable[[], float], sleep: Callable[[float], None],
               random: Callable[[], float], max_attempts: Optional[int] = None,
               on_retry: Optional[Callable[[Exception, int, float], None]] = None) -> T:
    """fn(), re-called while it raises an exception that `transient(exc)` calls retryable.

    `transient(exc)` returns (retry?, retry_after seconds or None). A failure that is not retryable is
    re-raised as it is. A retryable one is re-tried after `policy.delay(...)` unless that pause would
    end at or after the deadline (or `max_attempts` calls were made): then `RetriesExhausted` is raised
    with the last failure. `on_retry(exc, attempt, delay)` runs before each pause (logging)."""
    start = clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - classified just below; anything else propagates
            retry, retry_after = transient(exc)
            if not retry:
                raise
            delay = policy.delay(attempt, random, retry_after)
            elapsed = clock() - start
            if elapsed + delay >= policy.deadline or (max_attempts is not None and attempt >= max_attempts):
                raise RetriesExhausted(exc, attempt, elapsed) from exc
            if on_retry is not None:
                on_retry(exc, attempt, delay)
        sleep(delay)
