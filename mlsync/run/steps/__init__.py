"""The executor's step functions, per resource kind and per action: one row per kind.

A row maps each action the planner may give that kind to the function that carries it out,
`fn(run, change)`. The driver picks the row by `change.kind` (the same names as
`mlsync.core.kinds`) and the function by the change's actions; a kind without a function for an
action fails that change with a clear error instead of doing something else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from mlsync.core.plan import Action, ResourceChange
from mlsync.run.context import Run
from mlsync.run.steps import consumers, model
from mlsync.run.steps.simple import SimpleSteps

Step = Callable[[Run, ResourceChange], None]


@dataclass(frozen=True)
class KindSteps:
    actions: Mapping[Action, Step]     # what carries out each action the planner may give the kind
    delete_call: str                   # the ClusterPort method that deletes one object of the kind
    # the intent its create / register will journal, saved ahead with its phase's wave (or None)
    intent: Optional[Callable[[Run, ResourceChange], Optional[tuple[str, dict]]]] = None


_CONNECTOR = SimpleSteps(create_call="create_connector", update_call="update_connector", operation="create_connector")
_GROUP = SimpleSteps(create_call="create_group", update_call="update_group", operation="create_group")

STEPS: dict[str, KindSteps] = {
    "connector": KindSteps(_CONNECTOR.actions(), "delete_connector", _CONNECTOR.intent),
    "model_group": KindSteps(_GROUP.actions(), "delete_group", _GROUP.intent),
    "model": KindSteps(model.actions(), "delete_model", model.register_intent),
    "ingest_pipeline": KindSteps(consumers.pipeline_actions(), "delete_pipeline"),
    "search_pipeline": KindSteps(consumers.pipeline_actions(), "delete_pipeline"),
    "agent": KindSteps(consumers.agent_actions(), "delete_agent"),
}

# Which of a change's actions names its main step in the create/update phase (one change may carry
# several, e.g. adopt + update, or undeploy + replace + deploy: deploy state has phases of its own).
_MAIN = (Action.REPLACE, Action.REGISTER, Action.CREATE, Action.UPDATE, Action.ADOPT)


def main_action(change: ResourceChange) -> Action | None:
    return next((a for a in _MAIN if a in change.actions), None)


def step_for(change: ResourceChange, action: Action) -> Step:
    fn = STEPS[change.kind].actions.get(action)
    if fn is None:
        def unsupported(run: Run, change: ResourceChange) -> None:
            raise run.give_up(change, action.value, f"{action.value} is not supported for a {change.kind}")
        return unsupported
    return fn
