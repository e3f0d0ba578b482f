"""Reading desired-state files: YAML with positions, overlays, interpolation.

The result is a plain tree (dicts, lists, str/int/float/bool/None) for the typed model, plus a
`SourceMap` that tells, for every path tuple such as ('models', 0, 'model_config',
'embedding_dimension'), the file, line and column where it was written (for a mapping entry: its
key; for a list item: the item).

Steps, per file: size check, UTF-8 decode, compose with ruamel.yaml (nodes keep their marks),
check the node graph (alias expansion bound, nesting depth), build a located tree (duplicate keys,
merge keys `<<`, scalar resolution under the YAML 1.2 core schema, `${env:…}`/`${file:…}`
interpolation of string values). Then the files' trees merge in order (overlays) and the merged
tree is emitted with its source map. Every problem is collected; nothing stops at the first one,
except that a file that is not YAML at all contributes nothing else.
"""

from __future__ import annotations

import os
import re
import stat
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from mlsync.core.errors import Problem

Path = tuple  # a path tuple: str keys and int list indices
Pos = tuple  # (display file name, 1-based line, 1-based column)

MAX_FILE_BYTES = 10 * 1024 * 1024
#: Aliases may add at most this many nodes to a document ("billion laughs" protection).
MAX_ALIAS_EXPANSION = 100_000
MAX_DEPTH = 64
#: The C composer (ruamel.yaml.clib) recurses on the C stack and crashes the process (SIGSEGV) on a
#: document nested some 20,000 levels deep, which no exception handler can catch. A file whose text
#: could nest deeper than this (a sound bound computed from the text) has its depth checked on the
#: parser's event stream (iterative, no recursion) before it is composed.
SAFE_COMPOSE_DEPTH = 5000
#: `${file:…}` reads at most this many bytes (a secret or a short value, not a data file).
MAX_INTERPOLATED_FILE_BYTES = 1024 * 1024

_TAG = "tag:yaml.org,2002:"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Line breaks other than \n that libyaml also counts (rewritten to \n before _LINE_LEAD is applied).
_OTHER_BREAKS = re.compile("[\r\x85\u2028\u2029]")
#: A line break, then the line up to its first content: indentation, then any run of compact block
#: indicators (`- `, `? `, `: `), document markers and node properties (`&anchor`, `!tag`, `*alias`).
_LINE_LEAD = re.compile(r"\n[ \t]*(?:(?:---|\.\.\.|[-?:]|[&!*][^ \t\n]*)(?:[ \t]+|(?=\n)|\Z))*")


# --- located tree ------------------------------------------------------------------------------

class LMap:
    __slots__ = ("entries", "pos")

    def __init__(self, entries: dict, pos: Pos):
        self.entries = entries  # key -> (key pos, node)
        self.pos = pos


class LSeq:
    __slots__ = ("items", "pos")

    def __init__(self, items: list, pos: Pos):
        self.items = items
        self.pos = pos


class LScalar:
    __slots__ = ("value", "pos", "text", "sensitive")

    def __init__(self, value: Any, pos: Pos, text: Optional[str] = None, sensitive: bool = False):
        self.value = value
        self.pos = pos
        self.text = text  # source text of a number (so a version label `1.10` stays "1.10")
        self.sensitive = sensitive  # holds an `${env:…}`/`${file:…}` substitution (not `${env-public:…}`)


LNode = Union[LMap, LSeq, LScalar]


class SourceMap:
    """Where each path of the merged tree was written."""

    def __init__(self) -> None:
        self.keys: dict[Path, Pos] = {}
        self.values: dict[Path, Pos] = {}
        # string values that hold an `${env:…}`/`${file:…}` substitution: masked in every output and
        # kept only as keyed fingerprints (mlsync/input/flatten.py wraps them in Secret)
        self.sensitive: set[str] = set()

    def locate(self, path: Path) -> Pos:
        """The key of a mapping entry, else the value; for a path not in the file, its nearest ancestor."""
        path = tuple(path)
        while True:
            pos = self.keys.get(path) or self.values.get(path)
            if pos is not None or not path:
                return pos or ("<input>", 1, 1)
            path = path[:-1]

    def locate_value(self, path: Path) -> Pos:
        path = tuple(path)
        return self.values.get(path) or self.locate(path)

    def has(self, path: Path) -> bool:
        return tuple(path) in self.values


@dataclass
class ParsedFile:
    display: str
    absolute: str
    root: Optional[LMap]


@dataclass
class LoadResult:
    tree: Optional[dict]
    source_map: SourceMap
    files: list[ParsedFile] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False  # some file could not be read as YAML: the tree is incomplete or absent


# --- reading files -----------------------------------------------------------------------------

def expand_paths(paths: list[str]) -> tuple[list[str], list[Problem]]:
    """`-f` arguments to files: a directory means its *.yaml/*.yml files in name order."""
    files: list[str] = []
    problems: list[Problem] = []
    for arg in paths:
        if os.path.isdir(arg):
            names = sorted(n for n in os.listdir(arg)
                           if n.endswith((".yaml", ".yml")) and os.path.isfile(os.path.join(arg, n)))
            if not names:
                problems.append(Problem(arg, 1, 1, "", "directory has no *.yaml or *.yml files"))
            files.extend(os.path.join(arg, n) for n in names)
        elif os.path.isfile(arg):
            files.append(arg)
        elif os.path.exists(arg):
            problems.append(Problem(arg, 1, 1, "", "not a regular file or directory"))
        else:
            problems.append(Problem(arg, 1, 1, "", "no such file or directory"))
    return files, problems


def load_tree(paths: list[str], env: Optional[Mapping[str, str]] = None) -> LoadResult:
    """Read, interpolate and merge the files; return the plain tree, its source map and all problems."""
    env = os.environ if env is None else env
    files, problems = expand_paths(paths)
    if len(files) == 1 and not problems:
        fast = _load_json(files[0], env)
        if fast is not None:
            return fast
    result = LoadResult(tree=None, source_map=SourceMap(), problems=problems, fatal=bool(problems))
    for name in files:
        parsed, file_problems, fatal = _parse_file(name, env)
        result.files.append(parsed)
        result.problems.extend(file_problems)
        result.fatal = result.fatal or fatal
    if result.fatal:
        return result
    merged: Optional[LNode] = None
    for parsed in result.files:
        root = parsed.root if parsed.root is not None else LMap({}, (parsed.display, 1, 1))
        merged = root if merged is None else _merge(merged, root, "root")
    if merged is None:
        merged = LMap({}, ("<input>", 1, 1))
    dirs = {p.display: os.path.dirname(p.absolute) for p in result.files}
    result.tree = _emit(merged, (), result.source_map, dirs)
    return result


def _read_text(name: str) -> tuple[Optional[str], list[Problem]]:
    """The file's text (size-checked, UTF-8), or None and the problem that stopped it."""
    try:
        size = os.path.getsize(name)
        if size > MAX_FILE_BYTES:
            return None, [Problem(name, 1, 1, "", f"file is too large ({size} bytes; the limit is "
                                                  f"{MAX_FILE_BYTES} bytes per file)")]
        with open(name, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return None, [Problem(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [Problem(name, line, col, "", "file is not valid UTF-8 text")]


def _parse_file(name: str, env: Mapping[str, str], text: Optional[str] = None
                ) -> tuple[ParsedFile, list[Problem], bool]:
    absolute = os.path.abspath(name)
    parsed = ParsedFile(name, absolute, None)
    if text is None:
        text, problems = _read_text(name)
        if text is None:
            return parsed, problems, True
    builder = _Builder(name, absolute, text, env)
    root = builder.build()
    parsed.root = root
    return parsed, builder.problems, builder.fatal


# --- YAML to located tree ------------------------------------------------------------------------

_YAML_CLASSES: dict = {}


def _yaml():
    """A ruamel.yaml loader for composing nodes (YAML 1.2 core schema, marks kept).

    typ="safe" uses the C parser when ruamel.yaml.clib is installed (several times faster) and the
    pure-Python one otherwise. The resolver looks up its per-version tables through a slow property
    on every scalar; the subclass caches them for the one document a loader reads.
    """
    from ruamel.yaml import YAML

    if "resolver" not in _YAML_CLASSES:
        from ruamel.yaml.nodes import ScalarNode
        from ruamel.yaml.resolver import VersionedResolver

        class CachingResolver(VersionedResolver):
            """Also remembers the tag of each plain scalar text: a file repeats most of its scalars
            (keys, enum values, booleans), and resolving one tries a list of regular expressions."""

            _table = None
            _memo: Optional[dict] = None

            @property
            def versioned_resolver(self) -> Any:
                if self._table is None:
                    self._table = VersionedResolver.versioned_resolver.fget(self)
                return self._table

            def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
                if kind is not ScalarNode or self.yaml_path_resolvers:
                    return VersionedResolver.resolve(self, kind, value, implicit)
                memo = self._memo
                if memo is None:
                    memo = self._memo = {}
                key = (value, implicit[0], implicit[1])
                tag = memo.get(key)
                if tag is None:
                    tag = memo[key] = VersionedResolver.resolve(self, kind, value, implicit)
                return tag

        _YAML_CLASSES["resolver"] = CachingResolver
    yaml = YAML(typ="safe")
    yaml.Resolver = _YAML_CLASSES["resolver"]
    return yaml


def _tag(node: Any) -> str:
    ctag = node.ctag
    if ctag.handle is None and isinstance(ctag.suffix, str) and "%" not in ctag.suffix:
        return ctag.suffix  # an implicitly resolved tag: the suffix is the whole tag
    return str(ctag)


class _Builder:
    def __init__(self, display: str, absolute: str, text: str, env: Mapping[str, str]):
        self.display = display
        self.absolute = absolute
        self.dir = os.path.dirname(absolute)
        self.text = text
        self.env = env
        self.problems: list[Problem] = []
        self.fatal = False
        self._lines: Optional[list[str]] = None
        self._sensitive = False  # the scalar being interpolated took a non-public substitution

    # -- helpers
    def pos(self, mark: Any) -> Pos:
        return (self.display, mark.line + 1, mark.column + 1)

    def problem(self, pos: Pos, message: str, path: str = "") -> None:
        self.problems.append(Problem(pos[0], pos[1], pos[2], path, message))

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    # -- entry
    def build(self) -> Optional[LMap]:
        from ruamel.yaml.error import MarkedYAMLError, YAMLError
        from ruamel.yaml.reader import ReaderError

        try:
            if not self._check_depth_before_compose():
                self.fatal = True
                return None
            node = _yaml().compose(self.text)
        except MarkedYAMLError as exc:
            self._syntax_problem(exc)
            self.fatal = True
            return None
        except RecursionError:
            self.problem((self.display, 1, 1), f"document is nested too deeply (more than {MAX_DEPTH} levels)")
            self.fatal = True
            return None
        except ReaderError as exc:
            self._reader_problem(exc)
            self.fatal = True
            return None
        except YAMLError as exc:  # pragma: no cover - other unmarked errors are rare
            self.problem((self.display, 1, 1), "YAML error: " + " ".join(str(exc).split()))
            self.fatal = True
            return None
        if node is None:  # empty file or comments only: an empty overlay
            return None
        # Without anchors, aliases or merge keys the graph is a tree as large as the text: its one
        # check left, the nesting depth, is made while building (in the same order, at the same node).
        if any(c in self.text for c in ("&", "*", "<<")) and not self._check_graph(node):
            self.fatal = True
            return None
        reported = len(self.problems)
        try:
            root = self._node(node, 0)
        except _TooDeep as exc:
            del self.problems[reported:]  # as when _check_graph stops the file before it is built
            self.problem(self.pos(exc.node.start_mark), f"document is nested too deeply (more than {MAX_DEPTH} levels)")
            self.fatal = True
            return None
        if not isinstance(root, LMap):
            kind = "a list" if isinstance(root, LSeq) else "a single value"
            self.problem(root.pos, f"the top level must be a mapping (version, stack, connectors, model_groups, "
                                   f"models), not {kind}")
            self.fatal = True
            return None
        return root

    def _check_depth_before_compose(self) -> bool:
        """Refuse a document nested more than MAX_DEPTH levels before the (recursive) composer sees it.

        First a sound bound from the text alone, in a few milliseconds: a block collection nested in
        another starts at a greater column, except a sequence that is a mapping's value (same column),
        so block nesting is at most 2 * (the largest column where a line's content starts) + 1; a flow
        collection needs a `[` or `{` and holds at most two levels per bracket (`[a: [b: ...]]`). A
        normal file stays far below SAFE_COMPOSE_DEPTH and is composed at once. Past it, the exact
        depth is measured on the parser's event stream (libyaml's parser is a loop, not a recursion),
        which stops at the first node deeper than MAX_DEPTH and reports where it is.
        """
        text = self.text
        brackets = text.count("[") + text.count("{")
        if 2 * brackets < SAFE_COMPOSE_DEPTH:
            lines = _OTHER_BREAKS.sub("\n", text) if _OTHER_BREAKS.search(text) else text
            widest = max(map(len, _LINE_LEAD.findall("\n" + lines))) - 1
            if 2 * brackets + 2 * widest + 3 <= SAFE_COMPOSE_DEPTH:
                return True
        from ruamel.yaml.error import YAMLError
        from ruamel.yaml.events import (AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent)

        depth = 0
        try:
            for event in _yaml().parse(text):
                if isinstance(event, (CollectionStartEvent, ScalarEvent, AliasEvent)) and depth > MAX_DEPTH:
                    self.problem(self.pos(event.start_mark),
                                 f"document is nested too deeply (more than {MAX_DEPTH} levels)")
                    return False
                if isinstance(event, CollectionStartEvent):
                    depth += 1
                elif isinstance(event, CollectionEndEvent):
                    depth -= 1
        except YAMLError:
            pass  # not YAML; composing it reports the error, and stops there, at a depth already checked
        return True

    def _reader_problem(self, exc: Any) -> None:
        position = getattr(exc, "position", 0) or 0
        line = self.text.count("\n", 0, position) + 1
        col = position - (self.text.rfind("\n", 0, position) + 1) + 1
        char = getattr(exc, "character", None)
        code = f"U+{char:04X}" if isinstance(char, int) else (f"U+{ord(char):04X}" if isinstance(char, str) and
                                                              len(char) == 1 else "a control character")
        self.problem((self.display, line, col), f"control character {code} is not allowed in YAML text "
                                                f"(write it as an escape in a double-quoted string)")

    def _syntax_problem(self, exc: Any) -> None:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        problem = (getattr(exc, "problem", None) or str(exc)).strip()
        context = (getattr(exc, "context", None) or "").strip()
        source_line = self.lines[line] if line < len(self.lines) else ""
        indent = source_line[: len(source_line) - len(source_line.lstrip(" \t"))]
        if "\t" in indent or (col < len(source_line) and source_line[col] == "\t") or "tab character" in problem:
            tab_col = source_line.find("\t") if "\t" in source_line else col
            self.problem((self.display, line + 1, tab_col + 1),
                         "tab character in indentation: YAML indents with spaces only")
            return
        if "another document" in problem:
            self.problem((self.display, line + 1, col + 1),
                         "a second YAML document starts here: one document per file (use several -f files instead)")
            return
        if "undefined alias" in problem or "found undefined alias" in context:
            m = re.match(r"\*([^\s,\[\]{}]+)", source_line[col:])
            name = f" '*{m.group(1)}'" if m else ""
            self.problem((self.display, line + 1, col + 1),
                         f"undefined alias{name}: no anchor of that name earlier in the file")
            return
        message = "YAML syntax error: " + " ".join(problem.split())
        cmark = getattr(exc, "context_mark", None)
        if context and cmark is not None and (cmark.line, cmark.column) != (line, col):
            message += f" ({context} at line {cmark.line + 1})"
        self.problem((self.display, line + 1, col + 1), message)

    def _check_graph(self, root: Any) -> bool:
        """Bound alias expansion and nesting depth before anything is expanded.

        The composed graph shares the node of an anchor among its aliases, so its expanded size is
        counted with memoisation, in time proportional to the file, however large the expansion.
        """
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        sizes: dict[int, int] = {}
        active: set[int] = set()
        unique = 0

        def size(node: Any, depth: int) -> int:
            nonlocal unique
            key = id(node)
            if key in sizes:
                return sizes[key]
            if key in active:
                raise _Recursive(node)
            if depth > MAX_DEPTH:
                raise _TooDeep(node)
            unique += 1
            total = 1
            if isinstance(node, (MappingNode, SequenceNode)):
                active.add(key)
                children = node.value
                if isinstance(node, MappingNode):
                    for k, v in children:
                        total += size(k, depth + 1) + size(v, depth + 1)
                else:
                    for v in children:
                        total += size(v, depth + 1)
                active.discard(key)
            sizes[key] = total
            return total

        try:
            total = size(root, 0)
        except _Recursive as exc:
            self.problem(self.pos(exc.node.start_mark), "recursive alias: an anchor is used inside itself")
            return False
        except _TooDeep as exc:
            self.problem(self.pos(exc.node.start_mark), f"document is nested too deeply (more than {MAX_DEPTH} levels)")
            return False
        except RecursionError:
            self.problem((self.display, 1, 1), f"document is nested too deeply (more than {MAX_DEPTH} levels)")
            return False
        if total - unique > MAX_ALIAS_EXPANSION:
            self.problem((self.display, 1, 1),
                         f"aliases expand this document to {total} nodes from {unique}; the limit is "
                         f"{MAX_ALIAS_EXPANSION} nodes added by aliases (an alias bomb?)")
            return False
        return True

    def _node(self, node: Any, depth: int) -> LNode:
        from ruamel.yaml.nodes import MappingNode, SequenceNode

        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        pos = self.pos(node.start_mark)
        tag = _tag(node)
        if isinstance(node, MappingNode):
            if tag not in (_TAG + "map",):
                self._unsupported_tag(pos, tag)
            return self._mapping(node, pos, depth)
        if isinstance(node, SequenceNode):
            if tag not in (_TAG + "seq",):
                self._unsupported_tag(pos, tag)
            return LSeq([self._node(v, depth + 1) for v in node.value], pos)
        return self._scalar(node, pos, tag)

    def _unsupported_tag(self, pos: Pos, tag: str) -> None:
        short = tag.replace(_TAG, "!!")
        self.problem(pos, f"unsupported YAML tag {short} (plain mappings, lists, strings, numbers, booleans and null only)")

    def _mapping(self, node: Any, pos: Pos, depth: int) -> LMap:
        entries: dict[str, tuple[Pos, LNode]] = {}
        first_at: dict[str, Pos] = {}
        merges: list[Any] = []
        for knode, vnode in node.value:
            ktag = _tag(knode)
            kpos = self.pos(knode.start_mark)
            if ktag == _TAG + "merge":
                merges.append(vnode)
                continue
            if depth >= MAX_DEPTH:  # the key is a node one level down too (as _check_graph counts)
                raise _TooDeep(knode)
            if not isinstance(knode.value, str):
                _check_depth(knode, depth + 1)
                self.problem(kpos, "mapping keys must be plain strings, not a mapping or a list")
                continue
            key = knode.value
            if key in first_at:
                where = first_at[key]
                self.problem(kpos, f"duplicate key '{key}' (first defined at line {where[1]}); "
                                   f"YAML keys must be unique within a mapping")
                continue
            first_at[key] = kpos
            entries[key] = (kpos, self._node(vnode, depth + 1))
        for mnode in merges:  # `<<: *base` or `<<: [*a, *b]`: keys not given explicitly, earlier wins
            from ruamel.yaml.nodes import MappingNode, SequenceNode

            sources = mnode.value if isinstance(mnode, SequenceNode) else [mnode]
            for src in sources:
                if not isinstance(src, MappingNode):
                    self.problem(self.pos(src.start_mark), "a merge key (<<) takes a mapping or a list of mappings")
                    continue
                built = self._mapping(src, self.pos(src.start_mark), depth + 1)
                for key, entry in built.entries.items():
                    if key not in entries:
                        entries[key] = entry
        return LMap(entries, pos)

    def _scalar(self, node: Any, pos: Pos, tag: str) -> LScalar:
        text = node.value
        if tag == _TAG + "str":
            self._sensitive = False
            value = self._interpolate(node, text, pos)
            return LScalar(value, pos, sensitive=self._sensitive)
        if tag == _TAG + "null":
            return LScalar(None, pos)
        if tag == _TAG + "bool":
            return LScalar(text.lower() == "true", pos)
        if tag == _TAG + "int":
            value = _to_int(text)
            return LScalar(value if value is not None else text, pos, text)
        if tag == _TAG + "float":
            value = _to_float(text)
            if value is None:
                self.problem(pos, f"{text} is not a finite number (infinity and NaN cannot be sent to the server)")
                return LScalar(text, pos)
            return LScalar(value, pos, text)
        if tag == _TAG + "timestamp":  # a date-like plain scalar is just text here
            return LScalar(text, pos)
        self._unsupported_tag(pos, tag)
        return LScalar(text, pos)

    # -- interpolation
    def _interpolate(self, node: Any, text: str, pos: Pos) -> str:
        if "${" not in text:
            return text
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            j = text.find("$", i)
            if j < 0:
                out.append(text[i:])
                break
            out.append(text[i:j])
            if text.startswith("$${", j):
                out.append("${")
                i = j + 3
                continue
            if not text.startswith("${", j):
                out.append("$")
                i = j + 1
                continue
            end = text.find("}", j + 2)
            if text.startswith(("${env:", "${env-public:", "${file:"), j):
                expr = text[j:end + 1] if end >= 0 else text[j:]
                where = self._find(node, expr, pos)
                if end < 0:
                    self.problem(where, f"unterminated {expr[:6]}...: missing '}}'")
                    out.append(text[j:])
                    break
                out.append(self._substitute(expr, where))
                i = end + 1
                continue
            # someone else's placeholder (${parameters.x}, ${credential.x}, ...): passed through untouched
            if end < 0:
                out.append(text[j:])
                break
            out.append(text[j:end + 1])
            i = end + 1
        return "".join(out)

    def _substitute(self, expr: str, where: Pos) -> str:
        body = expr[2:-1]
        public = body.startswith("env-public:")
        if public or body.startswith("env:"):
            spec = body[len("env-public:"):] if public else body[4:]
            self._sensitive = self._sensitive or not public
            name, sep, default = spec.partition(":-")
            if not _ENV_NAME.match(name):
                self.problem(where, f"invalid environment variable name {name!r} in {expr} "
                                    f"(letters, digits and _, not starting with a digit)")
                return expr
            value = self.env.get(name)
            if sep:
                return value if value else default
            if value is None:
                self.problem(where, f"environment variable {name} is not set (referenced as {expr}; "
                                    f"use ${{env:{name}:-default}} for a default)")
                return expr
            return value
        rel = body[5:]
        self._sensitive = True
        if not rel:
            self.problem(where, "empty file name in ${file:}")
            return expr
        raw = self._read_referenced(rel, expr, where)
        if raw is None:
            return expr
        try:
            content = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self.problem(where, f"file {rel} referenced by {expr} is not UTF-8 text")
            return expr
        return content.rstrip("\r\n")  # `echo secret > file` leaves a newline that is not part of the value

    def _read_referenced(self, rel: str, expr: str, where: Pos) -> Optional[bytes]:
        """The bytes of a `${file:…}` file, or None after reporting why it may not be read.

        Only a regular file under the directory of the file that references it (symbolic links
        resolved) and at most MAX_INTERPOLATED_FILE_BYTES long: `${file:/proc/self/environ}`,
        `${file:../../etc/shadow}`, `/dev/zero` and a FIFO are refused, never read.
        """
        allowed = f"(allowed: a regular file of at most {MAX_INTERPOLATED_FILE_BYTES} bytes under " \
                  f"{self.dir or '.'}, the directory of {self.display}, named relative to it)"
        if os.path.isabs(rel) or rel.startswith("~"):
            self.problem(where, f"{expr}: an absolute path is not allowed {allowed}")
            return None
        base = os.path.realpath(self.dir)
        target = os.path.realpath(os.path.join(base, rel))
        if os.path.commonpath([base, target]) != base:
            self.problem(where, f"{expr}: {rel} is outside the directory of {self.display} "
                                f"(after resolving '..' and symbolic links) {allowed}")
            return None
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else (exc.strerror or str(exc))
            self.problem(where, f"cannot read {rel} for {expr}: {reason} (paths are relative to {self.display})")
            return None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                kind = file_kind(info.st_mode)
                self.problem(where, f"{expr}: {rel} is {kind}, not a regular file {allowed}")
                return None
            chunks: list[bytes] = []
            left = MAX_INTERPOLATED_FILE_BYTES + 1
            while left > 0:
                chunk = os.read(fd, min(left, 1 << 16))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
            if left <= 0:
                self.problem(where, f"{expr}: {rel} is larger than {MAX_INTERPOLATED_FILE_BYTES} bytes {allowed}")
                return None
            return b"".join(chunks)
        except OSError as exc:
            self.problem(where, f"cannot read {rel} for {expr}: {exc.strerror or exc} (paths are relative to "
                                f"{self.display})")
            return None
        finally:
            os.close(fd)

    def _find(self, node: Any, needle: str, fallback: Pos) -> Pos:
        """The position of `needle` in the source text of `node` (single line or block), else the node's start."""
        if node is None:  # the JSON fast path: any problem sends the file through the located path
            return fallback
        start, end = node.start_mark, node.end_mark
        for line_no in range(start.line, min(end.line, len(self.lines) - 1) + 1):
            line = self.lines[line_no]
            col = line.find(needle, start.column if line_no == start.line else 0)
            if col >= 0:
                return (self.display, line_no + 1, col + 1)
        return fallback


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words, from its st_mode."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


class _Recursive(Exception):
    def __init__(self, node: Any):
        self.node = node


class _TooDeep(Exception):
    def __init__(self, node: Any):
        self.node = node


def _check_depth(node: Any, depth: int) -> None:
    """Raise _TooDeep at the first node (depth first, keys before values) deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        raise _TooDeep(node)
    if isinstance(node.value, list):
        for child in node.value:
            for part in (child if isinstance(child, tuple) else (child,)):
                _check_depth(part, depth + 1)


def _to_int(text: str) -> Optional[int]:
    s = text.replace("_", "")
    sign = -1 if s.startswith("-") else 1
    s = s.lstrip("+-")
    try:
        if s[:2].lower() == "0x":
            return sign * int(s[2:], 16)
        if s[:2].lower() == "0o":
            return sign * int(s[2:], 8)
        if s[:2].lower() == "0b":
            return sign * int(s[2:], 2)
        return sign * int(s, 10)
    except ValueError:
        return None


def _to_float(text: str) -> Optional[float]:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


# --- overlays ----------------------------------------------------------------------------------

# How lists merge, by where they are: named resources by name, a model's versions by label.
_LIST_KEY = {"connectors": "name", "model_groups": "name", "models": "name", "versions": "version",
             "ingest_pipelines": "id", "search_pipelines": "id", "agents": "name"}


def _merge(a: LNode, b: LNode, ctx: str) -> LNode:
    """`b` (a later file) over `a`: mappings key by key, keyed lists item by item, anything else replaced."""
    if isinstance(a, LMap) and isinstance(b, LMap):
        entries = dict(a.entries)
        for key, (kpos, bval) in b.entries.items():
            if key in entries:
                akpos, aval = entries[key]
                child = _child_ctx(ctx, key)
                merged = _merge(aval, bval, child)
                entries[key] = (akpos if merged is not bval else kpos, merged)
            else:
                entries[key] = (kpos, bval)
        return LMap(entries, a.pos)
    if isinstance(a, LSeq) and isinstance(b, LSeq) and ctx in _LIST_KEY:
        key_field = _LIST_KEY[ctx]
        item_ctx = "model" if ctx == "models" else "item"
        items = list(a.items)
        index: dict[str, int] = {}
        for i, item in enumerate(items):
            k = _item_key(item, key_field)
            if k is not None and k not in index:
                index[k] = i
        for item in b.items:
            k = _item_key(item, key_field)
            if k is not None and k in index:
                items[index[k]] = _merge(items[index[k]], item, item_ctx)
            else:
                if k is not None:
                    index[k] = len(items)
                items.append(item)
        return LSeq(items, a.pos)
    return b


def _child_ctx(ctx: str, key: str) -> str:
    if ctx == "root" and key in _LIST_KEY and key != "versions":
        return key
    if ctx == "model" and key == "versions":
        return "versions"
    return "other"


def _item_key(item: LNode, key_field: str) -> Optional[str]:
    if isinstance(item, LMap) and key_field in item.entries:
        value = item.entries[key_field][1]
        if isinstance(value, LScalar) and value.value is not None and not isinstance(value.value, bool):
            return value.text if value.text is not None else str(value.value)
    return None


# --- emitting the plain tree ---------------------------------------------------------------------

def _emit(node: LNode, path: Path, smap: SourceMap, dirs: dict[str, str]) -> Any:
    smap.values[path] = node.pos
    if isinstance(node, LMap):
        out: dict[str, Any] = {}
        for key, (kpos, child) in node.entries.items():
            child_path = path + (key,)
            smap.keys[child_path] = kpos
            out[key] = _emit(child, child_path, smap, dirs)
        return out
    if isinstance(node, LSeq):
        return [_emit(child, path + (i,), smap, dirs) for i, child in enumerate(node.items)]
    value = node.value
    if node.sensitive and isinstance(value, str) and value and not _is_identity(path):
        smap.sensitive.add(value)
    if node.text is not None and path and path[-1] == "version" and _is_version_label(path):
        return node.text  # version labels and connector versions: the text as written
    if path and path[-1] == "path" and isinstance(value, str) and value and _is_model_path(path):
        return os.path.normpath(os.path.join(dirs.get(node.pos[0], ""), value))
    return value


def _is_identity(path: Path) -> bool:
    """The stack name and the names and ids that identify an object or name another one: public even when
    interpolated from the environment (a masked name would make a plan unreadable)."""
    return path == ("stack",) or (len(path) == 3 and path[-1] in ("name", "id", "model_group", "connector"))


def _is_version_label(path: Path) -> bool:
    # ('connectors', i, 'version'), ('models', i, 'versions', j, 'version'), ('models', i, 'connector', 'version')
    if len(path) == 3:
        return path[0] == "connectors"
    if len(path) == 4:
        return path[0] == "models" and path[2] == "connector"
    return len(path) == 5 and path[0] == "models" and path[2] == "versions"


def _is_model_path(path: Path) -> bool:
    # ('models', i, 'path') or ('models', i, 'versions', j, 'path')
    return path[0] == "models" and (len(path) == 3 or (len(path) == 5 and path[2] == "versions"))


# --- the JSON fast path --------------------------------------------------------------------------
#
# A file that is JSON (generated files often are: benchmarks/bench_scale.py writes its 10,000-version
# file with json.dumps) is read by the json module, some 40 times faster than composing it as YAML
# with every position. Positions are recorded only for what a successful load asks for (each
# resource and model version, `path:` values, the top-level keys); any other position, and every
# error, comes from the located path (`_Builder`), run on the same text on first demand
# (`_LazySourceMap`). The fast path takes only files that mean the same in YAML 1.2 as in JSON: a
# problem of any kind, a duplicate key, NaN or an infinite number, a tab, a character YAML does not
# allow or a line break JSON does not count, a surrogate escape (libyaml refuses them), or a key
# libyaml would not take as a simple key (longer than 1,024 characters up to its colon, or with its
# colon on a later line) makes it step aside, and the file goes through the located path as before.
# tests/config/test_fast_path.py checks that both paths give the same tree, positions and secrets.

_JSON_START = re.compile(r"[ \n\r]*\{")
_JSON_UNSAFE_CHAR = re.compile("[\t\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]")
_JSON_SURROGATE = re.compile(r"\\u[dD][89abAB]")
_JSON_FAR_COLON = re.compile(r'"(?:[ \r]*\n|[ \n]*\r|[ \n\r]{200})[ \n\r]*:')
_JSON_WS = re.compile(r"[ \n\r]*")
_BREAK = re.compile(r"\r\n|\r|\n")
#: Longest key the fast path takes: even written with \uXXXX escapes it stays far under libyaml's
#: 1,024-character limit on a simple key.
_MAX_JSON_KEY = 120


class _NotFast(Exception):
    """The file is not plain JSON that means the same as YAML: read it through the located path."""


class _Number(str):
    """The source text of a JSON number (json's parse_int / parse_float hook), resolved by _FastJson."""

    __slots__ = ()


def _json_pairs(pairs: list) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs) or (out and max(map(len, out)) > _MAX_JSON_KEY):
        raise _NotFast()  # a duplicate key (reported with its place by the located path), or a long key
    return out


def _json_constant(name: str) -> Any:
    raise _NotFast()  # NaN, Infinity: plain strings in YAML


def _load_json(name: str, env: Mapping[str, str]) -> Optional[LoadResult]:
    """The LoadResult of one file if it is JSON the fast path may take, else None."""
    import json

    text, problems = _read_text(name)
    if text is None or not _JSON_START.match(text) or _JSON_UNSAFE_CHAR.search(text) or (
            "\\u" in text and _JSON_SURROGATE.search(text)) or _JSON_FAR_COLON.search(text):
        return None
    try:
        tree = json.loads(text, object_pairs_hook=_json_pairs, parse_int=_Number, parse_float=_Number,
                          parse_constant=_json_constant)
        if not isinstance(tree, dict):
            return None
        fast = _FastJson(name, text, env)
        tree = fast.value(tree, (), 0)
        keys, values = _JsonPositions(name, text).scan()
    except (_NotFast, ValueError, RecursionError):
        return None
    absolute = os.path.abspath(name)

    def located() -> SourceMap:
        parsed, _, _ = _parse_file(name, env, text)
        smap = SourceMap()
        _emit(parsed.root or LMap({}, (name, 1, 1)), (), smap, {name: os.path.dirname(absolute)})
        return smap

    smap = _LazySourceMap(tree, keys, values, fast.sensitive, located)
    return LoadResult(tree=tree, source_map=smap, files=[ParsedFile(name, absolute, None)])


class _FastJson:
    """The plain tree of decoded JSON as `_emit` would give it: numbers resolved, strings interpolated
    (in place: most leaves are strings that stay as they are)."""

    def __init__(self, display: str, text: str, env: Mapping[str, str]):
        self.builder = _Builder(display, os.path.abspath(display), text, env)
        self.dir = self.builder.dir
        self.sensitive: set[str] = set()

    def value(self, value: Any, path: Path, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise _NotFast()
        if isinstance(value, dict):
            for key, item in value.items():
                if type(item) is str and key != "path" and "${" not in item:
                    continue  # the common leaf: nothing to do
                if item is None or item is True or item is False:
                    continue
                value[key] = self.value(item, path + (key,), depth + 1)
            return value
        if isinstance(value, list):
            for i, item in enumerate(value):
                if not (type(item) is str and "${" not in item) and item is not None:
                    value[i] = self.value(item, path + (i,), depth + 1)
            return value
        if isinstance(value, _Number):
            if path and path[-1] == "version" and _is_version_label(path):
                return str(value)  # version labels and connector versions: the text as written
            if "." in value or "e" in value or "E" in value:
                number = _to_float(value)
                if number is None:
                    raise _NotFast()  # 1e999: reported by the located path
                return number
            return int(value)
        if isinstance(value, str):
            if "${" in value:
                builder = self.builder
                builder._sensitive = False
                value = builder._interpolate(None, value, (builder.display, 1, 1))
                if builder.problems:
                    raise _NotFast()
                if builder._sensitive and value and not _is_identity(path):
                    self.sensitive.add(value)
            if path and path[-1] == "path" and value and _is_model_path(path):
                return os.path.normpath(os.path.join(self.dir, value))
            return value
        return value  # true, false, null


def _json_wanted(path: Path) -> bool:
    """Whether the entries of the container at `path` get positions: the top level, its lists (each
    resource), and inside a model its versions (each version, its `path:`)."""
    n = len(path)
    return n <= 1 or (path[0] == "models" and (n == 2 or (path[2] == "versions" and n <= 4)))


class _JsonPositions:
    """Positions (as libyaml gives them) of the nodes a successful load locates, from a second, shallow
    scan of the text: the nodes below them are skipped with json's scanner."""

    def __init__(self, display: str, text: str):
        import json
        from json.decoder import scanstring
        from json.scanner import make_scanner

        self.display, self.text = display, text
        self.starts = [0] + [m.end() for m in _BREAK.finditer(text)]
        self.skip_value = make_scanner(json.JSONDecoder())
        self.scanstring = scanstring
        self.keys: dict[Path, Pos] = {}
        self.values: dict[Path, Pos] = {}

    def pos(self, i: int) -> Pos:
        starts = self.starts
        line = bisect_right(starts, i) - 1 if len(starts) > 1 else 0
        return (self.display, line + 1, i - starts[line] + 1)

    def scan(self) -> tuple[dict, dict]:
        self.node(_JSON_WS.match(self.text).end(), ())
        return self.keys, self.values

    def node(self, i: int, path: Path) -> int:
        """Record the node starting at text[i]; return the index after it."""
        text, ws = self.text, _JSON_WS
        self.values[path] = self.pos(i)
        ch = text[i]
        if ch not in "[{" or not _json_wanted(path):
            return self.skip_value(text, i)[1]
        if len(path) == 2:  # a model: its entries only when it has versions or a path
            end = self.skip_value(text, i)[1]
            if '"versions"' not in text[i:end] and '"path"' not in text[i:end]:
                return end
        elif len(path) == 4:  # a version: its entries only when it has a path
            end = self.skip_value(text, i)[1]
            if '"path"' not in text[i:end]:
                return end
        i = ws.match(text, i + 1).end()
        if ch == "{":
            while text[i] != "}":
                key, after = self.scanstring(text, i + 1)
                child = path + (key,)
                self.keys[child] = self.pos(i)  # a mapping entry is located at its key
                i = ws.match(text, ws.match(text, after).end() + 1).end()  # past the colon
                i = self.node(i, child) if _json_wanted(child) else self.skip_value(text, i)[1]
                i = ws.match(text, i).end()
                if text[i] == ",":
                    i = ws.match(text, i + 1).end()
            return i + 1
        index = 0
        while text[i] != "]":
            i = ws.match(text, self.node(i, path + (index,))).end()
            index += 1
            if text[i] == ",":
                i = ws.match(text, i + 1).end()
        return i + 1


def _exists(tree: Any, path: Path) -> bool:
    node = tree
    for part in path:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            node = node[part]
        elif isinstance(node, list) and type(part) is int and 0 <= part < len(node):
            node = node[part]
        else:
            return False
    return True


class _LazySourceMap(SourceMap):
    """A SourceMap that knows some positions from the fast path and asks the located path for the rest.

    `has` needs no positions (a path was written iff it is in the tree); `locate` answers from the
    recorded positions, climbs past paths that are not in the tree (as SourceMap.locate does), and
    builds the full map (once) for a written path it has no position for; `keys`/`values` build it.
    """

    def __init__(self, tree: Any, keys: dict, values: dict, sensitive: set, located: Any):
        self._tree, self._keys, self._values = tree, keys, values
        self.sensitive = sensitive
        self._located = located
        self._full: Optional[SourceMap] = None

    def _map(self) -> SourceMap:
        if self._full is None:
            self._full = self._located()
        return self._full

    @property
    def keys(self) -> dict:  # type: ignore[override]
        return self._map().keys

    @property
    def values(self) -> dict:  # type: ignore[override]
        return self._map().values

    def locate(self, path: Path) -> Pos:
        path = tuple(path)
        if self._full is None:
            while True:
                pos = self._keys.get(path) or self._values.get(path)
                if pos is not None:
                    return pos
                if _exists(self._tree, path):
                    break
                path = path[:-1]
        return self._map().locate(path)

    def locate_value(self, path: Path) -> Pos:
        path = tuple(path)
        if self._full is None:
            pos = self._values.get(path)
            if pos is not None:
                return pos
            if not _exists(self._tree, path):
                return self.locate(path)
        return self._map().locate_value(path)

    def has(self, path: Path) -> bool:
        return _exists(self._tree, tuple(path))
