"""Hypothesis strategies for valid desired-state files (docs/desired-state-file.md, SPEC §1).

A file is drawn in two steps so that a test can draw a second file "over the same names" (the
mutation step of the property): `skeletons()` fixes the resource names and kinds, `stack_file(sk)`
fills in everything else. Every generated tree is meant to be valid (`mlsync.input.load` accepts
it); a tree it refuses is a bug in the strategy, not a counterexample.

`Flavour` restricts what a real node can take: `http` connectors on a trusted loopback URL,
built-in pre/post-process functions, TEXT_EMBEDDING URL models that are never deployed (the test
node runs offline, so a local deploy fails) and artifacts served by the `artifact_server` fixture.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable, Optional

from hypothesis import strategies as st

# Text without `$` (mlsync interpolates `${...}`) and without control characters; with spaces,
# HTML characters (the server's Gson escapes them inside stringified parameters), quotes and non-ASCII.
_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="$") | \
    st.sampled_from(list(" -_:/.<>&='\"é日"))
TEXT = st.text(_ALPHABET, max_size=12)
WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz_"), min_size=1, max_size=8)


def any_case(word: str) -> st.SearchStrategy[str]:
    """The same enum value in lower, upper or its own case (the file accepts any letter case)."""
    return st.sampled_from(sorted({word, word.lower(), word.upper()}))


def _enum(values) -> st.SearchStrategy[str]:
    return st.sampled_from(list(values)).flatmap(any_case)


JSON_SCALAR = (st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.integers(10**18, 10**22)
               | st.floats(allow_nan=False, allow_infinity=False, width=64) | TEXT)
JSON_VALUE = st.recursive(JSON_SCALAR, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(WORD, inner, max_size=3), max_leaves=6)
SCHEMA = st.dictionaries(WORD, st.sampled_from(["string", "number", {"type": "object"}]), max_size=3).map(
    lambda d: {"type": "object", "properties": d})
SHA = st.text("0123456789abcdefABCDEF", min_size=64, max_size=64)


@dataclass(frozen=True)
class Flavour:
    real: bool = False
    endpoint: str = "http://127.0.0.1:9"      # base URL of connector actions (trusted on the test node)
    # (format, seed) -> (url, sha256): an artifact for a URL model version
    artifact: Optional[Callable[[str, int], tuple[str, str]]] = None


@dataclass(frozen=True)
class Skeleton:
    prefix: str
    connectors: tuple[str, ...]
    groups: tuple[str, ...]
    remote: tuple[str, ...]        # remote model names
    local: tuple[str, ...]         # URL model names
    extra: dict = field(default_factory=dict, compare=False)


def skeletons(prefix: str, *, max_connectors=2, max_groups=2, max_remote=3, max_local=2) -> st.SearchStrategy[Skeleton]:
    """Names of one stack. Names carry spaces, colons and slashes (allowed) and never collide across
    kinds, so an implicit group (named after its model) never meets a declared one."""
    suffix = st.sampled_from(["", " a", ":b", "/c", " é"])

    @st.composite
    def build(draw):
        def names(tag, n):
            return tuple(f"{prefix}-{tag}{i}{draw(suffix)}" for i in range(n))
        return Skeleton(prefix, names("c", draw(st.integers(0, max_connectors))),
                        names("g", draw(st.integers(0, max_groups))),
                        names("r", draw(st.integers(0, max_remote))), names("u", draw(st.integers(0, max_local))))
    return build()


# --- pieces ---------------------------------------------------------------------------------------

def _optional(d: dict, key: str, strategy, draw, p_absent=0.5) -> None:
    if not draw(st.booleans()) or p_absent == 0:
        d[key] = draw(strategy)


@st.composite
def actions(draw, flavour: Flavour, tag: str, *, predict: bool = False):
    """1-3 actions; `predict`: one of them is a predict action (an inline connector needs one)."""
    kinds = draw(st.lists(st.sampled_from(["predict", "execute", "batch_predict"]), min_size=1, max_size=3,
                          unique=True))
    if predict and "predict" not in kinds:
        kinds.append("predict")
    out = []
    for i, kind in enumerate(kinds):
        a = {"action_type": draw(any_case(kind)), "method": draw(_enum(["POST", "GET", "put"])),
             "url": f"{flavour.endpoint}/v1/{tag}/{i}/embeddings"}
        _optional(a, "headers", st.dictionaries(st.sampled_from(["Authorization", "Content-Type", "X-Req"]),
                                                st.just("Bearer ${credential.api_key}") | TEXT, max_size=2), draw)
        _optional(a, "request_body", st.sampled_from(['{"input": ${parameters.input}}', "{}"]) | TEXT, draw)
        if flavour.real:   # the node checks these names; built-ins only
            _optional(a, "pre_process_function", st.just("connector.pre_process.openai.embedding"), draw)
            _optional(a, "post_process_function", st.just("connector.post_process.openai.embedding"), draw)
        else:
            _optional(a, "pre_process_function", TEXT, draw)
            _optional(a, "post_process_function", TEXT, draw)
        out.append(a)
    return out


CLIENT_CONFIG = st.fixed_dictionaries({}, optional={
    "max_connection": st.integers(1, 100), "connection_timeout": st.integers(0, 60000),
    "read_timeout": st.integers(0, 60000), "retry_backoff_millis": st.integers(0, 1000),
    "retry_timeout_seconds": st.integers(0, 60), "max_retry_times": st.integers(-1, 5),
    "retry_backoff_policy": _enum(["constant", "exponential_equal_jitter", "exponential_full_jitter"])})


@st.composite
def connector_body(draw, flavour: Flavour, tag: str, *, inline: bool):
    c: dict = {"protocol": draw(any_case("http")) if flavour.real else draw(_enum(["http", "aws_sigv4"])),
               "credential": {"api_key": draw(TEXT.filter(bool))}, "actions": draw(actions(flavour, tag, predict=inline))}
    if inline:
        _optional(c, "name", WORD, draw)
    _optional(c, "description", TEXT, draw)
    # absent: a standalone connector's defaults to "1" (the server refuses a connector without one)
    _optional(c, "version", st.sampled_from(["1", "2.0"]) | st.integers(1, 9) | st.just(1.5), draw)
    _optional(c, "parameters", st.dictionaries(WORD, JSON_VALUE, min_size=1, max_size=4), draw)
    _optional(c, "client_config", CLIENT_CONFIG, draw)
    return c


@st.composite
def model_config(draw):
    mc = {"model_type": draw(st.sampled_from(["bert", "roberta"])), "embedding_dimension": draw(st.integers(1, 1024)),
          "framework_type": draw(_enum(["sentence_transformers", "huggingface_transformers"]))}
    _optional(mc, "pooling_mode", _enum(["mean", "mean_sqrt_len", "max", "cls"]), draw)
    _optional(mc, "normalize_result", st.booleans(), draw)
    _optional(mc, "all_config", st.dictionaries(WORD, st.none() | st.booleans() | st.integers(-999, 999) | TEXT,
                                                max_size=3).flatmap(lambda d: st.sampled_from([d, json.dumps(d)])), draw)
    _optional(mc, "model_max_length", st.integers(1, 512), draw)
    _optional(mc, "query_prefix", TEXT, draw)
    _optional(mc, "passage_prefix", TEXT, draw)
    return mc


@st.composite
def metadata(draw, *, flavour: Flavour, updatable: bool = True):
    """Fields a model sets and a version may override (SPEC §1.1). Only models that Update Model
    supports can be disabled (the file refuses is_enabled: false for the others)."""
    m: dict = {}
    _optional(m, "description", TEXT, draw)
    _optional(m, "is_enabled", st.booleans() if updatable else st.just(True), draw)
    _optional(m, "rate_limiter", st.fixed_dictionaries({
        "limit": st.integers(1, 10**6) | st.sampled_from([0.5, 2.0, "10", "0.25", "100.0"]),
        "unit": _enum(["SECONDS", "MINUTES", "HOURS", "DAYS"])}), draw)
    _optional(m, "interface", st.fixed_dictionaries({}, optional={
        "input": SCHEMA.flatmap(lambda d: st.sampled_from([d, json.dumps(d)])),
        "output": SCHEMA}), draw)
    _optional(m, "deploy_setting", st.fixed_dictionaries({}, optional={
        "is_auto_deploy_enabled": st.booleans(), "model_ttl_minutes": st.integers(0, 600)}), draw)
    return m


# --- the file -------------------------------------------------------------------------------------

@st.composite
def stack_file(draw, sk: Skeleton, flavour: Flavour = Flavour()):
    """A valid desired-state tree over the names of `sk` (plain data, ready for json/yaml dump)."""
    tree: dict = {"version": 1, "stack": sk.prefix}
    tree["connectors"] = [{"name": n, **draw(connector_body(flavour, f"{sk.prefix}-{i}", inline=False))}
                          for i, n in enumerate(sk.connectors)]
    groups = []
    for g in sk.groups:
        gd = {"name": g}
        _optional(gd, "description", TEXT, draw)
        groups.append(gd)
    tree["model_groups"] = groups
    group_choice = st.sampled_from([None, *sk.groups])
    models = []
    for i, name in enumerate(sk.remote):
        m = {"name": name, "function_name": draw(any_case("remote"))}
        group = draw(group_choice)
        if group is not None:
            m["model_group"] = group
        if sk.connectors and draw(st.booleans()):
            m["connector"] = draw(st.sampled_from(sk.connectors))
        else:
            m["connector"] = draw(connector_body(flavour, f"{sk.prefix}-r{i}", inline=True))
        m.update(draw(metadata(flavour=flavour)))
        _optional(m, "model_config", model_config(), draw)
        m["deploy"] = draw(st.booleans())
        if draw(st.integers(0, 2)) == 0:   # a family of remote models: versions, each maybe its own connector
            labels = draw(st.lists(st.sampled_from(["1", "2", "v3"]), min_size=1, max_size=2, unique=True))
            m["versions"] = []
            for label in labels:
                v: dict = {"version": label}
                if sk.connectors and draw(st.booleans()):
                    v["connector"] = draw(st.sampled_from(sk.connectors))
                _optional(v, "deploy", st.booleans(), draw)
                _optional(v, "description", TEXT, draw)
                m["versions"].append(v)
        models.append(m)
    for i, name in enumerate(sk.local):
        m = {"name": name}
        group = draw(group_choice)
        if group is not None:
            m["model_group"] = group
        fmt = draw(st.sampled_from(["TORCH_SCRIPT", "ONNX"]))
        m["model_format"] = draw(any_case(fmt))
        if not flavour.real and draw(st.integers(0, 3)) == 0:
            m["function_name"] = draw(any_case("sparse_encoding"))
        else:
            m["model_config"] = draw(model_config())
        updatable = "function_name" not in m
        m.update(draw(metadata(flavour=flavour, updatable=updatable)))
        labels = draw(st.lists(st.sampled_from(["1", "1.0", "1.10", "2", "v3"]), min_size=1, max_size=3, unique=True))
        versions = []
        for label in labels:
            seed = draw(st.integers(0, 3))
            if flavour.artifact is not None:
                url, sha = flavour.artifact(fmt, seed + 10 * (labels.index(label)))
            else:
                url, sha = f"http://127.0.0.1:9/{name}/{label}.zip", draw(SHA)
            v = {"version": label, "url": url, "model_content_hash_value": sha}
            over = draw(metadata(flavour=flavour, updatable=updatable))
            v.update(dict(list(over.items())[:draw(st.integers(0, len(over)))]))
            if "model_config" in m and draw(st.booleans()):
                v["model_config"] = {"embedding_dimension": draw(st.integers(1, 64))}
            v["deploy"] = False if flavour.real else draw(st.booleans())
            versions.append(v)
        m["versions"] = versions
        models.append(m)
    tree["models"] = models
    tree.update(draw(consumers(sk, models)))
    return tree


def _referable(*names: str) -> bool:
    return all(not set(n) & set("/@}") for n in names)


@st.composite
def consumers(draw, sk: Skeleton, models: list[dict]):
    """Ingest and search pipelines (ml_inference, which every node has) and agents naming the file's
    models through `${model:...}` references (docs/references.md)."""
    targets = []
    for m in models:
        group = m.get("model_group") or m["name"]
        if not _referable(group, m["name"]):
            continue
        targets.append("${model:" + f"{group}/{m['name']}" + "}")
        targets += ["${model:" + f"{group}/{m['name']}@{v['version']}" + "}" for v in m.get("versions") or []]
    if not targets:
        return {}
    ref = st.sampled_from(targets)

    def ml_inference(draw, request: bool = False) -> dict:
        p = {"model_id": draw(ref), "input_map": [{"input": "query.term.text.value" if request else "text"}],
             "output_map": [{"query.term.text.value" if request else "vec": "$.data[0].embedding"}]}
        if draw(st.booleans()):
            p["model_input"] = '{"text_docs": ${input_map.input}}'
            p["function_name"] = "text_embedding"
        _optional(p, "description", TEXT, draw)
        return {"ml_inference": p}
    out: dict = {"ingest_pipelines": [], "search_pipelines": [], "agents": []}
    for i in range(draw(st.integers(0, 2))):
        pipe = {"id": f"{sk.prefix.lower()}-ip{i}", "processors": [ml_inference(draw)]}
        _optional(pipe, "description", TEXT, draw)
        _optional(pipe, "version", st.integers(0, 10**6), draw)
        out["ingest_pipelines"].append(pipe)
    for i in range(draw(st.integers(0, 1))):
        pipe = {"id": f"{sk.prefix.lower()}-sp{i}", "request_processors": [ml_inference(draw, request=True)]}
        if draw(st.booleans()):
            pipe["response_processors"] = [ml_inference(draw)]
        out["search_pipelines"].append(pipe)
    names = []
    for i in range(draw(st.integers(0, 2))):
        name = f"{sk.prefix}-agent{i}"
        params = draw(st.dictionaries(WORD, JSON_VALUE, max_size=3))
        agent: dict = {"name": name, "type": draw(any_case("flow")),
                       "tools": [{"type": "MLModelTool", "parameters": {**params, "model_id": draw(ref)}}]}
        if names and draw(st.booleans()):
            agent["tools"].append({"type": "AgentTool", "parameters": {"agent_id": "${agent:" + names[-1] + "}"}})
        if draw(st.booleans()):
            agent["type"] = draw(any_case("conversational"))
            agent["llm"] = {"model_id": draw(ref), "parameters": draw(st.dictionaries(WORD, JSON_VALUE, max_size=2))}
            agent["memory"] = {"type": "conversation_index"}
        _optional(agent, "description", TEXT, draw)
        names.append(name)
        out["agents"].append(agent)
    return {k: v for k, v in out.items() if v}
