"""One writer per run directory: an exclusive flock on RUN/.lock.

fcntl is imported where a lock is taken, not at the top: it exists only on POSIX systems, and reading run
directories (rundir imports this module) must work where it is missing."""
from __future__ import annotations

import os
from pathlib import Path


class RunLockedError(RuntimeError):
    pass


class RunLock:
    """An exclusive flock on RUN/.lock: the kernel drops it when the holder dies, so a killed run never
    leaves the directory stuck. The holder's pid is written inside for the error message."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"another training process (pid {holder}) is writing '{self.path.parent}'; wait for "
                                 f"it to finish or stop it, or train into another --out folder.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
