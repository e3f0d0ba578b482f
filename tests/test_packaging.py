"""mlsync is installable: `python -m build` makes an sdist and a wheel from a copy of this checkout,
and the wheel installed into a clean virtual environment outside the checkout gives a working
`mlsync` (version, the JSON Schema, validate, graph, shell completion) that imports nothing from the
checkout. Slow (a build environment and the dependencies are installed from the package index):
marked `slow`, which CI runs; skip it locally with -m "not slow"."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import mlsync
from mlsync.commands import schema_text

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
_IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
                                 ".hypothesis", "*.pyc")


def _run(args: list, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.timeout(1200)
def test_the_wheel_installs_into_a_clean_venv_and_works(tmp_path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=_IGNORE)        # the shared working tree gets no build/ or egg-info
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", dist, src], tmp_path, env)
    wheels, sdists = list(dist.glob("mlsync-*.whl")), list(dist.glob("mlsync-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(dist.iterdir())
    assert wheels[0].name.startswith(f"mlsync-{mlsync.__version__}-py3-none-any")

    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        entry_points = next(whl.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert {"mlsync/cli.py", "mlsync/render/graph.py", "mlsync/input/schema.py"} <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "scripts/"))]
    assert "mlsync = mlsync.launch:main" in entry_points
    with tarfile.open(sdists[0]) as sd:
        members = {m.name.split("/", 1)[1] for m in sd.getmembers() if "/" in m.name}
    assert {"pyproject.toml", "README.md", "mlsync/cli.py"} <= members

    elsewhere = tmp_path / "elsewhere"               # outside the checkout: nothing to import by accident
    elsewhere.mkdir()
    venv.EnvBuilder(with_pip=True, clear=True).create(tmp_path / "venv")
    bin_dir = tmp_path / "venv" / "bin"
    _run([bin_dir / "python", "-m", "pip", "install", "--quiet", wheels[0]], elsewhere, env)
    mls = bin_dir / "mlsync"
    run_env = env | {"PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}", "NO_COLOR": "1"}
    where = _run([bin_dir / "python", "-c", "import mlsync; print(mlsync.__file__)"], elsewhere, run_env).stdout
    assert str(tmp_path / "venv") in where and str(ROOT) not in where
    assert _run([mls, "--version"], elsewhere, run_env).stdout == f"mlsync {mlsync.__version__}\n"
    assert _run([mls, "schema"], elsewhere, run_env).stdout == schema_text()
    shutil.copy(ROOT / "examples" / "quickstart.yaml", elsewhere / "stack.yaml")
    valid = _run([mls, "validate", "-f", "stack.yaml"], elsewhere, run_env).stdout
    assert valid.startswith("valid: 1 connector, 1 model group, 1 model version")
    for shell in ("bash", "zsh", "fish"):
        assert "_MLSYNC_COMPLETE" in _run([mls, "completion", shell], elsewhere, run_env).stdout
    assert "--format [mermaid|dot|svg]" in _run([mls, "graph", "--help"], elsewhere, run_env).stdout
