"""The steps every command shares: load the files, reach the cluster and the state, make a plan,
and check that a saved plan still describes the cluster. No printing, no click."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

from mlsync.core.desired import DesiredState
from mlsync.input.flatten import flatten
from mlsync.core.errors import MlsyncError, StalePlan
from mlsync.core.observed import ClusterPort, Observed
from mlsync.core.plan import Plan
from mlsync.core.planner import PlanOptions, plan as make_plan
from mlsync.core.secrets import Secret
from mlsync.core.state import StackState


def load_desired(paths: list[str]) -> DesiredState:
    """Load, merge and validate the files (raises ConfigError with every problem), then flatten."""
    from mlsync.input import load

    loaded = load(list(paths))
    return flatten(loaded.stack, sources=tuple(loaded.sources), locate=_locator(loaded))


def _locator(loaded):
    def locate(path: tuple):
        try:
            pos = loaded.locate(path)
        except (KeyError, LookupError, AttributeError):
            return None
        if pos is None:
            return None
        if isinstance(pos, tuple):
            return pos
        return (getattr(pos, "file"), getattr(pos, "line"), getattr(pos, "column", getattr(pos, "col", 1)))
    return locate


def connect(options) -> ClusterPort:
    from mlsync.edge.cluster import Cluster

    return Cluster.connect(options)


def state_store(cluster: Optional[ClusterPort], state_file: Optional[str]):
    from mlsync.edge.statestore import ClusterStateStore, FileStateStore

    if state_file:
        return FileStateStore(state_file)
    if cluster is None:
        raise MlsyncError("no cluster connection and no --state-file")
    return ClusterStateStore(cluster)


@dataclass
class Planned:
    plan: Plan
    desired: DesiredState
    observed: Observed
    state: StackState


def plan_for(desired: DesiredState, cluster: ClusterPort, store, *, destroy: bool = False) -> Planned:
    state = store.load(desired.stack) or StackState(desired.stack)
    observed = cluster.observe()
    return Planned(make_plan(desired, observed, state, PlanOptions(destroy=destroy)), desired, observed, state)


def credentials(desired: DesiredState) -> dict[str, dict[str, Secret]]:
    """address -> credential mapping, for the executor (connectors and inline connectors)."""
    return {str(r.address): r.credential for r in desired.resources.values() if r.credential}


def save_plan(plan: Plan, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(plan.to_json(), f, indent=1, sort_keys=False)
        f.write("\n")


def read_plan(path: str) -> Plan:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        return Plan.from_json(data)
    except (OSError, ValueError, KeyError) as err:
        raise MlsyncError(f"{path}: not a readable mlsync plan file ({err})") from None


def _signature(plan: Plan) -> list:
    return [(str(c.address), [a.value for a in c.actions], [f.path for f in c.field_changes], c.server_id)
            for c in plan.pending]


def check_fresh(saved: Plan, now: Planned) -> None:
    """Refuse a saved plan when anything it read changed, or when planning again would do otherwise."""
    current = now.observed.fingerprints()
    moved = sorted(i for i, fp in saved.observed_fingerprints.items() if current.get(i) != fp)
    problems = []
    if moved:
        by_id = {c.server_id: str(c.address) for c in saved.changes if c.server_id}
        problems.append("changed since the plan was made: " + ", ".join(by_id.get(i, i) for i in moved))
    if saved.state_serial is not None and saved.state_serial != now.state.serial:
        problems.append(f"the stack's state moved from serial {saved.state_serial} to {now.state.serial} "
                        "(an apply, import or state rm ran since)")
    if _signature(saved) != _signature(now.plan):
        problems.append("planning again now gives a different plan")
    if problems:
        raise StalePlan("the saved plan is stale (" + "; ".join(problems) + "); run `mlsync plan` again")
