"""A live progress bar: steps, steps/s and the recent training return. Throttled to ~5 redraws/s."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


class ProgressBar:
    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self.enabled = enabled
        self.last_draw = 0.0
        self.t0 = time.perf_counter()
        self.start = start
        self.extra = ""
        if not enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]steps"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[speed]} steps/s"),
            TextColumn("return {task.fields[ret]}"),
            TextColumn("{task.fields[extra]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.progress.add_task("train", total=total, completed=start, speed="-", ret="-", extra="")
        self.progress.start()

    def update(self, step: int, recent_return: float | None, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if not force and now - self.last_draw < 0.2:
            return
        self.last_draw = now
        speed = (step - self.start) / max(now - self.t0, 1e-9)
        ret = "-" if recent_return is None else f"{recent_return:.1f}"
        self.progress.update(self.task, completed=step, speed=f"{speed:,.0f}", ret=ret, extra=self.extra)

    def note(self, text: str) -> None:
        self.extra = text

    def close(self) -> None:
        if self.enabled:
            self.progress.stop()
