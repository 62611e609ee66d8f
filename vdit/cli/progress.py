"""The one progress helper of the long commands: `vdit segment`, `vdit evaluate`, `vdit score`,
`vdit convert-official` and `vdit mini ...`.

A tqdm bar on stderr when stderr is a terminal; nothing at all otherwise, so logs, CI and pipes stay
quiet (a bar redrawn with carriage returns is noise in a file), and nothing with `--quiet`.

    progress = Progress(progress_enabled(args.quiet), desc="ytvos")
    progress.start(total=202, unit="video", initial=done)   # (re)start the bar
    progress.step("bear: anno_0, frames 36 of 50")          # what the current item is doing (postfix)
    progress.advance("bear")                                # one item finished
    progress.close()

`Progress` is what `vdit.inference.benchmark_session.BenchmarkOptions(tracker=...)` expects (start / advance /
step); `callback()` adapts it to the `progress(message)` callbacks of `vdit.evaluation`.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, TextIO


def progress_enabled(quiet: bool = False, stream: TextIO | None = None) -> bool:
    """True when a bar should be drawn: not `--quiet` and `stream` (default stderr) is a terminal."""
    if quiet:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class Progress:
    """One tqdm bar that the work (re)starts, advances and annotates; a no-op when disabled.

    `leave=False` erases the bar when it closes (inner bars, e.g. the frames of one video among many);
    `position` stacks bars (0 = the top one)."""

    def __init__(self, enabled: bool, desc: str | None = None, unit: str = "it", stream: TextIO | None = None,
                 leave: bool = True, position: int | None = None):
        self.enabled = bool(enabled)
        self.desc = desc
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.leave = leave
        self.position = position
        self._bar: Any = None

    def start(self, total: int | None = None, unit: str | None = None, initial: int = 0,
              desc: str | None = None) -> None:
        """A fresh bar of `total` items (None: unknown, the bar counts up), `initial` of them already done."""
        self.close()
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=total, initial=initial, desc=desc if desc is not None else self.desc,
                         unit=unit or self.unit, file=self.stream, dynamic_ncols=True, leave=self.leave,
                         position=self.position)

    def _ensure(self) -> Any:
        if self._bar is None and self.enabled:
            self.start()
        return self._bar

    def advance(self, message: str | None = None, n: int = 1) -> None:
        """`n` items finished; `message` (e.g. the item's name) is shown beside the bar."""
        bar = self._ensure()
        if bar is None:
            return
        if message is not None:
            bar.set_postfix_str(message, refresh=False)
        bar.update(n)

    def step(self, message: str) -> None:
        """What the current item is doing (a long video is minutes of work between two `advance`s)."""
        bar = self._ensure()
        if bar is not None:
            bar.set_postfix_str(message)

    def write(self, message: str) -> None:
        """A line printed above the bar (only when the bar is shown: a quiet run prints nothing)."""
        if not self.enabled:
            return
        from tqdm.auto import tqdm

        tqdm.write(message, file=self.stream)

    def callback(self) -> Callable[[str], None] | None:
        """`advance` as a `progress(name)` callback (vdit.evaluation's), None when disabled."""
        return self.advance if self.enabled else None

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


__all__ = ["Progress", "progress_enabled"]
