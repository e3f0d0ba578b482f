"""The plan as a picture (mlsync/render/graph.py): well-formed Mermaid (checked by a validator of the
subset mlsync emits, below), DOT that Graphviz renders, names that cannot break out of a label, nodes
and edges derived from the plan's data (a kind the registry does not know yet still shows), and
the diagram in the Markdown plan (collapsed when large, left out when too large, within the budget).

Graphviz (`dot`) is an OS package that .ci/run installs; without it these tests skip outside CI and
fail in CI.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest

from mlsync.core.address import Address
from mlsync.core.plan import Action as A, Plan, Reason as R, ResourceChange
from mlsync.render import graph, markdown as render_markdown

from .plans import SCENARIOS, STACK, big_plan, plan as make_plan

NASTY = 'x"] --> evil["pwned" %% end\nsubgraph s\n`code` <b>&amp;</b> #quot; \x1b[31m \u202e'


# --------------------------------------------------------------------------- a Mermaid validator


@dataclass
class Mermaid:
    nodes: dict[str, str] = field(default_factory=dict)           # id -> label (entities decoded)
    subgraphs: dict[str, list[str]] = field(default_factory=dict)  # id -> node ids
    edges: list[tuple[str, str]] = field(default_factory=list)
    classes: dict[str, list[str]] = field(default_factory=dict)   # class -> node ids


_ID = r"[A-Za-z][A-Za-z0-9_]*"
# Inside a quoted label: no quote, no newline, and every '#' starts an entity (#name; or #123;).
_LABEL = r'"((?:[^"#\n]|#[a-z]+;|#[0-9]+;)*)"'
_LINES = {
    "subgraph": re.compile(rf"  subgraph ({_ID})\[{_LABEL}\]"),
    "end": re.compile(r"  end"),
    "node": re.compile(rf"    ({_ID})\[{_LABEL}\]"),
    "edge": re.compile(rf"  ({_ID}) --> ({_ID})"),
    "classDef": re.compile(rf"  classDef ({_ID}) ((?:fill|stroke|color):#[0-9a-f]{{6}}(?:,(?:fill|stroke|color):#[0-9a-f]{{6}})*)"),
    "class": re.compile(rf"  class ({_ID}(?:,{_ID})*) ({_ID})"),
}
_ENTITIES = {"quot": '"', "lt": "<", "gt": ">", "amp": "&"}
_KEYWORDS = {"end", "subgraph", "graph", "flowchart", "class", "classDef", "style", "click", "linkStyle"}


def _decode(label: str) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1)
        return chr(int(name)) if name.isdigit() else _ENTITIES[name]
    return re.sub(r"#([a-z]+|[0-9]+);", one, label)


def parse_mermaid(text: str) -> Mermaid:
    """Parse the Mermaid subset mlsync emits, or fail naming the line: a `flowchart LR` header;
    subgraphs holding node declarations and closed by `end` (no nesting); edges between declared
    nodes; classDefs before the `class` lines that use them; ids that are not keywords; labels that
    are quoted, one line, with `#...;` entities only."""
    lines = text.split("\n")
    assert text.endswith("\n") and lines[-1] == "", "ends with one newline"
    assert lines[0] == "flowchart LR", lines[0]
    g = Mermaid()
    current = None
    for n, line in enumerate(lines[1:-1], start=2):
        kind = next((k for k, rx in _LINES.items() if rx.fullmatch(line)), None)
        assert kind, f"line {n}: not in the emitted subset: {line!r}"
        m = _LINES[kind].fullmatch(line)
        ids = [x for x in m.groups() if x and re.fullmatch(_ID, x)] if kind in ("subgraph", "node", "edge") else []
        assert not set(ids) & _KEYWORDS, f"line {n}: a keyword as an id: {line!r}"
        if kind == "subgraph":
            assert current is None, f"line {n}: nested subgraph"
            assert m.group(1) not in g.subgraphs and m.group(1) not in g.nodes, f"line {n}: id reused"
            current = m.group(1)
            g.subgraphs[current] = []
        elif kind == "end":
            assert current is not None, f"line {n}: `end` without a subgraph"
            assert g.subgraphs[current], f"line {n}: empty subgraph"
            current = None
        elif kind == "node":
            assert current is not None, f"line {n}: node outside a subgraph"
            assert m.group(1) not in g.nodes and m.group(1) not in g.subgraphs, f"line {n}: id reused"
            g.nodes[m.group(1)] = _decode(m.group(2))
            g.subgraphs[current].append(m.group(1))
        elif kind == "edge":
            assert current is None, f"line {n}: edge inside a subgraph"
            assert m.group(1) in g.nodes and m.group(2) in g.nodes, f"line {n}: edge to an undeclared node"
            g.edges.append((m.group(1), m.group(2)))
        elif kind == "classDef":
            g.classes.setdefault(m.group(1), [])
        else:
            members = m.group(1).split(",")
            assert m.group(2) in g.classes, f"line {n}: class {m.group(2)} not defined"
            assert all(x in g.nodes for x in members), f"line {n}: class of an undeclared node"
            g.classes[m.group(2)] += members
    assert current is None, "unclosed subgraph"
    return g


def test_the_validator_rejects_what_mermaid_would_misread() -> None:
    good = 'flowchart LR\n  subgraph k0["K"]\n    n0["a"]\n  end\n'
    parse_mermaid(good)
    for bad in (good.replace('["a"]', '["a"b"]'),          # a quote ends the label early
                good.replace('["a"]', '["a #x"]'),         # a bare '#'
                good.replace("  end\n", ""),               # unclosed
                good + "  n0 --> n9\n",                    # undeclared node
                good.replace("n0", "end"),                 # keyword id
                good + "  class n0 nope\n"):               # undefined class
        with pytest.raises(AssertionError):
            parse_mermaid(bad)


# --------------------------------------------------------------------------- the graph


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_scenario_is_well_formed_mermaid_with_one_node_per_pending_change(scenario) -> None:
    plan = SCENARIOS[scenario]()
    g = parse_mermaid(graph.mermaid(plan))
    pending = {str(ch.address) for ch in plan.pending}
    shown = {label.split("<br/>")[0].split(" ", 1)[-1] for label in g.nodes.values()}
    assert pending <= shown
    assert set(g.classes.get("unchanged", [])) | {n for n, lab in g.nodes.items()
                                                   if lab.split("<br/>")[0].split(" ", 1)[-1] in pending} == set(g.nodes)


def _change(kind: str, name: str, actions, depends_on=(), group=None, version=None) -> ResourceChange:
    try:
        address = Address(kind, name, group=group, version=version)
    except ValueError:                 # a kind core/address.py does not know yet (pipelines, agents)
        address = object.__new__(Address)
        for k, v in (("kind", kind), ("name", name), ("group", group), ("version", version)):
            object.__setattr__(address, k, v)
        object.__setattr__(address, "_text", f'{kind}["{name}"]')
    return ResourceChange(address, tuple(actions), "why", (R.NOT_ON_CLUSTER,), depends_on=tuple(depends_on))


def _dependency_plan() -> Plan:
    conn = _change("connector", "api", [A.UPDATE])
    grp = _change("model_group", "g", [A.NOOP])
    remote = _change("model", "remote", [A.REGISTER, A.DEPLOY], ['connector["api"]', 'model_group["g"]'], group="g")
    other = _change("model_group", "other", [A.NOOP])
    pipe = _change("pipeline", "ingest", [A.CREATE], ['model["g"]["remote"]'])
    old_grp = _change("model_group", "old", [A.DELETE])
    old_ver = _change("model", "m", [A.UNDEPLOY, A.DELETE], ['model_group["old"]'], group="old", version="1")
    return Plan(STACK, (conn, grp, other, remote, pipe, old_ver, old_grp))


def test_nodes_and_edges_come_from_the_plan_data() -> None:
    plan = _dependency_plan()
    g = graph.build(plan)
    by_address = {n.address: n for n in g.nodes}
    # pending changes, and the unchanged group a change depends on (grey); not the unrelated one
    assert set(by_address) == {'connector["api"]', 'model_group["g"]', 'model["g"]["remote"]',
                               'pipeline["ingest"]', 'model_group["old"]', 'model["old"]["m"]["1"]'}
    assert by_address['model_group["g"]'].cls == "unchanged"
    # boxes per kind, in the registry's order, the unknown kind last under its own name
    assert [cl.title for cl in g.clusters] == ["Connectors", "Model groups", "Models", "pipeline"]
    edge = {(a, b) for a, b in g.edges}
    ids = {k: v.id for k, v in by_address.items()}
    assert (ids['connector["api"]'], ids['model["g"]["remote"]']) in edge
    assert (ids['model_group["g"]'], ids['model["g"]["remote"]']) in edge
    assert (ids['model["g"]["remote"]'], ids['pipeline["ingest"]']) in edge
    # a deleted dependency: its dependent goes first
    assert (ids['model["old"]["m"]["1"]'], ids['model_group["old"]']) in edge
    assert len(edge) == 4
    with_all = graph.build(plan, include_unchanged=True)
    assert 'model_group["other"]' in {n.address for n in with_all.nodes}
    parsed = parse_mermaid(graph.mermaid(plan))
    assert len(parsed.edges) == 4 and parsed.subgraphs and len(parsed.nodes) == 6


def test_names_cannot_break_out_of_a_label() -> None:
    plan = Plan(STACK, (_change("connector", NASTY, [A.CREATE]),
                        _change("model", NASTY, [A.REGISTER], [str(Address("connector", NASTY))],
                                group=NASTY, version="1")))
    text = graph.mermaid(plan)
    g = parse_mermaid(text)
    assert len(g.nodes) == 2 and len(g.edges) == 1 and len(g.subgraphs) == 2
    assert "\x1b" not in text and "\u202e" not in text
    label = next(iter(g.nodes.values()))
    assert '"] --> evil[' in label and "<b>&amp;</b> #quot;" in label and "\\u202e" in label   # shown, as text
    dot_text = graph.dot(plan)
    assert "\x1b" not in dot_text and "\u202e" not in dot_text
    svg = _render_svg(dot_text)
    titles = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert set(titles) >= {"n0", "n1", "n0&#45;&gt;n1"} or set(titles) >= {"n0", "n1", "n0->n1"}
    texts = " ".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text"))
    assert 'evil[' in texts and "<b>&amp;</b>" in texts


def _dot_binary() -> str:
    found = shutil.which("dot")
    if not found:
        if os.environ.get("CI"):
            pytest.fail("Graphviz `dot` is missing: .ci/run installs the graphviz package")
        pytest.skip("Graphviz `dot` is not installed (apt-get install graphviz)")
    return found


def _render_svg(dot_text: str) -> ET.Element:
    proc = subprocess.run([_dot_binary(), "-Tsvg"], input=dot_text, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    return ET.fromstring(proc.stdout)


@pytest.mark.parametrize("scenario", ["full", "connector_cycle", "drift", "special_names", "empty"])
def test_dot_renders_with_graphviz(scenario) -> None:
    plan = SCENARIOS[scenario]()
    svg = _render_svg(graph.dot(plan))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    nodes = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
    assert len(nodes) == len(graph.build(plan).nodes) >= len(plan.pending)


def test_dot_of_the_dependency_plan_has_its_edges_and_clusters() -> None:
    svg = _render_svg(graph.dot(_dependency_plan()))
    classes = [g.get("class") for g in svg.iter("{http://www.w3.org/2000/svg}g")]
    assert classes.count("edge") == 4 and classes.count("cluster") == 4 and classes.count("node") == 6


# --------------------------------------------------------------------------- in the Markdown plan


def _mermaid_block(md: str) -> str:
    m = re.search(r"^```mermaid\n(.*?)^```$", md, re.S | re.M)
    assert m, "no mermaid block"
    return m.group(1)


def test_markdown_shows_a_small_diagram_open() -> None:
    md = render_markdown.render(SCENARIOS["full"]())
    block = _mermaid_block(md)
    assert block == graph.mermaid(SCENARIOS["full"]())
    parse_mermaid(block)
    assert md.index("```mermaid") < md.index("### Changes")
    assert "<details><summary>Order of changes" not in md


def test_markdown_collapses_a_large_diagram_and_leaves_out_a_huge_one() -> None:
    md = render_markdown.render(big_plan(40))
    assert "<details><summary>Order of changes (40 resources, dependencies first)</summary>\n\n```mermaid" in md
    assert len(parse_mermaid(_mermaid_block(md)).nodes) == 40
    huge = render_markdown.render(big_plan(500))
    assert "```mermaid" not in huge
    assert "The order of the changes is not drawn here (500 resources); `mlsync graph` draws it." in huge
    assert len(huge) <= render_markdown.MAX_CHARS


@pytest.mark.parametrize("budget", [2_000, 5_000, 20_000])
def test_the_diagram_counts_in_the_budget(budget) -> None:
    for plan in (SCENARIOS["full"](), big_plan(30), make_plan(*(_dependency_plan().changes[:5]))):
        md = render_markdown.render(plan, max_chars=budget)
        assert len(md) <= budget
        if "```mermaid" in md:
            parse_mermaid(_mermaid_block(md))
