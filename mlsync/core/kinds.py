"""The registry of resource kinds: per kind, once, what every layer needs to know about it.

The planner walks kinds in `APPLY_ORDER` (and deletes in `DELETE_ORDER`), drift, export and import
find a kind's observed objects through `Kind.observed`, the field rules come from
`mlsync.core.field_rules` under the kind's name, and the executor's step functions per action are
registered under the same name in `mlsync.run.steps`. Adding a kind: docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from mlsync.core import field_rules

if TYPE_CHECKING:  # pragma: no cover
    from mlsync.core.observed import Observed, ObservedObject


@dataclass(frozen=True)
class Kind:
    name: str                          # the address kind: connector["x"], model_group["g"], model["g"]["m"]...
    order: int                         # created in ascending order, deleted in descending order
    pool: str                          # the `Observed` field that holds its objects by id
    file_key: str                      # its list in the desired-state file
    natural_key: Callable[[dict], Any]  # what an unmanaged object is matched by (from its stored _source)
    title: str                         # its section heading in a rendered plan
    deployable: bool = False           # has a deploy state (deploy / undeploy actions)
    one_at_a_time_per_group: bool = False   # the server numbers them per group: never two at once in one group
    consumer: bool = False             # names other objects by id (`${model:...}` references): applied after
                                       # the deploy phase, searched for ids before anything is deleted

    def observed(self, observed: "Observed") -> "dict[str, ObservedObject]":
        """The cluster's objects of this kind, by id."""
        return getattr(observed, self.pool)

    def fields(self, rule: field_rules.Rule) -> tuple[str, ...]:
        return field_rules.fields(self.name, rule)


KINDS: tuple[Kind, ...] = (
    Kind("connector", 0, "connectors", "connectors", lambda s: s.get("name"), "Connectors"),
    Kind("model_group", 1, "groups", "model_groups", lambda s: s.get("name"), "Model groups"),
    # a model version is narrowed further by its content hash (planner)
    Kind("model", 2, "models", "models", lambda s: (s.get("model_group_id"), s.get("name")), "Models",
         deployable=True, one_at_a_time_per_group=True),
    # consumers of models (docs/references.md): pipelines by their user-chosen id (the observed pool's
    # key, so no natural key beyond it), agents by name (2.19 has no update: a change is a replace)
    Kind("ingest_pipeline", 3, "ingest_pipelines", "ingest_pipelines", lambda s: None, "Ingest pipelines",
         consumer=True),
    Kind("search_pipeline", 3, "search_pipelines", "search_pipelines", lambda s: None, "Search pipelines",
         consumer=True),
    Kind("agent", 4, "agents", "agents", lambda s: s.get("name"), "Agents", consumer=True),
)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
APPLY_ORDER: tuple[Kind, ...] = tuple(sorted(KINDS, key=lambda k: k.order))
CONSUMERS: tuple[Kind, ...] = tuple(k for k in APPLY_ORDER if k.consumer)
DELETE_ORDER: tuple[Kind, ...] = tuple(reversed(APPLY_ORDER))


def kind(name: str) -> Kind:
    try:
        return BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown resource kind {name!r} (known: {', '.join(BY_NAME)})") from None


def observed_kind_of(observed: "Observed", object_id: str) -> "Kind | None":
    """The kind whose observed objects include `object_id`, if any."""
    return next((k for k in KINDS if object_id in k.observed(observed)), None)
