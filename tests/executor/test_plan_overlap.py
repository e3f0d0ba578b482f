"""`plan`, `drift` and `graph` read the cluster while they flatten the files (issue 12, goal 3:
`common.plan_files`), on the in-memory FakeCluster (tests/fakes.py), state on the fake cluster:

- once every check of the input has run, the state is read, then the cluster's reads (observe, then
  the other stacks' objects) run in a thread while the main thread flattens; the plan is the one the
  sequential steps (`load_desired` + `plan_for`) make;
- what can still refuse the input runs before the first request: a local model file that cannot be
  read (a located ConfigError) and a fingerprint key that is too short;
- a failed read is raised as before; an error or an interrupt while flattening lets the read in
  flight end, starts no other, and no thread outlives the command.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/ for `fakes`

from fakes import FakeCluster, connected  # noqa: E402
from helpers import connector_yaml  # noqa: E402

from mlsync import commands as app  # noqa: E402
from mlsync.commands import common  # noqa: E402
from mlsync.core.errors import ClusterError, ConfigError, MlsyncError  # noqa: E402
from mlsync.edge.cluster import ConnectionOptions  # noqa: E402
from mlsync.input import flatten as flatten_module  # noqa: E402

OPTS = ConnectionOptions(url="http://localhost:9200")
WAIT = 10.0      # seconds a test waits for the other thread before calling it absent

STACK_YAML = f"""
version: 1
stack: overlap-stack
connectors:
{connector_yaml("emb", "https://example.invalid/v1/embeddings")}models:
  - name: embedder
    description: remote embeddings in their own group
    function_name: remote
    connector: emb
ingest_pipelines:
  - id: overlap-ingest
    processors:
      - ml_inference:
          model_id: ${{model:embedder/embedder}}
          input_map: [{{input: body}}]
          output_map: [{{body_embedding: "$.data[0].embedding"}}]
"""

LOCAL_YAML = """version: 1
stack: overlap-local
model_groups:
  - name: g
models:
  - name: m
    model_group: g
    model_format: TORCH_SCRIPT
    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}
    versions:
      - version: '1'
        path: a.zip
"""


def _plan(files, out):
    return app.plan([str(f) for f in files], OPTS, out)


def _drift(files, out):
    return app.drift([str(f) for f in files], OPTS, out)


def _graph(files, out):
    return app.graph([str(f) for f in files], OPTS, out)


COMMANDS = [_plan, _drift, _graph]


def written(tmp_path: Path, text: str) -> Path:
    (tmp_path / "stack.yaml").write_text(text)
    (tmp_path / "a.zip").write_bytes(b"zip")    # LOCAL_YAML's model file
    return tmp_path / "stack.yaml"


@pytest.fixture
def fake(monkeypatch) -> FakeCluster:
    return connected(monkeypatch, FakeCluster(task_polls=0, deploy_polls=0))


@pytest.fixture
def stack(tmp_path) -> Path:
    return written(tmp_path, STACK_YAML)


def reads_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mlsync-reads"]


@pytest.mark.parametrize("command", COMMANDS, ids=["plan", "drift", "graph"])
def test_the_cluster_is_read_while_the_files_are_flattened(fake, stack, monkeypatch, command):
    """Flatten waits until the cluster's read has started: on the sequential path (flatten, then the
    reads) it waits in vain. The state is read before the cluster, the owners after it."""
    events: list[str] = []
    observing = threading.Event()

    def on_call(method: str) -> None:
        events.append(method)
        if method == "observe":
            observing.set()

    real = common.flatten

    def flatten(*args, **kwargs):
        events.append("flatten" if observing.wait(WAIT) else "flatten before the cluster's read")
        return real(*args, **kwargs)

    fake.on_call = on_call
    monkeypatch.setattr(common, "flatten", flatten)
    command([stack], io.StringIO())
    assert "flatten" in events, f"the cluster was not read while flattening: {events}"
    assert events.index("read_state") < events.index("observe") < events.index("search_states"), events
    (observe,) = fake.calls("observe")
    assert observe.thread == "mlsync-reads"
    assert not reads_threads()


def test_the_plan_is_the_one_the_sequential_steps_make(fake, stack, tmp_path):
    assert app.apply([str(stack)], OPTS, io.StringIO(), auto_approve=True) == 0
    stack.write_text(STACK_YAML.replace("in their own group", "changed"))
    for command in ("plan", "destroy"):
        destroy = command == "destroy"
        overlapped = common.plan_files([str(stack)], OPTS, destroy=destroy)
        desired = common.load_desired([str(stack)])
        sequential = common.plan_for(desired, fake, common.state_store(fake, None), destroy=destroy)
        assert overlapped.plan.has_changes
        assert overlapped.plan.to_json() == sequential.plan.to_json()
        assert overlapped.plan.digest() == sequential.plan.digest()


@pytest.mark.parametrize("fails", ["observe", "search_states", "read_state"])
def test_a_failed_read_is_raised_as_before_and_leaves_no_thread(fake, stack, fails):
    fake.fail(fails, ClusterError("search", "ML models", 503, "node is busy", "exception"))
    with pytest.raises(ClusterError) as err:
        _plan([stack], io.StringIO())
    assert str(err.value) == "search ML models: HTTP 503: node is busy"
    order = ["read_state", "observe", "search_states"]
    assert [c.method for c in fake.log] == order[:order.index(fails) + 1]     # nothing read after the failure
    assert not reads_threads()


def test_a_failed_read_through_the_cli_is_one_error_line(fake, stack):
    from click.testing import CliRunner

    from mlsync.cli import main

    fake.fail("observe", ClusterError("search", "ML models", 503, "node is busy", "exception"))
    result = CliRunner().invoke(main, ["plan", "-f", str(stack)])
    assert result.exit_code == 1
    assert "error: search ML models: HTTP 503: node is busy" in result.output
    assert not reads_threads()


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError], ids=["interrupt", "error"])
def test_a_failure_while_flattening_waits_for_the_read_in_flight_and_starts_no_other(fake, stack, monkeypatch,
                                                                                      error):
    observing, released = threading.Event(), threading.Event()

    def on_call(method: str) -> None:
        if method == "observe":
            observing.set()
            released.wait(WAIT)

    def flatten(*args, **kwargs):
        assert observing.wait(WAIT), "the cluster's read did not start"
        threading.Timer(0.2, released.set).start()
        raise error("while flattening")

    fake.on_call = on_call
    monkeypatch.setattr(common, "flatten", flatten)
    with pytest.raises(error, match="while flattening"):
        _plan([stack], io.StringIO())
    assert released.is_set(), "returned before the read in flight ended"
    assert [c.method for c in fake.log] == ["read_state", "observe"]     # no owners' read after it
    assert not reads_threads()


def test_an_unreadable_model_file_is_a_located_error_before_any_request(fake, tmp_path, monkeypatch):
    local = written(tmp_path, LOCAL_YAML)

    def unreadable(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(flatten_module, "known_sha256_file", unreadable)
    with pytest.raises(ConfigError) as err:
        _plan([local], io.StringIO())
    (problem,) = err.value.problems
    assert (problem.line, problem.path) == (12, "models[0].versions[0].path")
    assert problem.file.endswith("stack.yaml")
    assert f"model file {tmp_path / 'a.zip'} cannot be read: Permission denied" in problem.message
    assert fake.log == []


@pytest.mark.parametrize("with_digest", [False, True], ids=["path", "path-and-digest"])
def test_a_local_model_file_is_read_once(fake, tmp_path, monkeypatch, with_digest):
    """Once per plan, also when the file gives its digest (the semantic checks compare it with the
    file's: they and flatten share one read, flatten.known_sha256_file)."""
    text = LOCAL_YAML
    if with_digest:
        (tmp_path / "a.zip").write_bytes(b"zip")
        digest = hashlib.sha256(b"zip").hexdigest()
        text = text.replace("        path: a.zip\n", f"        path: a.zip\n        model_content_hash_value: {digest}\n")
    local = written(tmp_path, text)
    monkeypatch.setattr(flatten_module, "_DIGESTS", {})
    read: list[str] = []
    real = flatten_module._sha256_of

    def counting(f):
        read.append(f.name)
        return real(f)

    monkeypatch.setattr(flatten_module, "_sha256_of", counting)
    planned = common.plan_files([str(local)], OPTS)
    assert len(read) == 1
    (version,) = [c for c in planned.plan.changes if c.address.kind == "model"]
    assert planned.desired.resources[version.address].artifact["size"] == 3


def test_a_short_fingerprint_key_is_refused_before_any_request(fake, stack, monkeypatch):
    monkeypatch.setenv("MLSYNC_FINGERPRINT_KEY", "short")
    with pytest.raises(MlsyncError, match="MLSYNC_FINGERPRINT_KEY must be at least"):
        _plan([stack], io.StringIO())
    assert fake.log == []
