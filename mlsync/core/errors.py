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
                 error_type: Optional[str] = None):
        self.operation, self.resource, self.status, self.reason, self.error_type = (
            operation, resource, status, reason, error_type)
        code = f"HTTP {status}" if status is not None else "no response"
        super().__init__(f"{operation} {resource}: {code}: {reason}")

    @property
    def ambiguous(self) -> bool:
        """Timeouts, resets and 5xx: the request may or may not have taken effect; re-observe before re-sending."""
        return self.status is None or self.status >= 500


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
    """A saved plan whose objects changed since it was made."""
