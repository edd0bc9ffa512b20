"""A dependency-free progress bar with rate and ETA, drawn on stderr.

On a terminal it redraws one line in place; elsewhere (CI logs, pipes) it prints a line
every ``log_every`` seconds and a final summary, so logs stay readable.
"""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int | None, desc: str, unit: str = "img", log_every: float = 15.0, stream=None):
        self.total, self.desc, self.unit = total, desc, unit
        self.count = 0
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.log_every = log_every
        self.start = self._last_draw = time.perf_counter()
        self.note = ""  # shown after the rate (e.g. a training loss)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return self.count / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.perf_counter()
        interval = 0.1 if self.tty else self.log_every
        if now - self._last_draw >= interval:
            self._last_draw = now
            self._draw(final=False)

    def close(self) -> None:
        self._draw(final=True)

    def _draw(self, final: bool) -> None:
        elapsed = time.perf_counter() - self.start
        rate = self.rate
        if self.total:
            frac = min(1.0, self.count / self.total)
            bar = "#" * int(frac * 24) + "-" * (24 - int(frac * 24))
            eta = (self.total - self.count) / rate if rate > 0 else 0.0
            text = (f"{self.desc} {frac:4.0%} |{bar}| {self.count}/{self.total} {_plural(self.unit)} "
                    f"[{_clock(elapsed)}<{_clock(eta)}, {rate:.1f} {self.unit}/s]")
        else:
            text = f"{self.desc} {self.count} {_plural(self.unit)} [{_clock(elapsed)}, {rate:.1f} {self.unit}/s]"
        if self.note:
            text += f" {self.note}"
        if self.tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _plural(unit: str) -> str:
    """What the count counts, said in full: "16/16 images", not "16/16" (batches? images?)."""
    return {"img": "images", "B": "bytes"}.get(unit, f"{unit}s")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
