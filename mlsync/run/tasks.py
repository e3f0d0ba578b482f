"""Waiting on ML Commons: one poller thread for every task an apply started, and the wait for a
model to leave REGISTERING.

The register (URL) and deploy calls answer with a task id; the executor's workers block in
`TaskWaiter.wait()` while one poller asks the cluster about all of them in a single `search_tasks`
call per round, backing off from 0.2 s to 2 s (`mlsync.core.polling.TASK_POLL`), with a deadline
per task.

A transient failure of that shared poll (no response, 429, 5xx: the transport has already retried
it) fails no wait: the poller keeps polling (honouring the server's Retry-After) until each task's own
deadline, or until polls have failed without a break for `error_deadline` seconds. Any other failure
(a 403, a 400) fails every pending wait at once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable, Optional

from mlsync.core.errors import ClusterError, TaskFailed, TaskTimeout
from mlsync.core.observed import ClusterPort
from mlsync.core.polling import DEFAULT_RETRY_DEADLINE, MAX_RETRY_AFTER, TASK_POLL, Timeout, poll_until
from mlsync.run.progress import Reporter

if TYPE_CHECKING:  # pragma: no cover
    from mlsync.run.context import Run

TASK_FAILED_STATES = frozenset({"FAILED", "CANCELLED", "COMPLETED_WITH_ERROR"})


class ApplyStopping(Exception):
    """The apply is stopping: waiters are released with it, and nothing new starts."""


class _Waiting:
    __slots__ = ("task_id", "address", "started", "deadline", "event", "doc", "error", "last_state")

    def __init__(self, task_id: str, address: str, started: float, deadline: float) -> None:
        self.task_id, self.address, self.started, self.deadline = task_id, address, started, deadline
        self.event = threading.Event()
        self.doc: Optional[dict] = None
        self.error: Optional[BaseException] = None
        self.last_state = "CREATED"


class TaskWaiter:
    """Waits for ML tasks: every caller blocks in `wait()`, one poller thread asks the cluster about
    all pending tasks in one `search_tasks` call per round, backing off from 0.2 s to 2 s."""

    def __init__(self, cluster: ClusterPort, *, clock: Callable[[], float], sleep: Callable[[float], None],
                 timeout: float, reporter: Reporter, on_poll: Optional[Callable[[], None]] = None,
                 error_deadline: float = DEFAULT_RETRY_DEADLINE) -> None:
        self.cluster, self.clock, self.sleep, self.timeout = cluster, clock, sleep, timeout
        self.reporter, self.on_poll, self.error_deadline = reporter, on_poll, error_deadline
        self._pending: dict[str, _Waiting] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self.fatal: Optional[BaseException] = None   # what killed the poller (a lost lease, a crash), if anything
        self._thread: Optional[threading.Thread] = None
        self.polls = 0

    def start(self) -> "TaskWaiter":
        self._thread = threading.Thread(target=self._loop, name="mlsync-task-waiter", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            for w in self._pending.values():
                w.error = w.error or ApplyStopping("apply stopped")
                w.event.set()
            self._pending.clear()
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait(self, task_id: str, address: str) -> dict:
        """Block until the task is COMPLETED (returns its document); TaskFailed / TaskTimeout otherwise."""
        now = self.clock()
        with self._cond:
            if self._stopped:
                raise self.fatal or ApplyStopping("apply stopped")
            w = self._pending.get(task_id)
            if w is None:
                w = self._pending[task_id] = _Waiting(task_id, address, now, now + self.timeout)
            self._cond.notify_all()
        w.event.wait()
        if w.error is not None:
            raise w.error
        assert w.doc is not None
        return w.doc

    def _finish(self, w: _Waiting, doc: Optional[dict] = None, error: Optional[BaseException] = None) -> None:
        with self._cond:
            self._pending.pop(w.task_id, None)
        w.doc, w.error = doc, error
        w.event.set()

    def _loop(self) -> None:
        delays = TASK_POLL.delays()
        failing_since: Optional[float] = None     # when the polls started failing (transiently), if they are
        try:
            while True:
                with self._cond:
                    while not self._pending and not self._stopped:
                        delays = TASK_POLL.delays()
                        self._cond.wait()
                    if self._stopped:
                        return
                    waiting = list(self._pending.values())
                retry_after: Optional[float] = None
                try:
                    docs = self.cluster.search_tasks([w.task_id for w in waiting])
                    failing_since = None
                except ClusterError as err:
                    failing_since = self.clock() if failing_since is None else failing_since
                    if not err.transient or self.clock() - failing_since >= self.error_deadline:
                        for w in waiting:
                            self._finish(w, error=err)
                        continue
                    docs = {}                     # a round that saw nothing: the deadlines still apply
                    retry_after = err.retry_after
                self.polls += 1
                now = self.clock()
                for w in waiting:
                    doc = docs.get(w.task_id)
                    state = (doc or {}).get("state")
                    if state:
                        w.last_state = state
                    if state == "COMPLETED":
                        self._finish(w, doc=doc)
                    elif state in TASK_FAILED_STATES:
                        self._finish(w, error=TaskFailed(w.address, w.task_id, str(doc.get("error") or state)))
                    elif now >= w.deadline:
                        self._finish(w, error=TaskTimeout(w.address, w.task_id, w.last_state, self.timeout))
                with self._cond:
                    still = list(self._pending.values())
                if still:
                    self.reporter.on_wait([w.task_id for w in still], now - min(w.started for w in still))
                if self.on_poll is not None:
                    self.on_poll()
                if still:
                    delay = next(delays)
                    if retry_after is not None:   # the server asked for a pause: not sooner than that
                        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
                    self.sleep(delay)
        except BaseException as err:  # noqa: BLE001 - hand anything (a crash, a lost lease) to the waiters
            with self._cond:
                self._stopped = True
                self.fatal = err     # later waits raise it too: it must reach the driver, not vanish
                waiting = list(self._pending.values())
            for w in waiting:
                self._finish(w, error=err)


def wait_model_registered(run: "Run", model_id: str, address: str) -> Optional[dict]:
    """Poll the model until it leaves REGISTERING / UPLOADING; None if it disappeared (its
    registration failed and the server removed it)."""
    def between() -> None:
        if run.abort.is_set():
            raise ApplyStopping()
        run.renew_if_due()
    try:
        return poll_until(lambda: run.retry(lambda: run.cluster.get_model(model_id)),
                          lambda doc: doc is None or doc.get("model_state") not in ("REGISTERING", "UPLOADING"),
                          policy=TASK_POLL, deadline=run.clock() + run.timeout, clock=run.clock, sleep=run.sleep,
                          between=between)
    except Timeout as late:
        raise TaskTimeout(address, f"(model {model_id})", (late.last or {}).get("model_state"), run.timeout) from None
