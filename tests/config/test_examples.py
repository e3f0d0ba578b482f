"""Every example validates, and says what it claims to (issue 3)."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile

import pytest

from mlsync import commands as app
from mlsync.input import load
from mlsync.core.secrets import Secret

from .conftest import EXAMPLES, example_id, example_sets

SCHEMA_COMMENT = "# yaml-language-server: $schema="


@pytest.mark.parametrize("paths", example_sets(), ids=example_id)
def test_example_validates(paths: list[str]) -> None:
    cfg = load(paths, env={})
    assert cfg.sources == [os.path.abspath(p) for p in paths]
    out, err = io.StringIO(), io.StringIO()
    assert app.validate(paths, out, err) == 0, err.getvalue()
    assert out.getvalue().startswith("valid: ") and out.getvalue().count("\n") == 1
    assert err.getvalue() == ""


def all_example_files() -> list:
    return sorted(EXAMPLES.rglob("*.yaml"))


@pytest.mark.parametrize("path", all_example_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_starts_with_the_schema_comment(path) -> None:
    first = path.read_text(encoding="utf-8").split("\n", 1)[0]
    assert first.startswith(SCHEMA_COMMENT), first
    target = (path.parent / first[len(SCHEMA_COMMENT):].strip()).resolve()
    assert target == (EXAMPLES.parent / "schemas" / "mlsync.schema.json").resolve()
    assert target.is_file()


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_quickstart() -> None:
    cfg = load([str(EXAMPLES / "quickstart.yaml")], env={})
    (conn,) = cfg.stack.connectors
    assert conn.actions[0].url == "http://127.0.0.1:8089/v1/embeddings"
    assert isinstance(conn.credential["api_key"], Secret)
    assert conn.credential["api_key"].reveal() == "dummy-key"
    assert conn.actions[0].headers["Authorization"] == "Bearer ${credential.api_key}"
    assert len(cfg.stack.model_groups) == 1
    (model,) = cfg.stack.models
    assert model.is_remote and model.deploy is True and model.connector == conn.name
    assert model.group_name == cfg.stack.model_groups[0].name

    with_key = load([str(EXAMPLES / "quickstart.yaml")], env={"EMBEDDINGS_API_KEY": "from-env"})
    assert with_key.stack.connectors[0].credential["api_key"].reveal() == "from-env"


def test_url_model_has_two_versions_with_real_hashes() -> None:
    cfg = load([str(EXAMPLES / "url-model.yaml")], env={})
    (model,) = cfg.stack.models
    assert [v.version for v in model.versions] == ["1.0.0", "1.1.0"]
    for version in model.versions:
        name = version.url.rsplit("/", 1)[1]
        assert version.url.startswith("http://127.0.0.1:8089/models/")
        assert version.model_content_hash_value == sha256(EXAMPLES / "models" / name)
        assert version.model_format == "ONNX"                    # model-level default
        assert version.model_config_.embedding_dimension == 8    # model-level default
    assert [v.deploy for v in model.versions] == [False, True]   # a version overrides the model's deploy
    assert model.versions[1].description != model.versions[0].description  # a version override
    assert model.model_config_.all_config == '{"architectures":["BertModel"],"hidden_size":8}'


def test_local_model_ships_its_zip() -> None:
    cfg = load([str(EXAMPLES / "local-model.yaml")], env={})
    (model,) = cfg.stack.models
    (version,) = model.versions
    zip_path = EXAMPLES / "models" / "tiny-onnx.zip"   # built by tests/models/tiny_onnx.py (checked there)
    assert version.path == str(zip_path.resolve())
    assert version.model_content_hash_value == sha256(zip_path)
    assert version.model_format == "ONNX" and version.deploy is True
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["tiny-onnx.onnx", "tokenizer.json"]
    assert model.model_group is None
    group = model.implicit_group()
    assert group is not None and group.name == model.name and group.implicit


def test_overlay_pair() -> None:
    base = load([str(EXAMPLES / "overlay" / "base.yaml")], env={})
    both = load([str(EXAMPLES / "overlay" / "base.yaml"), str(EXAMPLES / "overlay" / "prod.yaml")], env={})
    assert (base.stack.stack, both.stack.stack) == ("overlay-dev", "overlay-prod")
    conn = both.stack.connectors[0]
    assert conn.client_config is not None and conn.client_config.max_connection == 50
    assert conn.credential["api_key"].reveal() == "dummy-prod-key"
    assert conn.actions == base.stack.connectors[0].actions           # kept from base
    remote = both.stack.models[0]
    assert remote.deploy is True and remote.rate_limiter is not None
    url_model = both.stack.models[1]
    assert [v.version for v in url_model.versions] == ["1.0.0", "1.1.0"]
    assert both.stack.model_groups[0].lifecycle.prevent_destroy is True
    assert both.locate(("models", 1, "versions", 1, "url"))[0].endswith("prod.yaml")
    assert both.locate(("models", 1, "versions", 0, "url"))[0].endswith("base.yaml")


def test_access_control_groups() -> None:
    cfg = load([str(EXAMPLES / "access-control.yaml")], env={})
    modes = {g.name: g.access_mode for g in cfg.stack.model_groups}
    assert set(modes.values()) == {"public", "private", "restricted"}
    solo = next(m for m in cfg.stack.models if m.model_group is None)
    group = solo.implicit_group()
    assert group.access_mode == "restricted" and group.backend_roles == ["ml-team"]
    assert not isinstance(solo.connector, str) and solo.connector.credential["api_key"].reveal() == "dummy-key"
    names = [g.name for g in cfg.stack.all_model_groups()]
    assert names[-1] == solo.name and len(names) == len(cfg.stack.model_groups) + 1
