"""One progress display per phase of a long job: a tqdm bar on a terminal, and a few whole lines anywhere else."""
from __future__ import annotations

import sys
import time
from typing import Callable

from tqdm.auto import tqdm


class Phase:
    """A progress display for one phase: a bar on a terminal, and a few whole lines anywhere else (a log file
    or a notebook must not receive thousands of carriage-return updates)."""

    def __init__(self, name: str, total: int, log: Callable[[str], None]):
        self.name, self.total, self.log, self.done, self.t0 = name, max(1, total), log, 0, time.time()
        self.bar = None
        if sys.stderr.isatty():
            self.bar = tqdm(total=self.total, desc=name, leave=True, file=sys.stderr)
        else:
            log(f"[{name}] started")
        self._last_tenth = 0

    def update(self, done: int, detail: str = "") -> None:
        done = min(done, self.total)
        if self.bar is not None:
            self.bar.update(done - self.done)
            if detail:
                self.bar.set_postfix_str(detail)
        elif done * 10 // self.total > self._last_tenth:
            self._last_tenth = done * 10 // self.total
            self.log(f"[{self.name}] {done}/{self.total} {detail}".rstrip())
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.log(f"[{self.name}] done in {time.time() - self.t0:.0f} s")
