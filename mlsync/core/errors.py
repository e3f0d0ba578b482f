"""The errors mlsync reports. The CLI prints them as one line per problem; `--debug` adds tracebacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


class MlsyncError(Exception):
    """Base of every error a user can cause or meet; anything else is a bug."""


@dataclass(frozen=True)
class Problem:
    """One problem in the desired-state input, located where it was written."""

    file: str
    line: int                 # 1-based
    column: int               # 1-based
    path: str                 # e.g. models[0].model_config.embedding_dimension
    message: str              # what is wrong (and what is allowed)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(MlsyncError):
    """All problems found in the input, collected before failing."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line, p.column, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class PlanError(MlsyncError):
    """The plan cannot be made: prevent_destroy, ambiguous identity, implicit-group collisions ..."""

    def __init__(self, messages: list[str]):
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


class ClusterError(MlsyncError):
    """A request to the cluster failed. Names the operation, the resource and the server's reason."""

    def __init__(self, operation: str, resource: str, status: Optional[int], reason: str,
                 error_type: Optional[str] = None, *, retry_after: Optional[float] = None, attempts: int = 1):
        self.operation, self.resource, self.status, self.reason, self.error_type = (
            operation, resource, status, reason, error_type)
        self.retry_after = retry_after      # seconds the server asked to wait (its Retry-After header), if any
        self.attempts = attempts            # requests made for this call (> 1: the transport retried it)
        code = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{operation} {resource}: {code}: {reason}")

    @property
    def ambiguous(self) -> bool:
        """Timeouts, resets and 5xx: the request may or may not have taken effect; re-observe before re-sending."""
        return self.status is None or self.status >= 500

    @property
    def transient(self) -> bool:
        """Worth asking again later: no response, 5xx, or 429 (the cluster refused the request for now:
        a full thread-pool queue, a circuit breaker, a proxy's throttling)."""
        return self.ambiguous or self.status == 429


class TaskFailed(MlsyncError):
    def __init__(self, address: str, task_id: str, error: str):
        self.address, self.task_id, self.error = address, task_id, error
        super().__init__(f"{address}: task {task_id} FAILED: {error}")


class TaskTimeout(MlsyncError):
    def __init__(self, address: str, task_id: str, state: str, seconds: float):
        self.address, self.task_id, self.state, self.seconds = address, task_id, state, seconds
        super().__init__(f"{address}: task {task_id} still {state} after {seconds:.0f}s (re-run apply to resume)")


class StateConflict(MlsyncError):
    """Someone else wrote the stack's state since we read it (optimistic concurrency)."""


class LockHeld(MlsyncError):
    def __init__(self, stack: str, holder: str, host: str, since: str, expires: str):
        super().__init__(f"stack {stack!r} is locked by {holder} on {host} since {since} (lease expires {expires}); "
                         f"if that apply is dead, run `mlsync unlock`")


class StalePlan(MlsyncError):
    """A saved plan that is no longer exactly what applying it would do: its objects or the stack's
    state moved since it was made, planning again gives other values, or it carries no digest."""


class LeaseLost(MlsyncError):
    """The stack's lease this command held was taken by someone else (it expired, or `unlock --force`):
    nothing planned under it may be carried out."""


class MalformedResponse(ClusterError):
    """The cluster answered, but without a field mlsync needs (or with the wrong type): a proxy, an
    incompatible version, a truncated body. Names the operation, the resource and the field.

    Ambiguous: the request may well have taken effect (a create whose answer lacks the new id), so
    the executor looks for what it did before sending anything again, as after a lost response."""

    def __init__(self, operation: str, resource: str, field: str, problem: str = "is missing"):
        super().__init__(operation, resource, None, f"malformed response: field {field!r} {problem}",
                         "malformed_response")
        self.field, self.problem = field, problem
        where = f"{operation} {resource}".strip()
        self.args = (f"{where}: the cluster's response is malformed: field {field!r} {problem}",)

    @property
    def ambiguous(self) -> bool:
        return True


class MalformedDocument(MlsyncError):
    """A stored document mlsync reads (the stack's state) lacks a required field or has one of the
    wrong type. Names the document and the field."""

    def __init__(self, document: str, field: str, problem: str):
        self.document, self.field, self.problem = document, field, problem
        super().__init__(f"{document}: field {field!r} {problem} (the document is damaged, or was not "
                         f"written by mlsync)")
