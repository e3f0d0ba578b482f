"""What an apply did, per address: the executor's result, read by the progress summary and the CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mlsync.core.errors import MlsyncError, TaskFailed, TaskTimeout


@dataclass
class ResourceResult:
    address: str
    actions: tuple[str, ...]
    status: str = "pending"              # done | failed | skipped | pending (not reached: apply aborted)
    id: Optional[str] = None             # the server id (new or existing; the deleted one for deletes)
    server_version: Optional[str] = None
    replaced_id: Optional[str] = None    # a replace: the old version's id (deleted at the end)
    elapsed: float = 0.0                 # seconds spent in this resource's steps (waits included)
    error: Optional[str] = None
    steps: list[str] = field(default_factory=list)   # the steps that completed, in order

    def to_json(self) -> dict:
        return {"address": self.address, "actions": list(self.actions), "status": self.status, "id": self.id,
                "server_version": self.server_version, "replaced_id": self.replaced_id,
                "elapsed": round(self.elapsed, 3), "error": self.error, "steps": list(self.steps)}


@dataclass
class ApplyResult:
    stack: str
    resources: dict[str, ResourceResult] = field(default_factory=dict)   # by address, in plan order
    elapsed: float = 0.0
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # e.g. what was resumed from an interrupted apply

    @property
    def ok(self) -> bool:
        return all(r.status == "done" for r in self.resources.values())

    @property
    def errors(self) -> list[str]:
        return [f"{r.address}: {r.error}" for r in self.resources.values() if r.status in ("failed", "skipped")]

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "failed": 0, "skipped": 0, "pending": 0}
        for r in self.resources.values():
            out[r.status] = out.get(r.status, 0) + 1
        return out

    def to_json(self) -> dict:
        return {"stack": self.stack, "ok": self.ok, "elapsed": round(self.elapsed, 3), "counts": self.counts(),
                "resources": [r.to_json() for r in self.resources.values()], "errors": self.errors,
                "warnings": list(self.warnings), "notes": list(self.notes)}


class ApplyAborted(MlsyncError):
    """The apply had to stop (its lease was taken over / the state changed under it). `result` holds
    what was done up to then."""

    def __init__(self, message: str, result: ApplyResult):
        super().__init__(message)
        self.result = result


def describe_error(err: BaseException) -> str:
    if isinstance(err, TaskFailed):
        return f"task {err.task_id} FAILED: {err.error}"
    if isinstance(err, TaskTimeout):
        return f"task {err.task_id} still {err.state} after {err.seconds:.0f}s (re-run apply to resume)"
    if isinstance(err, MlsyncError):
        return str(err)
    return f"{type(err).__name__}: {err}"
