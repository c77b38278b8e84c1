"""One writer per run folder: `RUN/.lock`.

A process that trains in a run folder holds `RUN/.lock`, a small JSON file {"pid", "host", "started", "boot",
"pid_started"}
created with O_CREAT|O_EXCL and kept open under `fcntl.flock(LOCK_EX)`. The kernel drops a flock when its
holder exits for any reason (SIGKILL, OOM killer), so the lock of a crashed run frees itself; the file stays
behind and names the dead holder. Whoever opens the lock file and gets the flock owns the lock; a second writer
(another `slovo train --resume`, a sweep worker retrying the trial) fails with one line naming the holder.

A lock file whose flock is free is taken over when its holder is gone: on this host, when `process_alive(pid)`
says so (a pid reused by a later process is told apart by `pid_started`, its creation time) or the
machine has rebooted since (`boot` differs). A holder on another host (a run folder on a shared
filesystem) cannot be checked from here and counts as alive; the message then says which file to delete.

Only one process of a job takes the lock: under torchrun, rank 0 (the rank that writes the folder).
No torch import here, so `slovo runs` can call `lock_holder` cheaply.
"""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path

from slovo.errors import SlovoError
from slovo.utils import process_alive, process_started

try:
    import fcntl
except ImportError:  # Windows: no flock; the pid check alone decides
    fcntl = None

LOCK_FILE = ".lock"
_FLOCK_TRIES = 5  # a `lock_holder` probe holds a shared flock for microseconds; try again before saying "busy"
_FLOCK_PAUSE_S = 0.02


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _try_flock(fd: int, exclusive: bool) -> bool | None:
    """True when the flock was taken, False when another open file holds it, None when flock is unavailable."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError:  # ENOLCK / EOPNOTSUPP: a filesystem without flock
        return None


def _read_fd(fd: int) -> dict:
    """The holder record in an open lock file; {} when empty or torn (a holder still writing it)."""
    chunks = []
    offset = 0
    while block := os.pread(fd, 4096, offset):
        chunks.append(block)
        offset += len(block)
    try:
        info = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd` (a releasing holder unlinks it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def _gone(info: dict) -> bool:
    """Whether the holder named in a lock file whose flock is free has certainly stopped."""
    pid, host = info.get("pid"), info.get("host")
    if not isinstance(pid, int):
        return True  # torn or empty record: its writer never got as far as the flock it would be holding
    if host and host != socket.gethostname():
        return False  # another machine's process cannot be checked from here
    boot = _boot_id()
    if boot and info.get("boot") and info["boot"] != boot:
        return True  # from before a reboot: the pid may have been reused since
    return not process_alive(pid, host, info.get("pid_started"))


def describe_holder(info: dict) -> str:
    """ "pid 123 on host h, since 2025-01-01T10:00:00+00:00" (or what the record has of it)."""
    if not isinstance(info.get("pid"), int):
        return "starting up"
    return f"pid {info['pid']} on host {info.get('host', '?')}, since {info.get('started', '?')}"


def _busy(run_dir: Path, info: dict) -> SlovoError:
    msg = f"{run_dir}: another slovo process is training in it ({describe_holder(info)}); wait for it or stop it"
    host = info.get("host")
    if host and host != socket.gethostname():
        msg += f" (if it is gone, delete {run_dir / LOCK_FILE})"
    return SlovoError(msg)


def lock_holder(run_dir: str | Path) -> dict | None:
    """The live holder of the run's lock as {"pid", "host", "started", "boot"} ({"pid": None} while it is still
    writing its record), or None when no process holds it (no lock file, or one left by a dead process).
    Does not take the lock; for `--overwrite` checks and for `slovo runs`."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        info = _read_fd(fd)
        flocked = _try_flock(fd, exclusive=False)
        if flocked is False:
            return info or {"pid": None}
        return None if _gone(info) else info
    finally:
        os.close(fd)  # also drops the probe's shared flock


class RunLock:
    """The lock of one run folder, e.g.

        with RunLock(run_dir):
            train(...)

    `acquire()` creates the folder if needed, takes the lock (taking over one left by a dead process, reported
    in `.took_over`) or raises a one-line SlovoError naming the live holder; `release()` removes the lock file.
    The lock is held by this object's open file, so a second RunLock on the same folder fails, in this process
    too. Forked children inherit the open file: if the holder dies, the lock frees when they exit too."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.took_over: dict | None = None  # the dead holder's record, when the lock was taken over
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd, created = self._open()
            if fd is None:
                continue  # the file vanished between the two opens (its holder released it): start over
            try:
                flocked = self._flock_with_retries(fd)
                if flocked is False:
                    raise _busy(self.run_dir, _read_fd(fd))
                if not _same_file(fd, self.path):
                    os.close(fd)  # we locked a file its holder has just unlinked: start over
                    continue
                previous = {} if created else _read_fd(fd)
                if previous and not _gone(previous):
                    raise _busy(self.run_dir, previous)
                self._write_record(fd)
            except BaseException:
                os.close(fd)
                raise
            self.took_over = previous or None
            self._fd = fd
            return self

    def release(self) -> None:
        """Give the lock up and remove the lock file. Safe to call when not held."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink()  # unlink before the flock drops, so no one can lock a file about to vanish
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    # -- internals

    def _open(self) -> tuple[int | None, bool]:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644), True
        except FileExistsError:
            pass
        try:
            return os.open(self.path, os.O_RDWR), False
        except FileNotFoundError:
            return None, False

    @staticmethod
    def _flock_with_retries(fd: int) -> bool | None:
        for attempt in range(_FLOCK_TRIES):
            got = _try_flock(fd, exclusive=True)
            if got is not False:
                return got
            if attempt + 1 < _FLOCK_TRIES:
                time.sleep(_FLOCK_PAUSE_S)
        return False

    @staticmethod
    def _write_record(fd: int) -> None:
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            "boot": _boot_id(),
            "pid_started": process_started(),
        }
        data = (json.dumps(record) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
