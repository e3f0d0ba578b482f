"""`mlsync validate` and `mlsync schema` through click's runner; the CLI stays light."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mlsync import __version__

from mlsync import commands as app
from mlsync.cli import main

from .cases import y
from .conftest import EXAMPLES, REPO_ROOT

VALID = y("version: 1", "stack: cli", "model_groups: [{name: g}]")


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_validate_valid_files(runner: CliRunner, in_tmp) -> None:
    result = runner.invoke(main, ["validate", "-f", str(EXAMPLES / "overlay" / "base.yaml"),
                                  "--file", str(EXAMPLES / "overlay" / "prod.yaml")])
    assert result.exit_code == 0, result.output
    assert result.stdout == "valid: 1 connector, 1 model group, 3 model versions in 2 files (stack overlay-prod)\n"
    assert result.stderr == ""


def test_validate_a_directory(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", "-f", str(EXAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("valid: ") and "in 5 files" in result.stdout


def test_validate_defaults_to_the_current_directory(runner: CliRunner, in_tmp) -> None:
    (in_tmp / "stack.yaml").write_text(VALID)
    result = runner.invoke(main, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "valid: 0 connectors, 1 model group, 0 model versions in 1 file (stack cli)\n"


def test_validate_invalid_prints_one_line_per_problem_and_exits_1(runner: CliRunner, in_tmp) -> None:
    (in_tmp / "bad.yaml").write_text(y("version: 1", "stack: s", "model_groups:", "  - name: g",
                                       "    acces_mode: public", "models:", "  - name: m", "    model_group: nope",
                                       "    function_name: remote", "    connector: x"))
    result = runner.invoke(main, ["validate", "-f", "bad.yaml"])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        "bad.yaml:5:5: model_groups[0].acces_mode: unknown key 'acces_mode'; did you mean 'access_mode'? "
        "(allowed: access_mode, backend_roles, add_all_backend_roles, name, description, lifecycle)",
        "bad.yaml:8:5: models[0].model_group: model group 'nope' is not declared in model_groups (declared: g)",
        "bad.yaml:10:5: models[0].connector: connector 'x' is not declared in connectors (no connectors are declared)",
    ]


def test_validate_missing_file(runner: CliRunner, in_tmp) -> None:
    result = runner.invoke(main, ["validate", "-f", "nope.yaml"])
    assert result.exit_code == 1
    assert result.stderr == "nope.yaml:1:1: no such file or directory\n"


def test_validate_never_prints_a_secret(runner: CliRunner, in_tmp) -> None:
    (in_tmp / "s.yaml").write_text(y("version: 1", "stack: s", "connectors:", "  - name: c", "    protocol: http",
                                     "    credential: sk-live-abcdef",
                                     "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]"))
    result = runner.invoke(main, ["validate", "-f", "s.yaml"])
    assert result.exit_code == 1
    assert "sk-live-abcdef" not in result.output + result.stderr
    assert "(sensitive)" in result.stderr


def test_schema_command_prints_the_committed_schema(runner: CliRunner) -> None:
    result = runner.invoke(main, ["schema"])
    assert result.exit_code == 0
    assert result.stdout == (REPO_ROOT / "schemas" / "mlsync.schema.json").read_text(encoding="utf-8")
    assert json.loads(result.stdout)["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_version_and_help(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"mlsync {__version__}"
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0 and "validate" in result.stdout and "schema" in result.stdout
    assert runner.invoke(main, ["validate", "--help"]).exit_code == 0


def test_internal_errors_are_one_line_unless_debug(runner: CliRunner, monkeypatch) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(app, "validate", boom)
    result = runner.invoke(main, ["validate", "-f", "x.yaml"])
    assert result.exit_code == 1
    assert result.stderr == "internal error: RuntimeError: kaboom (run with --debug for a traceback)\n"
    result = runner.invoke(main, ["--debug", "validate", "-f", "x.yaml"])
    assert result.exit_code == 1
    assert "Traceback" in result.stderr and "kaboom" in result.stderr


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch, in_tmp) -> None:
    (in_tmp / "ok.yaml").write_text(VALID)
    for var in ("NO_COLOR", "FORCE_COLOR", "TERM"):     # the rules: mlsync.render.use_color
        monkeypatch.delenv(var, raising=False)
    out = _Tty()
    assert app.validate(["ok.yaml"], out, _Tty()) == 0
    assert "\033[" in out.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    out = _Tty()
    assert app.validate(["ok.yaml"], out, _Tty()) == 0
    assert "\033[" not in out.getvalue()
    plain = io.StringIO()
    monkeypatch.delenv("NO_COLOR")
    assert app.validate(["ok.yaml"], plain, io.StringIO()) == 0
    assert "\033[" not in plain.getvalue()


def test_cli_import_stays_light() -> None:
    """`mlsync --help` must be fast: importing the CLI loads click, not pydantic, ruamel, jsonschema or rich."""
    code = ("import sys, mlsync.cli; heavy = [m for m in ('pydantic', 'ruamel.yaml', 'jsonschema', 'rich', "
            "'opensearchpy', 'deepdiff') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_validate_file_arguments_are_each_checked_on_their_own(runner: CliRunner, in_tmp) -> None:
    # What a pre-commit hook passes: several unrelated stacks, which must not be merged as overlays.
    (in_tmp / "a.yaml").write_text(VALID)
    (in_tmp / "b.yaml").write_text(y("version: 1", "stack: other", "model_groups: [{name: h}, {name: i}]"))
    result = runner.invoke(main, ["validate", "a.yaml", "b.yaml"])
    assert result.exit_code == 0, result.output
    assert result.stdout == ("a.yaml: valid: 0 connectors, 1 model group, 0 model versions in 1 file (stack cli)\n"
                             "b.yaml: valid: 0 connectors, 2 model groups, 0 model versions in 1 file (stack other)\n")


def test_validate_file_arguments_exit_1_when_any_is_invalid(runner: CliRunner, in_tmp) -> None:
    (in_tmp / "ok.yaml").write_text(VALID)
    (in_tmp / "bad.yaml").write_text(y("version: 1", "stack: s", "model_groups:", "  - name: g", "    acces_mode: public"))
    result = runner.invoke(main, ["validate", "bad.yaml", "ok.yaml"])
    assert result.exit_code == 1
    assert result.stdout.startswith("ok.yaml: valid: ")          # the later file is still checked
    assert result.stderr.startswith("bad.yaml:5:5: model_groups[0].acces_mode: unknown key 'acces_mode'")


def test_validate_refuses_file_arguments_mixed_with_f(runner: CliRunner, in_tmp) -> None:
    (in_tmp / "ok.yaml").write_text(VALID)
    result = runner.invoke(main, ["validate", "-f", "ok.yaml", "ok.yaml"])
    assert result.exit_code == 2
    assert "not both" in result.stderr
