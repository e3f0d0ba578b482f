"""Reporters: plain lines, the rich live display, the choice between them, the final summary."""

from __future__ import annotations

import io

from mlsync.core.address import Address
from mlsync.core.errors import MlsyncError
from mlsync.run.results import ApplyResult, ResourceResult
from mlsync.core.plan import Action, ResourceChange
from mlsync.run.progress import PlainReporter, RichReporter, make_reporter, summary_lines

CHANGE = ResourceChange(Address("model", "m", "g", "1.0"), (Action.REGISTER,), "test")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_reporter_writes_one_line_per_event_and_throttles_waits():
    out, clock = io.StringIO(), Clock()
    r = PlainReporter(out, clock=clock, wait_every=10)
    r.on_start(CHANGE, "register")
    r.on_progress(CHANGE, "upload", "chunk 1/3")
    r.on_done(CHANGE, "register", 1.25, "task t-1")
    r.on_error(CHANGE, "wait", MlsyncError("boom"))
    r.on_wait(["t-1", "t-2"], 3.0)
    clock.now += 5
    r.on_wait(["t-1"], 8.0)        # throttled
    clock.now += 6
    r.on_wait(["t-1"], 14.0)
    lines = out.getvalue().splitlines()
    assert lines == [
        'model["g"]["m"]["1.0"]: register ...',
        'model["g"]["m"]["1.0"]: upload: chunk 1/3',
        'model["g"]["m"]["1.0"]: register done after 1.2s (task t-1)',
        'model["g"]["m"]["1.0"]: wait FAILED: boom',
        "waiting for 2 task(s) ... 3.0s",
        "waiting for 1 task(s) ... 14.0s",
    ]


def test_rich_reporter_renders_running_steps_and_prints_finished_ones():
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120, color_system=None)
    clock = Clock()
    with RichReporter(console, clock=clock) as r:
        r.on_start(CHANGE, "register")
        r.on_progress(CHANGE, "register", "chunk 2/3")
        r.on_wait(["t-1"], 4.0)
        clock.now += 3
        console.print(r)          # what the live area shows right now
        r.on_done(CHANGE, "register", 3.0, "model m-1")
        r.on_error(CHANGE, "deploy", MlsyncError("[bad] markup-like text"))
    text = buf.getvalue()
    assert 'model["g"]["m"]["1.0"]' in text           # brackets are not eaten as rich markup
    assert "3.0s" in text and "chunk 2/3" in text and "waiting on 1 server task(s)" in text
    assert "model m-1" in text and "[bad] markup-like text" in text


def test_make_reporter_is_plain_without_a_terminal():
    out = io.StringIO()
    with make_reporter(out) as r:      # every reporter works as a context manager
        assert isinstance(r, PlainReporter)
        r.on_start(CHANGE, "register")
    assert out.getvalue()
    assert isinstance(make_reporter(io.StringIO(), plain=False), RichReporter)


def test_summary_lines_list_ids_versions_and_errors():
    res = ApplyResult("s", {
        "a": ResourceResult("model[\"g\"][\"m\"][\"1\"]", ("register", "deploy"), "done", "m-1", "3", elapsed=2.0),
        "b": ResourceResult("connector[\"c\"]", ("create",), "failed", error="create_connector c: HTTP 400: no"),
    }, elapsed=2.5, warnings=["w1"])
    lines = summary_lines(res)
    assert lines[0] == 'model["g"]["m"]["1"]: register,deploy done, id m-1, version 3, 2.0s'
    assert lines[1].endswith("- create_connector c: HTTP 400: no")
    assert lines[2] == "Apply finished with errors: 1 done, 1 failed in 2.5s."
    assert lines[3] == "warning: w1"
