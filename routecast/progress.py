"""Progress of long work (fitting routers, tuning trials), for a person at a terminal or a CI log.

Why one helper: a rich bar draws nothing when stderr is not a terminal, so ``evaluate`` (a
minute) and ``tune`` (minutes) printed nothing until done in a CI log, and tune showed no trial
counter. :class:`Progress` draws a transient rich bar on a terminal and otherwise writes plain
lines to stderr, ``routecast: <what> 3/8 done, now: <step> (41 s)``, at most one every ``every``
seconds (the end shows too when any line was written), so a log stays short.
A base module (stdlib + rich, imported lazily): every layer may report progress.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

#: seconds between two plain progress lines (a CI log gets a line every few seconds at most)
EVERY = 5.0


class Progress:
    """``with Progress("fitting routers", total=8) as progress: progress.step("knn")``.

    ``step(description)`` announces the next item of a few coarse ones (``done`` counts the items
    announced before it); ``advance(n)`` counts ``n`` more of many small units (prompts embedded,
    bytes routed: ``unit`` names them). The first report always shows, then one every ``every``
    seconds at most. ``enabled=False`` makes it silent; ``stream`` (default: stderr) decides the shape: a terminal gets a rich bar, anything
    else plain lines; ``clock`` is injectable for tests.
    """

    def __init__(self, what: str, total: Optional[int] = None, *, enabled: bool = True,
                 stream: Optional[TextIO] = None, every: float = EVERY, unit: str = "",
                 initial: int = 0, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.total = total
        self.enabled = enabled
        self.stream = stream
        self.every = every
        self.unit = unit
        self.clock = clock
        self.done = initial
        self.lines = 0
        self._bar = None
        self._task = None
        self._started = 0.0
        self._last: Optional[float] = None
        self._last_done: Optional[int] = None

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def __enter__(self) -> "Progress":
        self._started = self.clock()
        out = self._out()
        isatty = getattr(out, "isatty", None)
        if self.enabled and isatty is not None and isatty():
            from rich.console import Console
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(console=Console(file=out), transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.what, total=self.total, completed=self.done)
        return self

    def _count(self) -> str:
        count = f"{self.done:,}/{self.total:,}" if self.total is not None else f"{self.done:,}"
        return f"{count} {self.unit}" if self.unit else count

    def advance(self, n: int = 1) -> None:
        """``n`` more units are done."""
        if not self.enabled:
            return
        self.done += n
        if self._bar is not None:
            self._bar.advance(self._task, n)
            return
        now = self.clock()
        if self._last is None or now - self._last >= self.every:
            self._write(f"{self.what} {self._count()} done", now)

    def step(self, description: str) -> None:
        """The next item starts: ``description`` says what it is."""
        if not self.enabled:
            return
        if self._bar is not None:
            if self.done:
                self._bar.advance(self._task)
            self._bar.update(self._task, description=f"{self.what}: {description}")
            self.done += 1
            return
        now = self.clock()
        if self._last is None or now - self._last >= self.every:
            self._write(f"{self.what} {self._count()} done, now: {description}", now)
        self.done += 1

    def _write(self, text: str, now: float) -> None:
        out = self._out()
        out.write(f"routecast: {text} ({now - self._started:.0f} s)\n")
        out.flush()
        self._last = now
        self._last_done = self.done
        self.lines += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
        elif self.enabled and exc is None and self.lines and self._last_done != self.done:
            self._write(f"{self.what} {self._count()} done", self.clock())
        return False
