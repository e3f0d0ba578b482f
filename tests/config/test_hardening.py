"""Hostile desired-state files (issue 10, defects 9 and 11): what `${file:…}` may read, `path:` on
special files, and nesting deep enough to crash the C composer. Every refusal is a located problem."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlsync.input.flatten import sha256_file
from mlsync.input.loader import MAX_DEPTH, MAX_INTERPOLATED_FILE_BYTES, SAFE_COMPOSE_DEPTH, load_tree

from .cases import y

DEEP = 100_000
VALIDATE = [sys.executable, "-c", "import sys; from mlsync.cli import main; sys.exit(main())", "validate"]


def run_validate(tmp: Path, *files: str, memory: int = 0) -> subprocess.CompletedProcess:
    args = [a for f in files for a in ("-f", f)]

    def limit() -> None:
        if memory:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(VALIDATE + args, cwd=tmp, capture_output=True, text=True, timeout=60, preexec_fn=limit)


# --- defect 11: nesting ----------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, text, line", [
    ("flow", "version: 1\nstack: s\nx: " + "[" * DEEP + "\n", 3),
    ("flow-closed", "version: 1\nstack: s\nx: " + "[" * DEEP + "]" * DEEP + "\n", 3),
    ("flow-mappings", "version: 1\nstack: s\nx: " + "{a: " * DEEP + "b" + "}" * DEEP + "\n", 3),
    ("implicit-pairs", "version: 1\nstack: s\nx: " + "[a: " * DEEP + "b" + "]" * DEEP + "\n", 3),
    ("compact-block", "version: 1\nstack: s\nx:\n  " + "- " * DEEP + "a\n", 4),
    ("cr-line-breaks", "version: 1\rstack: s\rx:\r  " + "- " * DEEP + "a\r", 4),
])
def test_deep_nesting_is_a_located_error_not_a_crash(tmp_path: Path, shape: str, text: str, line: int) -> None:
    (tmp_path / "deep.yaml").write_bytes(text.encode())
    started = time.perf_counter()
    result = run_validate(tmp_path, "deep.yaml")
    assert result.returncode == 1, f"{shape}: exit {result.returncode} (139 is the segfault)\n{result.stderr[-2000:]}"
    assert f"deep.yaml:{line}:" in result.stderr
    assert f"document is nested too deeply (more than {MAX_DEPTH} levels)" in result.stderr
    assert time.perf_counter() - started < 20


def test_the_error_points_at_the_first_node_past_the_limit(in_tmp: Path) -> None:
    # deep enough for the exact check on the event stream, shallow enough not to crash this process
    # if that check regressed (the subprocess tests above are the ones that prove there is no crash)
    (in_tmp / "deep.yaml").write_text("version: 1\nstack: s\nx: " + "[" * SAFE_COMPOSE_DEPTH + "\n")
    result = load_tree(["deep.yaml"], env={})
    assert result.fatal
    (p,) = result.problems
    # root mapping at depth 0, `x`'s list at 1: the list at depth MAX_DEPTH + 1 is the first too deep
    assert (p.file, p.line, p.column) == ("deep.yaml", 3, 4 + MAX_DEPTH)


def test_a_normal_file_does_not_take_the_slow_path(in_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact check on the event stream runs only when the text could nest past SAFE_COMPOSE_DEPTH."""
    from mlsync.input import loader

    calls = []
    real = loader._yaml

    def counting():
        yaml = real()
        original = yaml.parse
        yaml.parse = lambda *a, **k: calls.append(1) or original(*a, **k)
        return yaml

    monkeypatch.setattr(loader, "_yaml", counting)
    groups = "\n".join(f"  - {{name: g{i}, description: 'x [y] {{z}}'}}" for i in range(200))
    (in_tmp / "s.yaml").write_text(y("version: 1", "stack: s", "model_groups:") + groups + "\n")
    assert load_tree(["s.yaml"], env={}).problems == []
    assert calls == []
    many = "x: [" + ", ".join("[1]" for _ in range(SAFE_COMPOSE_DEPTH)) + "]\n"
    (in_tmp / "t.yaml").write_text(y("version: 1", "stack: s") + many)
    result = load_tree(["t.yaml"], env={})      # many brackets, shallow: checked exactly, and accepted
    assert calls == [1] and result.problems == []


def test_depth_at_the_limit_is_accepted(in_tmp: Path) -> None:
    # the list holding the innermost scalar sits at depth MAX_DEPTH; its items at MAX_DEPTH + 1 (too deep)
    ok = "x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    (in_tmp / "ok.yaml").write_text(y("version: 1", "stack: s", ok))
    assert load_tree(["ok.yaml"], env={}).problems == []


# --- defect 9: ${file:…} -----------------------------------------------------------------------------------

def problems(in_tmp: Path, value: str, name: str = "stack.yaml"):
    path = in_tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(y("version: 1", f"stack: {value}"))
    result = load_tree([name], env={})
    return result.tree["stack"] if result.tree else None, result.problems


def test_absolute_paths_are_refused(in_tmp: Path) -> None:
    value, (p,) = problems(in_tmp, "${file:/proc/self/environ}")
    assert (p.file, p.line, p.column) == ("stack.yaml", 2, 8)
    assert "an absolute path is not allowed" in p.message and "allowed: a regular file" in p.message
    assert value == "${file:/proc/self/environ}"


def test_dotdot_outside_the_directory_is_refused_but_inside_is_fine(in_tmp: Path) -> None:
    (in_tmp / "outside.txt").write_text("TOP-SECRET\n")
    (in_tmp / "conf" / "keys").mkdir(parents=True)
    (in_tmp / "conf" / "keys" / "k").write_text("inside\n")
    value, (p,) = problems(in_tmp, "${file:../outside.txt}", "conf/stack.yaml")
    assert "is outside the directory of conf/stack.yaml" in p.message
    assert "TOP-SECRET" not in str(p) and value != "TOP-SECRET"
    value, found = problems(in_tmp, "${file:keys/../keys/k}", "conf/stack.yaml")
    assert found == [] and value == "inside"


def test_a_symlink_pointing_outside_is_refused(in_tmp: Path) -> None:
    (in_tmp / "outside.txt").write_text("TOP-SECRET\n")
    (in_tmp / "conf").mkdir()
    os.symlink(in_tmp / "outside.txt", in_tmp / "conf" / "link")
    os.symlink("/etc", in_tmp / "conf" / "etc")
    _, (p,) = problems(in_tmp, "${file:link}", "conf/stack.yaml")
    assert "outside the directory" in p.message and "symbolic links" in p.message
    _, (p,) = problems(in_tmp, "${file:etc/hostname}", "conf/stack.yaml")
    assert "outside the directory" in p.message


def test_a_symlink_inside_the_directory_is_fine(in_tmp: Path) -> None:
    (in_tmp / "real.txt").write_text("v\n")
    os.symlink("real.txt", in_tmp / "alias.txt")
    assert problems(in_tmp, "${file:alias.txt}") == ("v", [])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_a_fifo_is_refused_without_hanging(in_tmp: Path) -> None:
    os.mkfifo(in_tmp / "pipe")
    out: list = []
    worker = threading.Thread(target=lambda: out.append(problems(in_tmp, "${file:pipe}")), daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "reading a FIFO hangs"
    _, (p,) = out[0]
    assert "${file:pipe}: pipe is a FIFO (named pipe), not a regular file" in p.message


def test_a_device_is_refused(tmp_path: Path) -> None:
    # in a subprocess with a memory limit: without the fix, /dev/zero is read until memory runs out
    os.symlink("/dev/zero", tmp_path / "zero")       # inside the directory by name, a device in fact
    (tmp_path / "s.yaml").write_text(y("version: 1", "stack: ${file:zero}"))
    result = run_validate(tmp_path, "s.yaml", memory=1 << 30)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "s.yaml:2:8: " in result.stderr
    assert "outside the directory" in result.stderr or "a device" in result.stderr


def test_size_cap(in_tmp: Path) -> None:
    (in_tmp / "just.txt").write_bytes(b"a" * MAX_INTERPOLATED_FILE_BYTES)
    (in_tmp / "over.txt").write_bytes(b"a" * (MAX_INTERPOLATED_FILE_BYTES + 1))
    value, found = problems(in_tmp, "${file:just.txt}")
    assert found == [] and len(value) == MAX_INTERPOLATED_FILE_BYTES
    _, (p,) = problems(in_tmp, "${file:over.txt}")
    assert f"is larger than {MAX_INTERPOLATED_FILE_BYTES} bytes" in p.message


def test_cli_refuses_proc_self_environ(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(y("version: 1", "stack: ${file:/proc/self/environ}"))
    result = run_validate(tmp_path, "s.yaml")
    assert result.returncode == 1
    assert "s.yaml:2:8: stack: " in result.stderr or "s.yaml:2:8: " in result.stderr
    assert "an absolute path is not allowed" in result.stderr


# --- `path:` on special files ------------------------------------------------------------------------------

def local_model(path_value: str) -> str:
    return y("version: 1", "stack: s", "models:", "  - name: m", "    model_format: TORCH_SCRIPT",
             "    model_config: {model_type: bert, embedding_dimension: 4, framework_type: sentence_transformers}",
             "    versions:", "      - version: '1'", f"        path: {path_value}")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_model_path_fifo_is_a_located_error(in_tmp: Path, problems_of) -> None:
    os.mkfifo(in_tmp / "model.zip")
    out: list = []
    worker = threading.Thread(target=lambda: out.append(problems_of({"stack.yaml": local_model("model.zip")})),
                              daemon=True)
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "a FIFO as path: hangs"
    (p,) = out[0]
    assert (p.file, p.line) == ("stack.yaml", 9)
    assert "is a FIFO (named pipe), not a regular file" in p.message


def test_model_path_device_is_a_located_error(problems_of) -> None:
    (p,) = problems_of({"stack.yaml": local_model("/dev/zero")})
    assert (p.file, p.line) == ("stack.yaml", 9)
    assert "/dev/zero is a device, not a regular file" in p.message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_hashing_a_fifo_raises_instead_of_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "p")
    with pytest.raises(OSError):
        sha256_file(str(tmp_path / "p"))
    with pytest.raises(OSError):
        sha256_file("/dev/zero")
