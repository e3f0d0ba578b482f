"""Several -f files: later deep-merges over earlier (SPEC §1.1)."""

from __future__ import annotations

from .cases import HASH, y

BASE = y(
    "version: 1",
    "stack: base",
    "connectors:",
    "  - name: api",
    "    description: base",
    "    protocol: http",
    "    parameters: {model: a, dims: 4}",
    "    credential: {api_key: base-key}",
    "    actions:",
    "      - {action_type: predict, method: POST, url: 'http://base/'}",
    "      - {action_type: execute, method: POST, url: 'http://base/x'}",
    "model_groups:",
    "  - name: g",
    "    backend_roles: [a, b]",
    "  - name: h",
    "models:",
    "  - name: m",
    "    model_group: g",
    "    model_format: ONNX",
    "    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}",
    "    versions:",
    f"      - {{version: 1.10, url: 'http://h/1.zip', model_content_hash_value: {HASH}, deploy: false}}",
    "  - name: r",
    "    model_group: h",
    "    function_name: remote",
    "    connector: api",
)

PROD = y(
    "stack: prod",
    "connectors:",
    "  - name: api",
    "    parameters: {model: b}",
    "    credential: {api_key: prod-key}",
    "    actions:",
    "      - {action_type: predict, method: POST, url: 'http://prod/'}",
    "model_groups:",
    "  - name: g",
    "    backend_roles: [c]",
    "  - name: new-group",
    "models:",
    "  - name: m",
    "    versions:",
    "      - {version: '1.10', deploy: true}",
    f"      - {{version: '2', url: 'http://h/2.zip', model_content_hash_value: {HASH}}}",
)


def test_overlay_merges(load_files) -> None:
    stack = load_files({"base.yaml": BASE, "prod.yaml": PROD}).stack
    assert stack.stack == "prod"
    conn = stack.connectors[0]
    assert conn.description == "base"                                  # kept
    assert conn.parameters == {"model": "b", "dims": 4}                 # mappings merge key by key
    assert conn.credential["api_key"].reveal() == "prod-key"
    assert [a.url for a in conn.actions] == ["http://prod/"]            # other lists are replaced
    assert [g.name for g in stack.model_groups] == ["g", "h", "new-group"]  # named lists merge by name
    assert stack.model_groups[0].backend_roles == ["c"]
    m = stack.models[0]
    assert [(v.version, v.deploy) for v in m.versions] == [("1.10", True), ("2", None)]  # versions by label
    assert m.versions[0].url == "http://h/1.zip"
    assert [x.name for x in stack.models] == ["m", "r"]


def test_overlay_positions_point_where_each_value_was_written(load_files) -> None:
    cfg = load_files({"base.yaml": BASE, "prod.yaml": PROD})
    assert cfg.locate(("stack",)) == ("prod.yaml", 1, 1)
    assert cfg.locate(("connectors", 0, "description")) == ("base.yaml", 5, 5)
    assert cfg.locate(("connectors", 0, "parameters", "model"))[0] == "prod.yaml"
    assert cfg.locate(("connectors", 0, "parameters", "dims"))[0] == "base.yaml"
    assert cfg.locate(("models", 0, "versions", 1)) == ("prod.yaml", 16, 9)
    assert cfg.locate(("models", 0, "versions", 0, "deploy"))[0] == "prod.yaml"
    assert cfg.locate(("models", 0, "versions", 0, "url"))[0] == "base.yaml"
    assert cfg.sources[0].endswith("base.yaml") and cfg.sources[1].endswith("prod.yaml")


def test_later_file_need_not_be_valid_alone(problems_of) -> None:
    assert problems_of({"prod.yaml": PROD})                          # alone: invalid
    assert problems_of({"base.yaml": BASE, "prod.yaml": PROD}) == []  # merged: valid


def test_three_files_merge_in_order(load_files) -> None:
    cfg = load_files({"a.yaml": y("version: 1", "stack: a"), "b.yaml": y("stack: b"), "c.yaml": y("stack: c")},
                     args=["a.yaml", "c.yaml", "b.yaml"])
    assert cfg.stack.stack == "b"


def test_an_overlay_can_null_a_value(load_files) -> None:
    cfg = load_files({"base.yaml": BASE, "prod.yaml": y("connectors:", "  - name: api", "    description: null")})
    assert cfg.stack.connectors[0].description is None


def test_errors_point_at_the_overlay_that_wrote_the_bad_value(problems_of) -> None:
    problems = problems_of({"base.yaml": BASE,
                            "prod.yaml": y("models:", "  - name: m", "    versions:",
                                           "      - {version: '1.10', deploy: maybe}")})
    (p,) = problems
    assert (p.file, p.line, p.path) == ("prod.yaml", 4, "models[0].versions[0].deploy")
