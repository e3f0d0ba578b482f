"""${env:…}, ${env:…:-default}, ${file:…}, $${ escapes, and ML Commons' own placeholders (SPEC §1.1)."""

from __future__ import annotations

import os

import pytest

from mlsync.input.loader import load_tree

from .cases import y


def value_of(in_tmp, text: str, env: dict | None = None, files: dict | None = None):
    for name, content in (files or {}).items():
        os.makedirs(os.path.dirname(name) or ".", exist_ok=True)
        with open(name, "w", encoding="utf-8") as fh:
            fh.write(content)
    with open("stack.yaml", "w", encoding="utf-8") as fh:
        fh.write(y("version: 1", f"stack: {text}"))
    result = load_tree(["stack.yaml"], env=env or {})
    return result.tree["stack"], result.problems


@pytest.mark.parametrize("text, env, expected", [
    ("${env:NAME}", {"NAME": "prod"}, "prod"),
    ("search-${env:NAME}-x", {"NAME": "prod"}, "search-prod-x"),
    ("${env:NAME:-dev}", {}, "dev"),
    ("${env:NAME:-dev}", {"NAME": ""}, "dev"),
    ("${env:NAME:-dev}", {"NAME": "prod"}, "prod"),
    ("'${env:NAME:-}'", {}, ""),
    ("${env:A}/${env:B}", {"A": "a", "B": "b"}, "a/b"),
    ("'$${env:NAME}'", {"NAME": "prod"}, "${env:NAME}"),
    ("'$${parameters.x} and $$'", {}, "${parameters.x} and $$"),
    ("'${parameters.input}'", {}, "${parameters.input}"),
    ("'${credential.api_key}'", {}, "${credential.api_key}"),
    ("'${parameters.x:-null}'", {}, "${parameters.x:-null}"),
    ("'${something.else}'", {}, "${something.else}"),
    ("'price: $5'", {}, "price: $5"),
    ("'${env:NAME}'", {"NAME": "${env:OTHER}"}, "${env:OTHER}"),     # one pass: values are not re-read
])
def test_env_interpolation(in_tmp, text: str, env: dict, expected: str) -> None:
    value, problems = value_of(in_tmp, text, env)
    assert problems == []
    assert value == expected


def test_file_interpolation_is_relative_to_the_file_and_strips_the_final_newline(in_tmp) -> None:
    value, problems = value_of(in_tmp, "${file:secrets/name.txt}", files={"secrets/name.txt": "from-file\n"})
    assert problems == [] and value == "from-file"


def test_file_interpolation_in_an_overlay_in_another_directory(in_tmp) -> None:
    os.makedirs("prod/secrets")
    with open("prod/secrets/key", "w") as fh:
        fh.write("k-123\n")
    with open("base.yaml", "w") as fh:
        fh.write(y("version: 1", "stack: s"))
    with open("prod/prod.yaml", "w") as fh:
        fh.write(y("stack: ${file:secrets/key}"))
    result = load_tree(["base.yaml", "prod/prod.yaml"], env={})
    assert result.problems == [] and result.tree["stack"] == "k-123"


def test_missing_variable_names_file_line_and_variable(in_tmp) -> None:
    _, problems = value_of(in_tmp, "x-${env:MISSING_VAR}")
    (p,) = problems
    assert (p.file, p.line, p.column) == ("stack.yaml", 2, 10)
    assert "MISSING_VAR" in p.message


def test_keys_are_not_interpolated(in_tmp) -> None:
    with open("stack.yaml", "w") as fh:
        fh.write(y("version: 1", "stack: s", "connectors:", "  - name: c", "    protocol: http",
                   "    parameters: {'${env:K}': v}", "    credential: {k: v}",
                   "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]"))
    result = load_tree(["stack.yaml"], env={"K": "expanded"})
    assert result.problems == []
    assert result.tree["connectors"][0]["parameters"] == {"${env:K}": "v"}


def test_interpolated_credentials_are_secrets(in_tmp) -> None:
    from mlsync.input import load

    with open("stack.yaml", "w") as fh:
        fh.write(y("version: 1", "stack: s", "connectors:", "  - name: c", "    protocol: http",
                   "    credential: {api_key: '${env:KEY}'}",
                   "    actions: [{action_type: predict, method: POST, url: 'http://h/',",
                   "               headers: {Authorization: 'Bearer ${credential.api_key}'}}]"))
    cfg = load(["stack.yaml"], env={"KEY": "sk-live-123"})
    conn = cfg.stack.connectors[0]
    assert conn.credential["api_key"].reveal() == "sk-live-123"
    assert "sk-live-123" not in repr(conn)
    assert conn.actions[0].headers["Authorization"] == "Bearer ${credential.api_key}"


def test_numbers_and_booleans_are_not_interpolated(in_tmp) -> None:
    with open("stack.yaml", "w") as fh:
        fh.write(y("version: 1", "stack: s", "model_groups: [{name: g, add_all_backend_roles: true}]"))
    result = load_tree(["stack.yaml"], env={})
    assert result.tree["model_groups"][0]["add_all_backend_roles"] is True
