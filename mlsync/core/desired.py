"""The desired state: one resource per address, in comparable form (what the planner compares).

Built from the files by `mlsync.input.flatten`; plain data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mlsync.core.address import Address
from mlsync.core.secrets import Secret


@dataclass(frozen=True)
class DesiredResource:
    address: Address
    form: dict                                   # comparable form (access fields included; see planner)
    credential: Optional[dict[str, Secret]] = None   # connector credential, or a remote model's inline one
    deploy: Optional[bool] = None                # model versions: desired deploy state
    prevent_destroy: bool = False
    artifact: Optional[dict] = None              # {"url", "sha256"} or {"path", "sha256", "size"}
    depends_on: tuple[str, ...] = ()
    implicit: bool = False                       # an implicit group made for a model without model_group
    location: Optional[tuple[str, int, int]] = None  # where it was declared, for plan errors


@dataclass(frozen=True)
class DesiredState:
    stack: str
    resources: dict[Address, DesiredResource] = field(default_factory=dict)
    sources: tuple[str, ...] = ()

    def of_kind(self, kind: str) -> list[DesiredResource]:
        return of_kind(self.resources, kind)


def of_kind(resources: dict[Address, DesiredResource], kind: str) -> list[DesiredResource]:
    return [r for r in resources.values() if r.address.kind == kind]
