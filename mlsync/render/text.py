"""The human plan: Terraform-like text for a terminal or a CI log.

The output is built as lines of styled spans. Without colour the spans' text is joined as is; with
colour each span goes through a rich `Style`, so the coloured output is the plain output plus ANSI
codes and nothing else (no wrapping, no re-layout). Only `width` shapes the layout.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from typing import Optional

from mlsync.core.plan import KNOWN_AFTER_APPLY, Plan, ResourceChange
from mlsync.render import _common as c
from mlsync.core.secrets import MASK

Span = tuple[str, str]          # (text, rich style; "" for none)

_DIM = "dim"
_PLACEHOLDER = "dim italic"
_MARKER: list[Span] = [("  ", ""), ("# forces replacement", "bold red")]
_MARKER_TEXT = "".join(t for t, _ in _MARKER)
_SIGN_STYLES = {"+": "green", "-": "red", "~": "yellow", " ": "", c.ELLIPSIS: "dim"}


def render(plan: Plan, *, color: bool = False, width: int = 100) -> str:
    """The plan as text; with `color`, the same text with ANSI styling (see `mlsync.render.use_color`)."""
    width = max(40, int(width))
    return "\n".join(_Builder(plan, width, color).build()) + "\n"


_CODES: dict[str, tuple[str, str]] = {}   # rich style -> (ANSI codes before, after)


def _ansi(style: str) -> tuple[str, str]:
    codes = _CODES.get(style)
    if codes is None:
        from rich.color import ColorSystem
        from rich.style import Style

        marker = "\x00"
        rendered = Style.parse(style).render(marker, color_system=ColorSystem.STANDARD)
        pre, _, post = rendered.partition(marker)
        codes = _CODES[style] = (pre, post)
    return codes


def styled(text: str, style: str) -> str:
    """`text` with the ANSI codes of a rich style (e.g. "bold red") around it; as is without a style."""
    if not style or not text:
        return text
    pre, post = _ansi(style)
    return f"{pre}{text}{post}"


_find_unsafe = c.UNSAFE_SEARCH


def _is_safe(plain: str) -> bool:
    """No character `make_safe` escapes: every one of them is a control or format character, which
    `str.isprintable` (a C loop, about twice as fast as the search) refuses; a tab is let through."""
    return plain.isprintable() or _find_unsafe(plain) is None


@lru_cache(maxsize=1024)
def _wrap(part: str, avail: int) -> tuple[str, ...]:
    """`part` wrapped at `avail` columns (reasons repeat a lot in a large plan: computed once each)."""
    return tuple(textwrap.wrap(part, avail, break_long_words=False, break_on_hyphens=False)) or ("",)


@lru_cache(maxsize=256)
def _symbols(actions: tuple, symw: int) -> tuple[tuple[Span, ...], str]:
    """A change line's symbol spans (padded to `symw`, then a space) and its action phrase."""
    spans: list[Span] = [(s, "bold " + c.ACTION_STYLES[a]) for s, a in c.symbol_parts(actions)] or [("?", "")]
    pad = symw - sum(len(t) for t, _ in spans)
    return (*spans, (" " * pad + " ", "")), " " + c.action_phrase(actions)


@lru_cache(maxsize=256)
def _symbols_text(actions: tuple, symw: int) -> str:
    """The text of `_symbols`' spans."""
    return "".join(t for t, _ in _symbols(actions, symw)[0])


def _placeholder_style(text: str) -> str:
    return _PLACEHOLDER if text in (MASK, KNOWN_AFTER_APPLY, c.NOT_SET) else ""


class _Builder:
    def __init__(self, plan: Plan, width: int, color: bool) -> None:
        self.plan = plan
        self.width = width
        self.color = color
        self.lines: list[str] = []
        if not color:
            self.add = self._add_plain   # type: ignore[method-assign]

    def _line(self, plain: str) -> None:
        """A line without colour, given as its text: what `_add_plain` makes of spans with that text."""
        self.lines.append(plain if _is_safe(plain) else c.make_safe(plain))

    def _add_plain(self, *spans: Span) -> None:
        """`add` without colour: the spans' text (escaping works per character, so on the whole line)."""
        plain = "".join([t for t, _ in spans])
        self.lines.append(plain if _is_safe(plain) else c.make_safe(plain))

    def add(self, *spans: Span) -> None:
        """One output line from styled spans, with their ANSI codes (`_add_plain` takes its place
        without colour: the same text, no codes)."""
        if not _is_safe("".join([t for t, _ in spans])):
            spans = tuple((c.make_safe(t), s) for t, s in spans)
        parts: list[str] = []
        codes = _CODES   # the spans of a 10,000-change plan: ~350,000; no call per span
        for text, style in spans:
            if style and text:
                pre, post = codes[style] if style in codes else _ansi(style)
                parts += (pre, text, post)
            else:
                parts.append(text)
        self.lines.append("".join(parts))

    def blank(self) -> None:
        if self.lines and self.lines[-1]:
            self.lines.append("")

    def wrapped(self, indent: int, text: str, style: str, first: str = "", first_style: str = "") -> None:
        """Prose (reasons, warnings) wrapped at the width; `first` is a marker before the first line."""
        pad = " " * indent
        avail = max(20, self.width - indent - len(first))
        parts = text.split("\n")
        if len(parts) == 1 and len(text) <= avail:
            if not self.color:
                self._line(pad + first + text)
                return
            self.add((pad, ""), (first, first_style), (text, style))
            return
        hang = " " * len(first)
        first_line = True
        for part in parts:
            for seg in _wrap(part, avail):
                self.add((pad, ""), (first if first_line else hang, first_style if first_line else ""), (seg, style))
                first_line = False

    # ----------------------------------------------------------------- whole plan

    def build(self) -> list[str]:
        plan = self.plan
        self.add(("mlsync plan", "bold"))
        self.add(("  stack:           ", ""), (plan.stack, "bold"))
        self.add(("  cluster version: ", ""), (plan.cluster_version or "unknown", "" if plan.cluster_version else _DIM))
        pending = plan.pending
        drift = c.drifted(plan)
        if drift:
            self.blank()
            # a drifted no-op (versions mlsync does not manage in a managed group) is left alone
            self.add(("Changed outside mlsync", "bold magenta"),
                     (" (this plan brings these back in line with the file):" if all(not ch.is_noop for ch in drift)
                      else ":", ""))
            for ch in drift:
                self.wrapped(2, f"{ch.address}: {ch.reason}", "", "! ", "magenta")
        if pending:
            self._legend(pending)
            symw = max(len(c.change_symbol(ch.actions)) for ch in pending)
            kind: Optional[str] = None
            for ch in pending:
                if ch.kind != kind:
                    kind = ch.kind
                    self.blank()
                    self.add((c.SECTION_TITLES.get(kind, kind) + ":", "bold"))
                self.blank()
                self._change(ch, symw)
        if plan.warnings:
            self.blank()
            self.add(("Warnings:", "bold yellow"))
            for w in plan.warnings:
                self.wrapped(2, str(w), "", "! ", "yellow")
        self.blank()
        if pending:
            self._summary()
        else:
            self.add((c.NO_CHANGES, "bold green"))
        unchanged = c.unchanged_count(plan)
        if unchanged:
            self.add((c.plural(unchanged, "resource") + " unchanged.", _DIM))
        return self.lines

    def _legend(self, pending: tuple[ResourceChange, ...]) -> None:
        used = {a for ch in pending for a in ch.actions}
        self.blank()
        self.add(("Actions are shown with these symbols:", ""))
        for a in c.SUMMARY_ORDER:
            if a in used:
                self.add(("  ", ""), (a.symbol.ljust(4), c.ACTION_STYLES[a]), (c.LEGEND[a], ""))

    def _summary(self) -> None:
        counts = c.summary_counts(self.plan)
        spans: list[Span] = [("Plan: ", "bold")]
        for i, a in enumerate(c.SUMMARY_ORDER):
            if i:
                spans.append((", ", ""))
            n = counts[a]
            spans.append((f"{n} to {c.SUMMARY_WORDS[a]}", c.ACTION_STYLES[a] if n else ""))
        spans.append((".", ""))
        self.add(*spans)

    # ----------------------------------------------------------------- one change

    def _change(self, ch: ResourceChange, symw: int) -> None:
        sym_spans, phrase = _symbols(ch.actions, symw)
        if self.color:
            self.add(("  ", ""), *sym_spans, (str(ch.address), "bold"), (phrase, ""))
        else:
            self._line(f"  {_symbols_text(ch.actions, symw)}{ch.address}{phrase}")
        indent = 2 + symw + 1
        if ch.reason:
            self.wrapped(indent, ch.reason, _DIM, "# ", _DIM)
        self._id_line(ch, indent)
        artifact = c.artifact_text(ch)
        if artifact:
            self.add((" " * indent, ""), (artifact, ""))
        for fc in c.field_entries(ch):
            self._field(fc, indent)

    def _id_line(self, ch: ResourceChange, indent: int) -> None:
        text = c.id_text(ch)
        if not self.color:
            self._line(" " * indent + text)
            return
        spans: list[Span] = [(" " * indent, "")]
        # dim the "(known after apply)" parts
        rest = text
        while KNOWN_AFTER_APPLY in rest:
            before, _, rest = rest.partition(KNOWN_AFTER_APPLY)
            spans += [(before, ""), (KNOWN_AFTER_APPLY, _PLACEHOLDER)]
        spans.append((rest, ""))
        self.add(*spans)

    def _field(self, fc: c.Field, indent: int) -> None:
        before, after, path = fc.before, fc.after, fc.path
        sign = c.field_sign(fc)
        pad = " " * indent
        marker: list[Span] = _MARKER if fc.forces_replace else []

        if not fc.sensitive and not ((isinstance(before, str) and "\n" in before)
                                     or (isinstance(after, str) and "\n" in after)):
            one_a = c.scalar_text(after)
            if sign == "+":   # the common case (every field of a new object): one line when it fits
                if indent + 4 + len(path) + len(one_a) + (22 if marker else 0) <= self.width:
                    if not self.color:   # the same text as the spans below, without building them
                        self._line(f"{pad}+ {path}: {one_a}{_MARKER_TEXT if marker else ''}")
                        return
                    self.add((pad, ""), (sign, _SIGN_STYLES[sign]), (f" {path}: ", ""),
                             (one_a, _placeholder_style(one_a)), *marker)
                    return
            else:
                one_b = c.scalar_text(before)
                if indent + 7 + len(path) + len(one_b) + len(one_a) + (22 if marker else 0) <= self.width:
                    if not self.color:
                        self._line(f"{pad}{sign} {path}: {one_b} {c.ARROW} {one_a}{_MARKER_TEXT if marker else ''}")
                        return
                    self.add((pad, ""), (sign, _SIGN_STYLES[sign]), (f" {path}: ", ""),
                             *self._pair(sign, one_b, one_a), *marker)
                    return

        head: list[Span] = [(pad, ""), (sign, _SIGN_STYLES[sign]), (f" {path}:", "")]
        if fc.sensitive:
            b, a = c.sensitive_text(before), c.sensitive_text(after)
            self.add(*head, (" ", ""), *self._pair(sign, b, a), *marker)
            return

        if not (c.is_multiline(before) or c.is_multiline(after)):
            if c.is_scalar(fc.before) and c.is_scalar(fc.after):
                # the two values under each other, cut around their first difference
                limit = max(20, self.width - indent - 8)
                b, a = c.clip_pair(fc.before, fc.after, limit)
                self.add(*head, *marker)
                if sign == "+":
                    self.add((pad + "    ", ""), (a, _placeholder_style(a)))
                else:
                    self.add((pad + "    ", ""), (b, _placeholder_style(b)))
                    self.add((pad + "  ", ""), (c.ARROW + " ", _DIM), (a, _placeholder_style(a)))
                return
        # multi-line strings and large mappings/lists: a line diff under the path
        self._block(fc, head, marker, indent)

    @staticmethod
    def _pair(sign: str, b: str, a: str) -> list[Span]:
        if sign == "+":
            return [(a, _placeholder_style(a))]
        return [(b, _placeholder_style(b)), (" " + c.ARROW + " ", _DIM), (a, _placeholder_style(a))]

    def _block(self, fc: c.Field, head: list[Span], marker: list[Span], indent: int) -> None:
        self.add(*head, *marker)
        diff = c.block_diff(fc.before, fc.after, 60)
        pad = " " * (indent + 4)
        limit = max(20, self.width - indent - 6)
        for tag, text in diff:
            if len(text) > limit:
                text = text[:limit - 1] + c.ELLIPSIS
            if tag == c.ELLIPSIS:
                self.add((pad, ""), (text, _DIM))
            else:
                style = _SIGN_STYLES[tag]
                self.add((pad, ""), (tag, style), (" " + text, style))
