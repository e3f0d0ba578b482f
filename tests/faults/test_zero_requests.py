"""Every bad input sends zero requests (issue 10, the campaign): `mlsync plan` and `mlsync apply` on each
case of tests/config/cases.py, pointed at the fault proxy, exit 1 and the proxy counts 0 requests.

Not a `cluster` test: a bad input must be refused before anything is sent, so the node behind the proxy
is never needed (if mlsync did send something, the proxy would count it whether the node is up or not).
The proxy in front of a node that is up also forwards, so a regression shows as a count, not a hang.
"""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from config.cases import CASES, Case
from config.conftest import write_files
from proxy import FaultProxy

from mlsync.cli import main


@pytest.fixture(scope="module")
def proxy():
    upstream = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
    if not upstream.startswith("http://127.0.0.1") and not upstream.startswith("http://localhost"):
        upstream = "http://127.0.0.1:9200"
    with FaultProxy(upstream=upstream) as p:
        yield p


def test_the_proxy_counts_what_it_is_sent(proxy, tmp_path, monkeypatch):
    """The counter works: a valid file's plan reaches the proxy (so 0 below means 0 sent)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "stack.yaml").write_text("version: 1\nstack: zero-requests-probe\n")
    proxy.reset_counts()
    CliRunner().invoke(main, ["plan", "-f", "stack.yaml"],
                       env={"OPENSEARCH_URL": proxy.url, "MLSYNC_RETRY_DEADLINE": "0"})
    assert proxy.snapshot()["requests"] > 0


@pytest.mark.parametrize("command", [["plan"], ["apply", "--auto-approve"]], ids=["plan", "apply"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_sends_no_request(case: Case, command, proxy, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path, case.files)
    files = case.args if case.args is not None else list(case.files)
    proxy.reset_counts()
    args = [*command, *[a for f in files for a in ("-f", f)]]
    result = CliRunner().invoke(main, args, env={"OPENSEARCH_URL": proxy.url, **case.env})
    assert result.exit_code == 1, f"{case.id}: exit {result.exit_code}\n{result.output}"
    sent = proxy.snapshot()["requests"]
    assert sent == 0, f"{case.id}: `mlsync {command[0]}` sent {sent} request(s) for a bad input: {proxy.log}"
