"""Small helpers shared by every stage: atomic writes and staged folders, hashing, JSON reading, the code's version,
process liveness (psutil)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, then rename: readers see old or new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give them the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written temp folder into place; the old folder (if any) is removed after."""
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(final_dir: str | Path) -> Iterator[Path]:
    """Yield a hidden folder beside `final_dir` to write into; when the block ends it replaces `final_dir`
    in one rename, and if the block fails it is removed. Readers never see a half-written folder."""
    final_dir = Path(final_dir)
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_json_dict(path: str | Path) -> dict:
    """A JSON object from `path`, or {} when it is missing, unreadable or not an object (a run still starting)."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON-lines file, skipping a torn last line (a run killed mid-write)."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def code_version() -> dict:
    """slovo's version and, when run from a git checkout, the commit and whether it was dirty."""
    from slovo import __version__

    info: dict[str, Any] = {"slovo": __version__}
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=5,
            ).stdout.strip()
            if commit:
                info["git_commit"] = commit
                info["git_dirty"] = bool(dirty)
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def process_started(pid: int | None = None) -> float | None:
    """When process `pid` (default: this one) started, as psutil's create_time; None when it is gone or hidden.
    Recorded beside a pid, it tells the recorded process from a later one the system gave the same pid."""
    import psutil

    try:
        return psutil.Process(os.getpid() if pid is None else pid).create_time()
    except psutil.Error:
        return None


def process_alive(pid: int, host: str | None = None, started: float | None = None) -> bool:
    """Whether process `pid` may still be running. Only a pid on this host can be checked: a pid named with
    another host's name is taken as alive (we cannot tell). A process of another user counts as alive.
    `started` (process_started() when the pid was recorded): a process now under that pid that started at
    another time reused the pid, and the recorded one is gone. psutil, not os.kill(pid, 0), which on Windows
    sends the process a Ctrl-C."""
    import socket

    import psutil

    if host and host != socket.gethostname():
        return True
    if not psutil.pid_exists(pid):
        return False
    if started is None:
        return True
    try:
        return abs(psutil.Process(pid).create_time() - float(started)) < 0.5
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # exists but cannot be inspected (another user's, on some systems)
        return True


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (files created, renamed or removed in it) to the disk. A no-op where folders
    cannot be opened (Windows)."""
    import errno

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (PermissionError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    except OSError as e:  # some filesystems (and macOS for some folders) refuse fsync on a folder
        if e.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed (`sys.argv` by default) for a file that records it (run.json, evals/), with the
    password of any URL in it masked: a `--storage postgresql://USER:PASS@HOST/DB` would otherwise reach every
    trial's run.json."""
    return " ".join(_mask_url(arg) for arg in (sys.argv if argv is None else argv))


def _mask_url(arg: str) -> str:
    if "://" not in arg or "@" not in arg:
        return arg
    flag, sep, url = arg.partition("=") if arg.startswith("-") and "=" in arg.split("://")[0] else ("", "", arg)
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        masked = parsed.render_as_string(hide_password=True) if parsed.password is not None else url
    except Exception:  # noqa: BLE001 - no SQLAlchemy, or not a URL it parses: mask what sits before the @
        masked = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return flag + sep + masked
