"""How an apply reports what it is doing: the `Reporter` hooks and two implementations.

The executor never prints; it calls these hooks (from several worker threads at once, so every
implementation here is thread-safe). `RichReporter` is a live terminal display of what is running
and what is being waited on, with elapsed times; `PlainReporter` writes one line per event, for CI
logs and pipes. `make_reporter()` picks one. `rich` is imported only when a `RichReporter` is made.

Steps named in the hooks: undeploy, create, update, adopt, register, upload, wait, resume, fixup,
deploy, delete, skip.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Optional, Protocol

from mlsync.core.plan import ResourceChange

if TYPE_CHECKING:  # pragma: no cover
    from mlsync.run.results import ApplyResult


class Reporter(Protocol):
    def on_start(self, change: ResourceChange, step: str) -> None: ...
    def on_progress(self, change: ResourceChange, step: str, message: str) -> None: ...
    def on_done(self, change: ResourceChange, step: str, elapsed: float, detail: Optional[str] = None) -> None: ...
    def on_error(self, change: ResourceChange, step: str, error: BaseException) -> None: ...
    def on_wait(self, task_ids: list[str], elapsed: float) -> None: ...


class NullReporter:
    """Reports nothing. Subclass it and override only the hooks you need.

    Every reporter here is also a context manager (a no-op except for `RichReporter`, whose live
    area runs inside the `with` block), so callers can always write `with make_reporter() as r:`.
    """

    def __enter__(self) -> "NullReporter":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def on_start(self, change: ResourceChange, step: str) -> None:
        pass

    def on_progress(self, change: ResourceChange, step: str, message: str) -> None:
        pass

    def on_done(self, change: ResourceChange, step: str, elapsed: float, detail: Optional[str] = None) -> None:
        pass

    def on_error(self, change: ResourceChange, step: str, error: BaseException) -> None:
        pass

    def on_wait(self, task_ids: list[str], elapsed: float) -> None:
        pass


def _fmt_elapsed(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s"


class PlainReporter(NullReporter):
    """One line per event, no colour, no cursor movement: for CI logs and pipes.

    Waiting is reported at most every `wait_every` seconds ("waiting for 3 task(s) ... 12.0s").
    """

    def __init__(self, stream: Optional[IO[str]] = None, *, clock: Callable[[], float] = time.monotonic,
                 wait_every: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self.wait_every = wait_every
        self._last_wait: Optional[float] = None
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def on_start(self, change: ResourceChange, step: str) -> None:
        self._line(f"{change.address}: {step} ...")

    def on_progress(self, change: ResourceChange, step: str, message: str) -> None:
        self._line(f"{change.address}: {step}: {message}")

    def on_done(self, change: ResourceChange, step: str, elapsed: float, detail: Optional[str] = None) -> None:
        extra = f" ({detail})" if detail else ""
        self._line(f"{change.address}: {step} done after {_fmt_elapsed(elapsed)}{extra}")

    def on_error(self, change: ResourceChange, step: str, error: BaseException) -> None:
        self._line(f"{change.address}: {step} FAILED: {error}")

    def on_wait(self, task_ids: list[str], elapsed: float) -> None:
        now = self.clock()
        with self._lock:
            if self._last_wait is not None and now - self._last_wait < self.wait_every:
                return
            self._last_wait = now
        self._line(f"waiting for {len(task_ids)} task(s) ... {_fmt_elapsed(elapsed)}")


class RichReporter(NullReporter):
    """A live display (rich) of the steps running now and the tasks being waited on.

    Finished and failed steps scroll above the live area as permanent lines. Use it as a context
    manager around `apply()`; outside the `with` block it still prints the permanent lines.
    """

    def __init__(self, console: Any = None, *, clock: Callable[[], float] = time.monotonic,
                 refresh_per_second: float = 4.0) -> None:
        from rich.console import Console

        self.console = console if console is not None else Console(stderr=True)
        self.clock = clock
        self.refresh_per_second = refresh_per_second
        self._running: dict[tuple[str, str], tuple[float, str]] = {}   # (address, step) -> (start, message)
        self._waiting: tuple[int, float] = (0, 0.0)
        self._done = 0
        self._failed = 0
        self._lock = threading.Lock()
        self._live: Any = None

    # -- context manager: the live area
    def __enter__(self) -> "RichReporter":
        from rich.live import Live

        self._live = Live(self, console=self.console, refresh_per_second=self.refresh_per_second, transient=True)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None

    # -- what the live area shows (rich calls this on every refresh)
    def __rich__(self) -> Any:
        from rich.markup import escape
        from rich.table import Table

        now = self.clock()
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="dim")
        table.add_column()
        table.add_column(style="cyan")
        table.add_column(style="dim")
        with self._lock:
            running = sorted(self._running.items(), key=lambda kv: kv[1][0])
            waiting, wait_elapsed = self._waiting
            done, failed = self._done, self._failed
        for (address, step), (start, message) in running:
            table.add_row(_fmt_elapsed(now - start), escape(address), step, escape(message))
        footer = f"{done} step(s) done"
        if failed:
            footer += f", [red]{failed} failed[/red]"
        if waiting:
            footer += f"; waiting on {waiting} server task(s) for {_fmt_elapsed(wait_elapsed)}"
        table.add_row("", footer, "", "")
        return table

    def _print(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def on_start(self, change: ResourceChange, step: str) -> None:
        with self._lock:
            self._running[(str(change.address), step)] = (self.clock(), "")

    def on_progress(self, change: ResourceChange, step: str, message: str) -> None:
        with self._lock:
            key = (str(change.address), step)
            start = self._running.get(key, (self.clock(), ""))[0]
            self._running[key] = (start, message)

    def on_done(self, change: ResourceChange, step: str, elapsed: float, detail: Optional[str] = None) -> None:
        from rich.markup import escape

        with self._lock:
            self._running.pop((str(change.address), step), None)
            self._done += 1
        extra = f" [dim]({escape(detail)})[/dim]" if detail else ""
        self._print(f"[green]✓[/green] {escape(str(change.address))} {step} "
                    f"[dim]{_fmt_elapsed(elapsed)}[/dim]{extra}")

    def on_error(self, change: ResourceChange, step: str, error: BaseException) -> None:
        from rich.markup import escape

        with self._lock:
            self._running.pop((str(change.address), step), None)
            self._failed += 1
        self._print(f"[red]✗[/red] {escape(str(change.address))} {step}: [red]{escape(str(error))}[/red]")

    def on_wait(self, task_ids: list[str], elapsed: float) -> None:
        with self._lock:
            self._waiting = (len(task_ids), elapsed)


def make_reporter(stream: Optional[IO[str]] = None, *, plain: Optional[bool] = None) -> Reporter:
    """`RichReporter` on an interactive terminal, `PlainReporter` otherwise (pipes, CI, TERM=dumb).

    `plain=True/False` forces the choice. NO_COLOR is honoured by rich itself (no colour, same layout).
    """
    stream = stream if stream is not None else sys.stderr
    if plain is None:
        is_tty = bool(getattr(stream, "isatty", lambda: False)())
        plain = not is_tty or os.environ.get("TERM") == "dumb" or bool(os.environ.get("CI"))
    if plain:
        return PlainReporter(stream)
    from rich.console import Console

    return RichReporter(Console(file=stream))


def summary_lines(result: "ApplyResult") -> list[str]:
    """The final summary as plain lines: one per resource with action, status, id, version, elapsed."""
    lines = []
    for r in result.resources.values():
        parts = [f"{r.address}: {','.join(r.actions)} {r.status}"]
        if r.id:
            parts.append(f"id {r.id}")
        if r.server_version:
            parts.append(f"version {r.server_version}")
        if r.replaced_id:
            parts.append(f"replaced {r.replaced_id}")
        parts.append(_fmt_elapsed(r.elapsed))
        line = ", ".join(parts)
        if r.error:
            line += f" - {r.error}"
        lines.append(line)
    counts = result.counts()
    lines.append("Apply " + ("complete" if result.ok else "finished with errors") + ": "
                 + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
                 + f" in {_fmt_elapsed(result.elapsed)}.")
    for w in result.warnings:
        lines.append(f"warning: {w}")
    return lines
