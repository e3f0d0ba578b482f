"""Renderers of a `DriftReport` (mlsync/drift.py): text, JSON (docs/drift-format.md) and Markdown.

Like the plan renderers they only format what the report says, and none of them can print a secret:
credential fields are `(sensitive)` on both sides, and the JSON document is walked for any `Secret`.

    from mlsync.render.drift import render
    print(render(report, "markdown"), end="")
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from mlsync.core.drift import DRIFT, PENDING, DriftItem, DriftReport, FieldDrift
from mlsync.render import _common as c
from mlsync.render import markdown as md
from mlsync.render.text import styled
from mlsync.core.secrets import MASK

FORMATS = ("text", "json", "markdown")
MAX_MARKDOWN_CHARS = md.MAX_CHARS       # 60,000: under GitHub's 65,536 comment limit
_MAX_VALUE_CHARS = 200

TITLES = {DRIFT: "Changed on the cluster since the last apply (drift)",
          PENDING: "Changed in the file since the last apply (pending)"}
_SIDES = {(DRIFT, "last_applied"): ("last applied", "cluster"), (DRIFT, "file"): ("file", "cluster"),
          (PENDING, "last_applied"): ("last applied", "file"), (PENDING, "cluster"): ("cluster", "file")}
CLEAN = "No drift. The cluster matches the file and the last apply."
NEXT_STEP = "`mlsync plan` shows how apply corrects it; `mlsync apply` does it."


def render(report: DriftReport, fmt: str = "text", *, color: bool = False, width: int = 100) -> str:
    if fmt == "text":
        return render_text(report, color=color, width=width)
    if fmt == "json":
        return render_json(report)
    if fmt == "markdown":
        return render_markdown(report)
    raise ValueError(f"unknown drift output format {fmt!r} (allowed: {', '.join(FORMATS)})")


def sides(item: DriftItem) -> tuple[str, str]:
    """What the two sides of the item's fields are: ("last applied", "cluster"), ..."""
    return _SIDES.get((item.category, item.before_is or "last_applied"), ("before", "now"))


def headline(report: DriftReport) -> str:
    if not report.items:
        return CLEAN
    parts = []
    for category, items in ((DRIFT, report.drift), (PENDING, report.pending)):
        if not items:
            continue
        kinds: dict[str, int] = {}
        for i in items:
            kinds[i.kind.value] = kinds.get(i.kind.value, 0) + 1
        what = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items())
        where = "on the cluster" if category == DRIFT else "pending in the file"
        parts.append(f"{c.plural(len(items), 'change')} {where} ({what})")
    return "Drift found: " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- JSON


def document(report: DriftReport) -> dict[str, Any]:
    doc = c.mask_secrets(report.to_json())
    for category in (DRIFT, PENDING):
        for item in doc[category]:
            for f in item["fields"]:
                if f.get("sensitive"):
                    f["before"] = MASK if f.get("before") is not None else None
                    f["now"] = MASK if f.get("now") is not None else None
    return doc


def render_json(report: DriftReport) -> str:
    return json.dumps(document(report), indent=2, ensure_ascii=False, default=c._json_default) + "\n"


# --------------------------------------------------------------------------- text


def render_text(report: DriftReport, *, color: bool = False, width: int = 100) -> str:
    width = max(40, int(width))
    lines: list[str] = []

    def add(*spans: tuple[str, str]) -> None:
        spans = tuple((c.make_safe(t), s) for t, s in spans)
        lines.append("".join(styled(t, s) if color else t for t, s in spans))

    add(("mlsync drift", "bold"))
    add(("  stack:           ", ""), (report.stack, "bold"))
    add(("  cluster version: ", ""), (report.cluster_version or "unknown", ""))
    add(("  managed:         ", ""), (c.plural(report.managed, "resource") + " in the stack's state", ""))
    for category, style, mark in ((DRIFT, "bold magenta", "!"), (PENDING, "bold yellow", "~")):
        items = report.drift if category == DRIFT else report.pending
        if not items:
            continue
        lines.append("")
        add((TITLES[category] + ":", style))
        for item in items:
            lines.append("")
            _text_item(item, mark, style.split()[-1], width, add)
    if report.warnings:
        lines.append("")
        add(("Warnings:", "bold yellow"))
        for w in report.warnings:
            for n, line in enumerate(textwrap.wrap(str(w), width - 4, break_long_words=False) or [""]):
                add(("  ! " if n == 0 else "    ", "yellow"), (line, ""))
    lines.append("")
    if report.items:
        add((headline(report), "bold"))
        add((NEXT_STEP.replace("`", ""), "dim"))
    else:
        add((CLEAN, "bold green"))
    return "\n".join(lines) + "\n"


def _text_item(item: DriftItem, mark: str, style: str, width: int, add) -> None:
    add(("  ", ""), (mark + " ", style), (item.address, "bold"), ("  " + item.kind.value.replace("_", " "), style))
    pad = " " * 4
    for line in textwrap.wrap(item.summary, max(30, width - len(pad)), break_long_words=False,
                              break_on_hyphens=False) or [""]:
        add((pad + line, ""))
    ids = [f"id {item.server_id}"] if item.server_id else []
    if item.server_version:
        ids.append(f"server version {item.server_version}")
    if ids:
        add((pad + ", ".join(ids), "dim"))
    if item.fields:
        left, right = sides(item)
        add((pad + f"fields ({left} → {right}):", "dim"))
        limit = max(20, (width - 12) // 2 - 4)
        for f in item.fields:
            b, n = _pair(f, limit)
            add((pad + "  ~ ", "yellow"), (f"{f.path}: {b} → {n}", ""))
    add((pad + ("apply: " + ", ".join(item.actions) if item.actions else "apply leaves it alone"), "dim"))


def _pair(f: FieldDrift, limit: int) -> tuple[str, str]:
    if f.sensitive:
        return c.sensitive_text(f.before), c.sensitive_text(f.now)
    return c.clip_pair(f.before, f.now, limit)


# --------------------------------------------------------------------------- Markdown


def render_markdown(report: DriftReport, *, max_chars: int = MAX_MARKDOWN_CHARS) -> str:
    """Never longer than `max_chars`: detail blocks are dropped from the end first, then table rows."""
    head = md._safe(_md_head(report))
    sections = [(cat, report.drift if cat == DRIFT else report.pending) for cat in (DRIFT, PENDING)]
    sections = [(cat, items) for cat, items in sections if items]
    if not sections:
        return head.rstrip("\n") + "\n"
    tables = {cat: f"\n### {TITLES[cat]}\n\n| Kind | Address | What differs | Apply |\n|:--|:--|:--|:--|\n"
              for cat, _ in sections}
    rows = {cat: [md._safe(_md_row(i)) for i in items] for cat, items in sections}
    total = sum(len(items) for _, items in sections)
    note_room = 200
    base = len(head) + sum(len(t) for t in tables.values()) + sum(len(r) for rs in rows.values() for r in rs)
    if base + note_room <= max_chars:
        details_head = "\n### Details\n\n"
        blocks = [md._safe(_md_details(i)) for _, items in sections for i in items if i.fields]
        kept = md._fit(blocks, max_chars - base - len(details_head) - note_room)
        out = head + "".join(tables[cat] + "".join(rows[cat]) for cat, _ in sections)
        if kept:
            out += details_head + "".join(blocks[:kept])
        if kept < len(blocks):
            out += f"\n_… field details of {c.plural(len(blocks) - kept, 'more item')} not shown; run `mlsync drift`._\n"
        return out.rstrip("\n") + "\n"
    # drop rows from the end, keeping each section's table head while it has rows
    room = max_chars - len(head) - note_room
    out, shown = head, 0
    for cat, _ in sections:
        if room < len(tables[cat]):
            break
        fit = md._fit(rows[cat], room - len(tables[cat]))
        if not fit:
            break
        out += tables[cat] + "".join(rows[cat][:fit])
        room -= len(tables[cat]) + sum(map(len, rows[cat][:fit]))
        shown += fit
        if fit < len(rows[cat]):
            break
    out += f"\n_… {c.plural(total - shown, 'more item')} not shown; run `mlsync drift` for the full report._\n"
    return out.rstrip("\n") + "\n"


def _md_head(report: DriftReport) -> str:
    version = md._code(report.cluster_version, cell=False) if report.cluster_version else "unknown"
    out = [f"## mlsync drift for {md._code(report.stack, cell=False)}\n\n",
           f"Cluster version: {version} · {len(report.drift):,} drifted · {len(report.pending):,} pending · "
           f"{report.managed:,} managed\n\n"]
    if report.items:
        out.append(f"**{md._text(headline(report), 2_000)}** {NEXT_STEP}\n")
    else:
        out.append(f"**{CLEAN}**\n")
    if report.warnings:
        out.append("\n**Warnings**\n\n")
        for w in report.warnings[:20]:
            out.append(f"- {md._text(str(w), 500)}\n")
        if len(report.warnings) > 20:
            out.append(f"- … {c.plural(len(report.warnings) - 20, 'more warning')}\n")
    return "".join(out)


def _md_row(item: DriftItem) -> str:
    apply = ", ".join(item.actions) if item.actions else "leaves it alone"
    return f"| {item.kind.value} | {md._code(item.address)} | {md._text(item.summary)} | {md._text(apply)} |\n"


def _md_details(item: DriftItem) -> str:
    left, right = sides(item)
    lines = [f"# {left} → {right}"]
    for f in item.fields:
        b, n = _pair(f, _MAX_VALUE_CHARS)
        lines += [f"- {f.path}: {b}", f"+ {f.path}: {n}"]
    body = md._cap_body(lines)
    fence = md._fence_for(body)
    summary = f"<code>{md._html(' '.join(item.address.split()))}</code> {md._html(item.kind.value.replace('_', ' '))}"
    return f"<details><summary>{summary}</summary>\n\n{fence}diff\n{body}\n{fence}\n\n</details>\n"
