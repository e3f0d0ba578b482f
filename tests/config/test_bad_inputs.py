"""Every bad input gets a clear message at the right file and line (SPEC §1.1; issue 3)."""

from __future__ import annotations

import time

import pytest

from .cases import CASES, Case


def test_there_are_at_least_45_cases() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, problems_of) -> None:
    started = time.perf_counter()
    problems = problems_of(case.files, args=case.args, env=case.env)
    elapsed = time.perf_counter() - started
    assert problems, f"{case.id}: expected a problem, the files were accepted"
    rendered = "\n".join(str(p) for p in problems)
    matching = [p for p in problems if case.message in p.message]
    assert matching, f"{case.id}: no problem says {case.message!r}; got:\n{rendered}"
    line = case.expected_line()
    at = [p for p in matching if p.file == case.file and p.line == line]
    assert at, f"{case.id}: expected {case.file}:{line}, got:\n{rendered}"
    if case.col is not None:
        assert any(p.column == case.col for p in at), f"{case.id}: expected column {case.col}, got:\n{rendered}"
    if case.path is not None:
        assert any(p.path == case.path for p in at), f"{case.id}: expected path {case.path}, got:\n{rendered}"
    for secret in case.absent:
        assert secret not in rendered, f"{case.id}: a secret leaked into the problems:\n{rendered}"
    # every problem is one line in the documented format
    for p in problems:
        text = str(p)
        assert "\n" not in text
        assert text.startswith(f"{p.file}:{p.line}:{p.column}: ")
    assert elapsed < 2.0, f"{case.id}: took {elapsed:.2f}s; bad input must be rejected fast"


def test_alias_bomb_is_rejected_fast(problems_of) -> None:
    bomb = next(c for c in CASES if c.id == "alias-bomb")
    started = time.perf_counter()
    problems = problems_of(bomb.files)
    assert time.perf_counter() - started < 0.5
    assert any("alias bomb" in p.message for p in problems)


def test_all_problems_are_reported_together(problems_of) -> None:
    text = "\n".join([
        "version: 1",
        "stack: s",
        "connectors:",
        "  - name: api",
        "    protocol: htp",                          # 5: enum
        "    credential: {api_key: k}",
        "    actions: [{action_type: predict, method: POST, url: 'http://h/'}]",
        "model_groups:",
        "  - name: g",
        "    acces_mode: public",                     # 10: unknown key
        "models:",
        "  - name: r",
        "    model_group: nope",                      # 13: unresolved group
        "    function_name: remote",
        "    connector: api",
        "    deploy: sure",                           # 16: type
        "",
    ])
    problems = problems_of({"stack.yaml": text})
    assert sorted(p.line for p in problems) == [5, 10, 13, 16]


def test_problems_are_sorted_by_file_and_line(problems_of) -> None:
    problems = problems_of({"stack.yaml": "version: 3\nstack: ''\nbogus: 1\n"})
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert len(problems) == 3


def test_secret_never_in_any_problem(problems_of) -> None:
    secret = "s3cr3t-value-do-not-print"
    text = "\n".join([
        "version: 1",
        "stack: s",
        "connectors:",
        "  - name: api",
        "    protocol: http",
        f"    credential: {{api_key: [{secret}]}}",
        f"    actions: [{{action_type: predict, method: POST, url: 'http://h/', headers: {{X: {{a: {secret}}}}}}}]",
        "",
    ])
    problems = problems_of({"stack.yaml": text})
    assert problems
    assert all(secret not in str(p) for p in problems)
    assert any(p.path == "connectors[0].credential.api_key" for p in problems)
