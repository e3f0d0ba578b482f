"""The plan as a picture: a dependency graph of what changes and in which order, as Mermaid or DOT.

Pure: no I/O (`mlsync graph --format svg` pipes the DOT text through Graphviz in
mlsync/commands/graph.py). Nodes and edges come from the plan's data only: one node per pending
change, plus the unchanged resources a pending change depends on (drawn grey, for context); one
edge per `ResourceChange.depends_on` between them; one box per resource kind, titled and ordered by
mlsync/core/kinds.py (a kind the registry does not know yet is drawn after the known ones, under
its own name). So a new kind (pipelines, agents) shows up without a change here.

An arrow means "before": `A --> B` means A is carried out first. A change needs what it depends on
to exist first, so the arrow runs from the dependency to the dependent; when the dependency is
being deleted (and not created again), the dependent has to go first, and the arrow turns round.

Every label is text from the file or the cluster: control characters and bidi overrides are shown
escaped (`render._common.make_safe`), and the characters that mean something to Mermaid or DOT are
written as entities / escapes, so a name cannot break out of its label.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlsync.core import kinds
from mlsync.core.plan import Action, Plan, ResourceChange
from mlsync.render import _common as c

FORMATS = ("mermaid", "dot")
_MAX_LABEL = 120                 # characters of one node label at most (before escaping)

#: One style per node class: (fill, stroke). Classes are picked by `_node_class`.
STYLES: dict[str, tuple[str, str]] = {
    "create": ("#e6ffed", "#2da44e"),
    "update": ("#fff8c5", "#bf8700"),
    "replace": ("#fff1e5", "#bc4c00"),
    "delete": ("#ffebe9", "#cf222e"),
    "deploy": ("#ddf4ff", "#0969da"),
    "adopt": ("#fbefff", "#8250df"),
    "unchanged": ("#f6f8fa", "#8c959f"),
}


@dataclass(frozen=True)
class Node:
    id: str                      # n0, n1, ...: never user text
    address: str
    kind: str
    label: tuple[str, str]       # ('+ connector["x"]', 'create'): plain text, escaped by each format
    cls: str                     # a key of STYLES


@dataclass(frozen=True)
class Cluster:
    id: str                      # k0, k1, ...
    title: str
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Graph:
    clusters: tuple[Cluster, ...]          # in kind order
    edges: tuple[tuple[str, str], ...]     # (node id, node id): the first is carried out before the second

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(n for cl in self.clusters for n in cl.nodes)


def build(plan: Plan, *, include_unchanged: bool = False) -> Graph:
    """The graph of `plan`: pending changes, the unchanged resources they depend on (all unchanged
    resources with `include_unchanged`), the dependencies between them, grouped by kind."""
    by_address = {str(ch.address): ch for ch in plan.changes}
    shown = [ch for ch in plan.changes if include_unchanged or not ch.is_noop]
    wanted = {str(ch.address) for ch in shown}
    for ch in list(shown):                 # the unchanged resources a change needs, for context
        for dep in ch.depends_on:
            if dep not in wanted and dep in by_address:
                wanted.add(dep)
                shown.append(by_address[dep])
    order = {str(ch.address): i for i, ch in enumerate(plan.changes)}
    shown.sort(key=lambda ch: (_kind_rank(ch.kind), order[str(ch.address)]))

    ids = {str(ch.address): f"n{i}" for i, ch in enumerate(shown)}
    clusters: list[Cluster] = []
    for ch in shown:
        node = Node(ids[str(ch.address)], str(ch.address), ch.kind, _label(ch), _node_class(ch))
        if clusters and clusters[-1].nodes[0].kind == ch.kind:
            last = clusters[-1]
            clusters[-1] = Cluster(last.id, last.title, last.nodes + (node,))
        else:
            clusters.append(Cluster(f"k{len(clusters)}", _kind_title(ch.kind), (node,)))

    edges: list[tuple[str, str]] = []
    for ch in shown:
        for dep in ch.depends_on:
            if dep not in ids or dep == str(ch.address):
                continue
            edge = (ids[str(ch.address)], ids[dep]) if _goes_away(by_address[dep]) else (ids[dep], ids[str(ch.address)])
            if edge not in edges:
                edges.append(edge)
    return Graph(tuple(clusters), tuple(edges))


def _kind_rank(kind: str) -> tuple[int, str]:
    k = kinds.BY_NAME.get(kind)
    return (k.order, "") if k else (len(kinds.KINDS) + 1_000, kind)


def _kind_title(kind: str) -> str:
    k = kinds.BY_NAME.get(kind)
    return k.title if k else kind


def _goes_away(ch: ResourceChange) -> bool:
    return Action.DELETE in ch.actions and not ({Action.CREATE, Action.REGISTER} & set(ch.actions))


def _node_class(ch: ResourceChange) -> str:
    acts = set(c.shown_actions(ch))
    for cls, actions in (("delete", {Action.DELETE}), ("replace", {Action.REPLACE}),
                         ("create", {Action.CREATE, Action.REGISTER}), ("update", {Action.UPDATE}),
                         ("adopt", {Action.ADOPT}), ("deploy", {Action.DEPLOY, Action.UNDEPLOY})):
        if acts & actions:
            return cls
    return "unchanged"


def _label(ch: ResourceChange) -> tuple[str, str]:
    head = f"{c.change_symbol(ch.actions)} {ch.address}" if not ch.is_noop else str(ch.address)
    words = c.action_words(ch.actions) if not ch.is_noop else "unchanged"
    return _clip(head), _clip(words)


def _clip(text: str) -> str:
    text = c.make_safe(" ".join(text.split()))
    return text if len(text) <= _MAX_LABEL else text[:_MAX_LABEL - 1] + c.ELLIPSIS


# --------------------------------------------------------------------------- Mermaid


# Mermaid entity codes (`#quot;`, `#35;`): the characters that end a quoted label, start an entity,
# or would be read as HTML or Markdown (backticks) inside one.
_MERMAID_ESCAPES = {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;"}


def mermaid_text(text: str) -> str:
    """`text` safe inside a quoted Mermaid label."""
    return "".join(_MERMAID_ESCAPES.get(ch, ch) for ch in text)


def mermaid(plan: Plan, *, include_unchanged: bool = False, graph: "Graph | None" = None) -> str:
    """The plan as a Mermaid flowchart (left to right, one subgraph per kind)."""
    g = graph or build(plan, include_unchanged=include_unchanged)
    out = ["flowchart LR"]
    for cl in g.clusters:
        out.append(f'  subgraph {cl.id}["{mermaid_text(cl.title)}"]')
        for n in cl.nodes:
            head, words = n.label
            out.append(f'    {n.id}["{mermaid_text(head)}<br/>{mermaid_text(words)}"]')
        out.append("  end")
    for a, b in g.edges:
        out.append(f"  {a} --> {b}")
    used = {n.cls for n in g.nodes}
    for cls, (fill, stroke) in STYLES.items():
        if cls in used:
            out.append(f"  classDef {cls} fill:{fill},stroke:{stroke},color:#1f2328")
    for cls in STYLES:
        members = [n.id for n in g.nodes if n.cls == cls]
        if members:
            out.append(f"  class {','.join(members)} {cls}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- DOT (Graphviz)


def dot_text(text: str) -> str:
    """`text` safe inside a double-quoted DOT label: backslashes (DOT's escapes) and quotes escaped, and
    `&` written as `&amp;` (Graphviz decodes HTML entities in labels)."""
    return text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')


def dot(plan: Plan, *, include_unchanged: bool = False, graph: "Graph | None" = None) -> str:
    """The plan as a Graphviz digraph (left to right, one cluster per kind)."""
    g = graph or build(plan, include_unchanged=include_unchanged)
    out = [f'digraph "{dot_text("mlsync plan " + c.make_safe(plan.stack))}" {{',
           "  rankdir=LR;",
           '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
           '  edge [color="#57606a"];']
    for cl in g.clusters:
        out.append(f"  subgraph cluster_{cl.id} {{")
        out.append(f'    label="{dot_text(cl.title)}"; style=rounded; color="#d0d7de";')
        for n in cl.nodes:
            head, words = n.label
            fill, stroke = STYLES[n.cls]
            out.append(f'    {n.id} [label="{dot_text(head)}\\n{dot_text(words)}", '
                       f'fillcolor="{fill}", color="{stroke}"];')
        out.append("  }")
    for a, b in g.edges:
        out.append(f"  {a} -> {b};")
    out.append("}")
    return "\n".join(out) + "\n"


def render(plan: Plan, fmt: str = "mermaid", *, include_unchanged: bool = False) -> str:
    """`plan` as `fmt`, one of FORMATS."""
    if fmt == "mermaid":
        return mermaid(plan, include_unchanged=include_unchanged)
    if fmt == "dot":
        return dot(plan, include_unchanged=include_unchanged)
    raise ValueError(f"unknown graph format {fmt!r} (allowed: {', '.join(FORMATS)})")
