"""Runs the composite GitHub Action in action.yml the way a runner does, step by step: its inputs
(defaults overlaid with `with:`; an unknown input fails), `if: inputs.X == 'v'` conditions,
`${{ inputs.X }}` in each step's env, `bash --noprofile --norc -eo pipefail` for `shell: bash`,
GITHUB_OUTPUT per step and GITHUB_ACTION_PATH; then the action's outputs from `steps.ID.outputs.X`.
An expression it does not know fails the test. Used by tests/integration/test_ci_workflow.py (the
example workflow's steps that use the action) and tests/integration/test_action.py."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CONDITION = re.compile(r"inputs\.([\w-]+) == '([^']*)'")


@dataclass
class StepResult:
    code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]

    def __str__(self) -> str:
        return f"exit {self.code}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def load_action() -> dict:
    with open(ACTION, encoding="utf-8") as f:
        return yaml.safe_load(f)


def run_action(with_: dict[str, str], env: dict[str, str], cwd: Path, scratch: Path) -> StepResult:
    action = load_action()
    declared = action["inputs"]
    unknown = set(with_) - set(declared)
    assert not unknown, f"the action has no inputs {sorted(unknown)}"
    inputs = {k: str(v.get("default", "")) for k, v in declared.items()} | {k: str(v) for k, v in with_.items()}
    steps: dict[str, dict[str, str]] = {}

    def resolve(expr: str) -> str:
        if m := re.fullmatch(r"inputs\.([\w-]+)", expr):
            return inputs[m.group(1)]
        if m := re.fullmatch(r"steps\.([\w-]+)\.outputs\.([\w-]+)", expr):
            return steps.get(m.group(1), {}).get(m.group(2), "")
        raise KeyError(f"action.yml: the test has no value for ${{{{ {expr} }}}}")

    def substitute(text: str) -> str:
        return EXPRESSION.sub(lambda m: resolve(m.group(1)), text)

    stdout, stderr = [], []
    code = 0
    for step in action["runs"]["steps"]:
        if "if" in step:
            m = CONDITION.fullmatch(step["if"])
            assert m, f"action.yml: the test cannot evaluate if: {step['if']}"
            if inputs[m.group(1)] != m.group(2):
                continue
        assert step.get("shell") == "bash" and "run" in step, step
        assert not EXPRESSION.search(step["run"]), "inputs reach a script through env:, never pasted into it"
        step_env = dict(env) | {"GITHUB_ACTION_PATH": str(ROOT)}
        step_env |= {k: substitute(str(v)) for k, v in step.get("env", {}).items()}
        output = scratch / "action-output"
        output.write_text("")
        step_env["GITHUB_OUTPUT"] = str(output)
        script = scratch / "action-step.sh"
        script.write_text(step["run"])
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=cwd,
                              env=step_env, capture_output=True, text=True, timeout=600)
        stdout.append(proc.stdout)
        stderr.append(proc.stderr)
        if "id" in step:
            steps[step["id"]] = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
        if proc.returncode:
            code = proc.returncode
            break
    outputs = {name: substitute(spec["value"]) for name, spec in action["outputs"].items()}
    return StepResult(code, "".join(stdout), "".join(stderr), outputs)
