"""Plan renderers: golden files per action/combination, round trip, colour, secrets, size budget.

Regenerate the golden files after an intended change of the output with
`pytest tests/render --update-golden` (or `MLSYNC_UPDATE_GOLDEN=1 pytest tests/render`) and
review the diff of tests/render/golden/ like any other change.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from mlsync.core.address import Address
from mlsync.core.plan import Action, FieldChange, Plan, ResourceChange
from mlsync.render import FORMATS, render, use_color
from mlsync.render import json as render_json
from mlsync.render import markdown as render_markdown
from mlsync.render import text as render_text
from mlsync.render._common import mask_secrets
from mlsync.core.secrets import MASK, Secret

from .plans import SCENARIOS, STACK, big_plan, plan as make_plan

GOLDEN = Path(__file__).parent / "golden"
EXT = {"text": "txt", "markdown": "md", "json": "json"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DOCS = Path(__file__).resolve().parents[2] / "docs" / "plan-format.md"


# --------------------------------------------------------------------------- golden files


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_golden(scenario: str, fmt: str, update_golden: bool) -> None:
    out = render(SCENARIOS[scenario](), fmt)
    path = GOLDEN / f"{scenario}.{EXT[fmt]}"
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(out, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing; run `pytest tests/render --update-golden` and review it"
    assert out == path.read_text(encoding="utf-8"), (
        f"{fmt} output of {scenario!r} differs from {path.name}; if the change is intended, "
        "regenerate with `pytest tests/render --update-golden` and review the diff")


def test_no_stale_golden_files() -> None:
    expected = {f"{s}.{EXT[f]}" for s in SCENARIOS for f in FORMATS}
    present = {p.name for p in GOLDEN.iterdir() if p.is_file()}
    assert present <= expected, f"golden files without a scenario: {sorted(present - expected)}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_round_trip_renders_the_same(scenario: str) -> None:
    """Plan.to_json -> (JSON text) -> Plan.from_json renders exactly like the original, in every format."""
    plan = SCENARIOS[scenario]()
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    for fmt in FORMATS:
        assert render(again, fmt) == render(plan, fmt), fmt
    # and the JSON output itself is a plan file Plan.from_json accepts
    assert render(Plan.from_json(json.loads(render_json.render(plan))), "text") == render(plan, "text")


# --------------------------------------------------------------------------- text specifics


def test_summary_line_and_symbols() -> None:
    out = render_text.render(SCENARIOS["full"]())
    assert ("Plan: 1 to create, 1 to register, 1 to update, 1 to replace, 2 to delete, 2 to deploy, "
            "2 to undeploy, 2 to adopt.") in out
    assert "2 resources unchanged." in out
    assert '\n  <-/+> model["embeddings"]["all-MiniLM-L6-v2"]["1.0.1"] will be undeployed, replaced, then redeployed\n' in out
    assert "id m0d3l101 → (known after apply), server version 3 → (known after apply)" in out
    assert "id (known after apply), server version (known after apply)" in out


def test_connector_cycle_is_one_combined_symbol() -> None:
    out = render_text.render(SCENARIOS["connector_cycle"]())
    assert '  <~> connector["embeddings-api"] will be undeployed, updated in place, then redeployed' in out


def test_sensitive_and_forces_replace_markers() -> None:
    out = render_text.render(SCENARIOS["update"]())
    assert "~ credential: (sensitive) → (sensitive)" in out
    rep = render_text.render(SCENARIOS["replace"]())
    assert '~ model_format: "TORCH_SCRIPT" → "ONNX"  # forces replacement' in rep


def test_a_new_objects_credential_is_listed_as_sensitive() -> None:
    """The comparable form never holds the credential, but a reviewer must see that one is sent."""
    for scenario, line in (("create_connector", "+ credential: (sensitive)"),
                           ("register_inline_remote", "+ connector.credential: (sensitive)")):
        for fmt in ("text", "markdown"):
            out = render(SCENARIOS[scenario](), fmt)
            assert line in out, (scenario, fmt)
            lines = out.splitlines()
            at = next(i for i, x in enumerate(lines) if line in x)   # where the file writes it
            assert "parameters.model" in lines[at - 1] and "actions[0].action_type" in lines[at + 1]
        assert "(sensitive)" not in render(SCENARIOS[scenario](), "json")   # JSON lists no fields on create


def test_empty_plan_says_no_changes() -> None:
    for name in ("empty", "empty_with_noops", "warnings_only"):
        out = render_text.render(SCENARIOS[name]())
        assert "No changes. The cluster matches the file." in out
        assert "Plan:" not in out


def test_noops_are_counted_not_listed() -> None:
    plan = SCENARIOS["full"]()
    for fmt in ("text", "markdown"):
        out = render(plan, fmt)
        assert "unchanged-0" not in out and "unchanged-1" not in out


def test_drift_section() -> None:
    out = render_text.render(SCENARIOS["drift"]())
    head, _, rest = out.partition("Changed outside mlsync")
    assert rest, out
    section = rest.split("\n\n")[0]
    assert section.count("\n  ! ") == 3
    assert "undeployed outside mlsync" in section


def test_drift_the_plan_leaves_alone_is_listed_too() -> None:
    # versions mlsync does not manage in a managed group: drift on the group's no-op entry
    note = "holds 1 model version(s) mlsync does not manage: X0 ('by-hand', version 2) (left alone)"
    group = ResourceChange(Address("model_group", "g"), (Action.NOOP,), note, server_id="G", drift=True)
    edited = ResourceChange(Address("model_group", "h"), (Action.UPDATE,), "fields differ: description",
                            server_id="H", drift=True, field_changes=(FieldChange("description", "a", "b"),))
    plan = make_plan(group, edited)
    text = render_text.render(plan)
    section = text.partition("Changed outside mlsync:")[2].split("\n\n")[0]
    assert 'model_group["g"]: holds 1 model version' in section and 'model_group["h"]' in section
    md = render_markdown.render(plan)
    assert "leaves these alone" in md and "X0" in md and md.count('model_group["g"]') == 1
    only_alone = render_markdown.render(make_plan(group))
    assert "No changes" in only_alone and "X0" in only_alone


def test_lines_respect_width_for_values() -> None:
    for width in (60, 100, 140):
        out = render_text.render(SCENARIOS["long_values"](), width=width)
        for line in out.splitlines():
            if line.lstrip().startswith(("~ connector", "Plan:")):
                continue  # the address line and the summary line are never cut
            assert len(line) <= width, (width, line)


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_color_is_plain_plus_ansi(scenario: str) -> None:
    plan = SCENARIOS[scenario]()
    plain = render_text.render(plan, color=False)
    colored = render_text.render(plan, color=True)
    assert ANSI.search(colored), "colour output has no ANSI codes"
    assert not ANSI.search(plain)
    assert ANSI.sub("", colored) == plain


def test_color_uses_action_colours() -> None:
    colored = render_text.render(SCENARIOS["full"](), color=True)
    assert "\x1b[1;32m+\x1b[0m" in colored        # bold green create symbol
    assert "\x1b[1;31m# forces replacement\x1b[0m" in colored


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


def test_use_color(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NO_COLOR", "FORCE_COLOR", "TERM"):
        monkeypatch.delenv(var, raising=False)
    assert use_color(_Stream(True)) is True
    assert use_color(_Stream(False)) is False
    assert use_color(object()) is False                 # no isatty at all
    closed = _Stream(True)
    closed.close()
    assert use_color(io.StringIO()) is False
    monkeypatch.setenv("TERM", "dumb")
    assert use_color(_Stream(True)) is False
    monkeypatch.delenv("TERM")
    monkeypatch.setenv("NO_COLOR", "")                  # empty: not set (no-color.org)
    assert use_color(_Stream(True)) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(_Stream(True)) is False
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert use_color(_Stream(True)) is False            # NO_COLOR wins
    monkeypatch.delenv("NO_COLOR")
    assert use_color(_Stream(False)) is True


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="allowed: text, json, markdown"):
        render(SCENARIOS["empty"](), "yaml")


# --------------------------------------------------------------------------- secrets


SECRET_VALUE = "sk-live-THIS-MUST-NEVER-BE-PRINTED"


def _plan_with_secrets() -> Plan:
    s = Secret(SECRET_VALUE)
    conn = ResourceChange(
        Address("connector", "leaky"), (Action.UPDATE,), "credential changed", server_id="c1",
        before={"name": "leaky", "credential": {"api_key": s}, "tags": (s, "x"), s: "as a key"},
        after={"name": "leaky", "credential": {"api_key": s}, "parameters": {"nested": [{"deep": s}]}},
        field_changes=(FieldChange("credential.api_key", s, s, sensitive=True),
                       FieldChange("parameters.token", None, s),             # not flagged sensitive: still masked
                       FieldChange("parameters.nested", [{"deep": s}], {"deep": [s, s]}),
                       FieldChange("credential.fp", "hmac-sha256:" + "a" * 64, "hmac-sha256:" + "b" * 64,
                                   sensitive=True)),
        artifact={"path": "x.zip", "token": s})
    create = ResourceChange(Address("connector", "new"), (Action.CREATE,), "not on the cluster",
                            after={"name": "new", "credential": {"api_key": s}, "script": f"line1\n{s}"})
    return Plan(STACK, (conn, create), warnings=(f"warning mentioning {s}",))


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_secret_reaches_any_output(fmt: str) -> None:
    out = render(_plan_with_secrets(), fmt)
    assert SECRET_VALUE not in out
    assert MASK in out
    if fmt == "json":
        # a sensitive field change shows no fingerprint either
        assert "a" * 64 not in out and "b" * 64 not in out


def test_json_output_has_no_secret_objects_and_parses() -> None:
    doc = render_json.document(_plan_with_secrets())

    def walk(v):
        assert not isinstance(v, Secret)
        if isinstance(v, dict):
            for k, x in v.items():
                assert not isinstance(k, Secret)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(doc)
    parsed = json.loads(render_json.render(_plan_with_secrets()))
    rc = parsed["resource_changes"][0]
    assert rc["before"]["credential"]["api_key"] == MASK
    assert rc["after"]["parameters"]["nested"][0]["deep"] == MASK
    assert rc["field_changes"][0] == {"path": "credential.api_key", "before": MASK, "after": MASK,
                                      "sensitive": True, "forces_replace": False}
    assert rc["field_changes"][3]["before"] == MASK
    assert rc["artifact"]["token"] == MASK


def test_mask_secrets_walks_everything() -> None:
    s = Secret("v")
    got = mask_secrets({"a": [s, (s, {"b": s})], s: {s}, "c": 1, "d": None})
    assert got == {"a": [MASK, [MASK, {"b": MASK}]], MASK: [MASK], "c": 1, "d": None}


# --------------------------------------------------------------------------- JSON format


def test_json_format_version_first_and_documented() -> None:
    doc = json.loads(render_json.render(SCENARIOS["full"]()))
    assert next(iter(doc)) == "format_version"
    assert re.fullmatch(r"\d+\.\d+", doc["format_version"])
    documented = DOCS.read_text(encoding="utf-8")
    assert f'format_version: "{doc["format_version"]}"' in documented
    keys = set(doc)
    for rc in doc["resource_changes"]:
        keys |= set(rc)
        for fc in rc["field_changes"]:
            keys |= set(fc)
    keys |= set(doc["summary"])
    missing = sorted(k for k in keys if f"`{k}`" not in documented)
    assert not missing, f"keys not documented in docs/plan-format.md: {missing}"
    for a in Action:
        assert f"`{a.value}`" in documented and (not a.symbol.strip() or f"`{a.symbol}`" in documented)


# --------------------------------------------------------------------------- Markdown size budget


def _assert_well_formed(md: str) -> None:
    assert md.count("<details>") == md.count("</details>")
    assert md.count("<summary>") == md.count("</summary>")
    fences = re.findall(r"^(`{3,})", md, flags=re.M)
    assert len(fences) % 2 == 0


def test_markdown_10000_changes_stays_under_budget() -> None:
    plan = big_plan(10_000)
    md = render_markdown.render(plan)
    assert len(md) < 60_000
    _assert_well_formed(md)
    assert "<details>" not in md                     # details go first ...
    m = re.search(r"_… ([\d,]+) more changes not shown; run `mlsync plan` for the full plan\._", md)
    assert m, md[-500:]                              # ... then rows, and it says so
    rows = len(re.findall(r"^\| `[^|]*` \| `", md, flags=re.M))
    assert rows + int(m.group(1).replace(",", "")) == 10_000
    assert rows > 100
    # the rows that remain are the first ones, in plan order
    assert "all-MiniLM-L6-v2-00001" in md


def test_markdown_drops_details_before_rows() -> None:
    plan = big_plan(250)
    full = render_markdown.render(plan, max_chars=10_000_000)
    assert full.count("<details>") == 250
    md = render_markdown.render(plan)
    assert len(md) <= 60_000
    _assert_well_formed(md)
    rows = len(re.findall(r"^\| `[^|]*` \| `", md, flags=re.M))
    assert rows == 250                                # every row kept
    kept = md.count("<details>")
    assert 0 < kept < 250
    assert f"details of {250 - kept:,} more changes not shown; run `mlsync plan` for the full plan" in md
    # kept details are a prefix of the full rendering
    assert full.split("### Details")[1].startswith(md.split("### Details")[1].split("\n_…")[0].rstrip("\n"))


@pytest.mark.parametrize("budget", [2_000, 5_000, 20_000, 60_000])
def test_markdown_budget_holds_for_pathological_plans(budget: int) -> None:
    huge_script = "\n".join(f"line {i} " + "x" * 150 for i in range(20_000))
    giant = ResourceChange(
        Address("connector", "n" * 500), (Action.UPDATE,), "r\x1b" * 5_000, server_id="c",
        field_changes=(FieldChange("actions[0].post_process_function", None, huge_script),
                       FieldChange("description", "a" * 100_000, "b" * 100_000)))
    plan = Plan(STACK, (giant,) * 30, warnings=tuple("w" * 2_000 for _ in range(500)))
    md = render_markdown.render(plan, max_chars=budget)
    assert len(md) <= budget
    _assert_well_formed(md)


def test_markdown_escapes_names() -> None:
    md = render_markdown.render(SCENARIOS["special_names"]())
    row = next(line for line in md.splitlines() if line.startswith("| `+v` |") and "model[" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == 5     # the pipes in the name and reason do not split the row
    assert "&lt;html&gt;" in row and "<html>" not in md.split("### Details")[0]
    assert "````diff" in md                           # a fence longer than the ``` inside the values


def test_markdown_no_changes() -> None:
    md = render_markdown.render(SCENARIOS["empty"]())
    assert "**No changes.** The cluster matches the file." in md
    assert "<details>" not in md and "### Changes" not in md


def test_text_renders_every_change_of_a_big_plan() -> None:
    plan = big_plan(10_000)
    out = render_text.render(plan)
    assert out.count(" will be ") == 10_000
    assert make_plan().stack in out


def test_terminal_control_characters_from_the_cluster_are_escaped() -> None:
    evil = "\x1b[2J\x1b[31mgotcha\u202eevil"
    ch = ResourceChange(Address("model_group", f"g{evil}"), (Action.UPDATE,), f"reason {evil}", server_id="g1",
                        field_changes=(FieldChange("description", f"line1\n{evil}", "line1\nok"),
                                       FieldChange("tag", evil, "x")))
    plan = Plan(STACK, (ch,), warnings=(evil,))
    plain = render_text.render(plan)
    colored = render_text.render(plan, color=True)
    md = render_markdown.render(plan)
    for out in (plain, md):
        assert "\x1b" not in out and "\u202e" not in out
    assert "# reason \\x1b[2J\\x1b[31mgotcha\\u202eevil" in plain      # shown, visibly escaped
    assert ANSI.sub("", colored) == plain                             # only our own codes in colour
