"""The plan as a pull-request comment (GitHub-flavoured Markdown).

Layout: a title, a summary table (action → count), warnings, the order of the changes as a Mermaid
diagram (mlsync/render/graph.py; collapsed when large), a table of changes (symbol, address,
actions, reason), then one collapsible `<details>` block per change with its field diff in a
```diff block. The whole comment stays under `max_chars` (60,000 by default; GitHub refuses
comments over 65,536): when the plan is bigger, detail blocks are dropped from the end first, then
table rows, and the comment says what it left out.
"""

from __future__ import annotations

import html
from typing import Iterator

from mlsync.core.plan import Plan, ResourceChange
from mlsync.render import _common as c

MAX_CHARS = 60_000
_MAX_DETAIL_CHARS = 6_000      # one change's <details> block at most
_MAX_CELL_CHARS = 300          # one table cell at most
_MAX_VALUE_CHARS = 200         # one value in a diff line at most
_MAX_INLINE_STRUCTURE = 80    # a mapping/list longer than this is shown one leaf per line
_MAX_BLOCK_LINES = 60          # lines of a multi-line value diff at most
_MAX_WARNINGS = 20
_MAX_WARNING_CHARS = 500
_FULL_PLAN = "run `mlsync plan` for the full plan"


def render(plan: Plan, *, color: bool = False, width: int = 100, max_chars: int = MAX_CHARS) -> str:
    """The plan as Markdown, never longer than `max_chars` characters (`color`/`width` unused)."""
    return _render(plan, max_chars).rstrip("\n") + "\n"


def _render(plan: Plan, max_chars: int) -> str:
    pending = plan.pending
    head = _safe(_head(plan, pending, _MAX_WARNINGS))
    if len(head) > max_chars // 3:
        head = _safe(_head(plan, pending, 0))   # a tiny budget: count the warnings instead of listing them
    if not pending:
        return head
    head += _diagram(plan, max_chars - len(head))
    table_head = "### Changes\n\n|  | Address | Actions | Reason |\n|:--|:--|:--|:--|\n"
    details_head = "\n### Details\n\n"
    n = len(pending)
    # Rows and detail blocks are made lazily, only as far as they can fit: a 10,000-change plan
    # costs what the part that is shown costs.
    rows = _take((_safe(_row(ch)) for ch in pending), max_chars - len(head) - len(table_head))
    rows_len = sum(map(len, rows))
    base = len(head) + len(table_head) + rows_len
    note_room = max(len(_details_note(n, n)), len(_details_note(n, n + 1)))

    if len(rows) == n and base + note_room <= max_chars:
        details = _take((_safe(_details(ch)) for ch in pending), max_chars - base - len(details_head))
        if len(details) == n and base + len(details_head) + sum(map(len, details)) <= max_chars:
            return head + table_head + "".join(rows) + details_head + "".join(details)
        # 1. keep every row, drop detail blocks from the end
        kept = _fit(details, max_chars - base - len(details_head) - note_room)
        out = head + table_head + "".join(rows)
        if kept:
            out += details_head + "".join(details[:kept])
        return out + _details_note(n - kept, n)

    # 2. no detail blocks at all; drop table rows from the end
    shown = _fit(rows, max_chars - len(head) - len(table_head) - len(_rows_note(n)))
    return head + table_head + "".join(rows[:shown]) + _rows_note(n - shown)


def _safe(part: str) -> str:
    """No control character or bidi override from the cluster reaches the comment (measured after)."""
    return c.make_safe(part, keep_newlines=True)


def _take(parts: Iterator[str], room: int) -> list[str]:
    """Leading parts while they fit in `room`, plus the first one that does not (if any)."""
    out, used = [], 0
    for p in parts:
        out.append(p)
        used += len(p)
        if used > room:
            break
    return out


def _fit(parts: list[str], room: int) -> int:
    """How many leading `parts` fit in `room` characters."""
    used = 0
    for i, p in enumerate(parts):
        used += len(p)
        if used > room:
            return i
    return len(parts)


def _details_note(missing: int, total: int) -> str:
    if missing == total:
        return f"\n_Field details are left out to keep this comment short; {_FULL_PLAN}._\n"
    return (f"\n_… details of {c.plural(missing, 'more change')} not shown; {_FULL_PLAN}._\n")


def _rows_note(missing: int) -> str:
    return f"\n_… {c.plural(missing, 'more change')} not shown; {_FULL_PLAN}._\n"


# --------------------------------------------------------------------------- the diagram


_DIAGRAM_OPEN_NODES = 12       # a diagram with more nodes is collapsed in a <details> block
_MAX_DIAGRAM_NODES = 150       # more than this is left out (GitHub would draw an unreadable picture)


def _diagram(plan: Plan, room: int) -> str:
    """The order of the changes as a Mermaid flowchart (mlsync/render/graph.py), collapsed when
    large; left out, with a note, when it has too many nodes or would take more than a quarter of
    the room left (the table of changes comes first)."""
    from mlsync.render import graph

    def note(n: int) -> str:
        text = f"_The order of the changes is not drawn here ({c.plural(n, 'resource')}); `mlsync graph` draws it._\n\n"
        return text if len(text) <= room // 4 else ""

    if len(plan.pending) > _MAX_DIAGRAM_NODES:      # a graph has a node per pending change at least:
        return note(len(plan.pending))              # a 10,000-change plan costs nothing here
    g = graph.build(plan)
    n = len(g.nodes)
    if n > _MAX_DIAGRAM_NODES:
        return note(n)
    body = graph.mermaid(plan, graph=g)
    fence = _fence_for(body)
    block = f"{fence}mermaid\n{body}{fence}\n\n"
    if n > _DIAGRAM_OPEN_NODES:
        block = (f"<details><summary>Order of changes ({c.plural(n, 'resource')}, dependencies first)</summary>"
                 f"\n\n{block}</details>\n\n")
    block = _safe(block)
    return block if len(block) <= room // 4 else note(n)


# --------------------------------------------------------------------------- escaping


def _text(s: str, limit: int = _MAX_CELL_CHARS) -> str:
    """Plain text for a table cell or a paragraph: no Markdown or HTML takes effect, one line."""
    s = " ".join(str(s).split())
    if len(s) > limit:
        s = s[:limit - 1] + c.ELLIPSIS
    s = html.escape(s, quote=False)
    for ch in "\\`*_[]|~#":
        s = s.replace(ch, "\\" + ch)
    return s


def _code(s: str, *, cell: bool = True) -> str:
    """An inline code span that survives backticks in `s` (and pipes in a GFM table cell: `\\|`)."""
    s = " ".join(str(s).split())
    if cell:
        s = s.replace("|", "\\|")
    fence = "`"
    while fence in s:
        fence += "`"
    pad = " " if s.startswith("`") or s.endswith("`") or fence != "`" else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def _html(s: str) -> str:
    return html.escape(s, quote=False)


def _fence_for(body: str) -> str:
    fence = "```"
    while fence in body:
        fence += "`"
    return fence


# --------------------------------------------------------------------------- head


def _head(plan: Plan, pending: tuple[ResourceChange, ...], max_warnings: int) -> str:
    out = [f"## mlsync plan for {_code(plan.stack, cell=False)}\n\n"]
    version = _code(plan.cluster_version, cell=False) if plan.cluster_version else "unknown"
    unchanged = c.unchanged_count(plan)
    out.append(f"Cluster version: {version} · {c.plural(len(pending), 'change')} · {unchanged:,} unchanged\n\n")
    if not pending:
        out.append("**No changes.** The cluster matches the file.\n")
    else:
        counts = c.summary_counts(plan)
        out.append("|  | Action | Count |\n|:--|:--|--:|\n")
        for a in c.SUMMARY_ORDER:
            out.append(f"| {_code(a.symbol)} | {c.SUMMARY_WORDS[a]} | {counts[a]:,} |\n")
        out.append(f"|  | unchanged | {unchanged:,} |\n")
    drift = c.drifted(plan)
    left_alone = [d for d in drift if d.is_noop]   # versions mlsync does not manage: no row below
    if drift and not left_alone:
        out.append(f"\n**Drift:** {c.plural(len(drift), 'resource was', 'resources were')} changed outside "
                   "mlsync; this plan brings them back in line with the file (marked *drift* below).\n")
    elif drift:
        out.append(f"\n**Drift:** {c.plural(len(drift), 'resource was', 'resources were')} changed outside "
                   "mlsync. This plan brings managed objects back in line with the file (marked *drift* below) "
                   "and leaves these alone:\n\n")
        for ch in left_alone[:max_warnings]:
            out.append(f"- {_code(str(ch.address), cell=False)}: {_text(ch.reason, _MAX_WARNING_CHARS)}\n")
        if len(left_alone) > max_warnings:
            out.append(f"- … {c.plural(len(left_alone) - max_warnings, 'more')}; {_FULL_PLAN}\n")
    if plan.warnings:
        out.append("\n**Warnings**\n\n")
        for w in plan.warnings[:max_warnings]:
            out.append(f"- {_text(str(w), _MAX_WARNING_CHARS)}\n")
        more = len(plan.warnings) - max_warnings
        if more > 0:
            out.append(f"- … {c.plural(more, 'more warning' if max_warnings else 'warning')}; {_FULL_PLAN}\n")
    out.append("\n")
    return "".join(out)


# --------------------------------------------------------------------------- rows and details


def _row(ch: ResourceChange) -> str:
    reason = _text(ch.reason)
    if ch.drift:
        reason = "*drift:* " + reason
    return (f"| {_code(c.change_symbol(ch.actions))} | {_code(str(ch.address))} | "
            f"{c.action_words(ch.actions)} | {reason} |\n")


def _details(ch: ResourceChange) -> str:
    summary = (f"<code>{_html(c.change_symbol(ch.actions))} {_html(' '.join(str(ch.address).split()))}</code> "
               f"{_html(c.action_phrase(ch.actions))}" + (" (changed outside mlsync)" if ch.drift else ""))
    lines = [f"# {_one_line(ch.reason)}", f"# {c.id_text(ch)}"]
    if ch.drift:
        lines.insert(0, "# changed outside mlsync")
    artifact = c.artifact_text(ch)
    if artifact:
        lines.append(f"# {_one_line(artifact)}")
    for fc in c.field_entries(ch):
        lines.extend(_field_lines(fc))
    body = _cap_body(lines)
    fence = _fence_for(body)
    return f"<details><summary>{summary}</summary>\n\n{fence}diff\n{body}\n{fence}\n\n</details>\n"


def _one_line(s: str) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= _MAX_CELL_CHARS else s[:_MAX_CELL_CHARS - 1] + c.ELLIPSIS


def _cap_body(lines: list[str]) -> str:
    out, used = [], 0
    for i, line in enumerate(lines):
        if used + len(line) + 1 > _MAX_DETAIL_CHARS:
            out.append(f"# … {c.plural(len(lines) - i, 'more line')}; {_FULL_PLAN}")
            break
        out.append(line)
        used += len(line) + 1
    return "\n".join(out)


def _field_lines(fc: c.Field) -> list[str]:
    marker = "  # forces replacement" if fc.forces_replace else ""
    sign = c.field_sign(fc)
    if fc.sensitive:
        b, a = c.sensitive_text(fc.before), c.sensitive_text(fc.after)
        return _pair_lines(fc.path, sign, b, a, marker, "  # changed" if sign == "~" else "")
    multiline = c.is_multiline(fc.before) or c.is_multiline(fc.after)
    big_structure = not (c.is_scalar(fc.before) and c.is_scalar(fc.after)) and max(
        len(c.to_json_text(fc.before)), len(c.to_json_text(fc.after))) > _MAX_INLINE_STRUCTURE
    if multiline or big_structure:
        out = [f"@@ {fc.path} @@{marker}" if sign == "~" else f"{sign} {fc.path}:{marker}"]
        diff = c.block_diff(fc.before, fc.after, _MAX_BLOCK_LINES)
        for tag, text in diff:
            if len(text) > _MAX_VALUE_CHARS:
                text = text[:_MAX_VALUE_CHARS - 1] + c.ELLIPSIS
            out.append(f"#     {text}" if tag == c.ELLIPSIS else f"{tag}     {text}")
        return out
    b, a = c.clip_pair(fc.before, fc.after, _MAX_VALUE_CHARS)
    return _pair_lines(fc.path, sign, b, a, marker, "")


def _pair_lines(path: str, sign: str, b: str, a: str, marker: str, note: str) -> list[str]:
    out: list[str] = []
    if sign != "+":
        out.append(f"- {path}: {b}" + (marker if sign == "-" else ""))
    if sign != "-":
        out.append(f"+ {path}: {a}{marker}{note}")
    return out
