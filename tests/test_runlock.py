"""One writer per run folder: RUN/.lock with a flock, taken over from dead holders."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from slovo.errors import SlovoError
from slovo.train.runlock import LOCK_FILE, RunLock, lock_holder
from slovo.utils import process_alive, process_started

HOLDER = textwrap.dedent("""
    import sys, time
    from slovo.train.runlock import RunLock
    lock = RunLock(sys.argv[1]).acquire()
    print("locked", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path):
    """Start a process that takes the lock of tmp_path/run and keeps it; yields the Popen."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_second_process_is_refused_with_one_line_naming_the_holder(tmp_path, holder):
    run = tmp_path / "run"
    with pytest.raises(SlovoError) as e:
        RunLock(run).acquire()
    msg = str(e.value)
    assert msg.startswith(
        f"{run}: another slovo process is training in it (pid {holder.pid} on host {socket.gethostname()}, since "
    )
    assert msg.endswith("wait for it or stop it") and "\n" not in msg
    assert lock_holder(run)["pid"] == holder.pid


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path, holder):
    run = tmp_path / "run"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_holder(run) is None  # the file is still there, but its holder is gone
    assert (run / LOCK_FILE).exists()

    with RunLock(run) as lock:
        assert lock.took_over["pid"] == holder.pid
        assert lock_holder(run)["pid"] == os.getpid()
    assert not (run / LOCK_FILE).exists()
    assert lock_holder(run) is None


def test_a_second_lock_in_the_same_process_is_refused_and_release_frees_it(tmp_path):
    run = tmp_path / "run"
    first = RunLock(run).acquire()
    assert first.took_over is None and first.held
    with pytest.raises(SlovoError, match=f"pid {os.getpid()}"):
        RunLock(run).acquire()
    first.release()
    first.release()  # twice is harmless
    with RunLock(run):
        pass


def test_a_lock_file_naming_a_dead_pid_without_a_flock_is_taken_over(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(), "started": "earlier"}))
    assert lock_holder(run) is None
    with RunLock(run) as lock:
        assert lock.took_over["pid"] == proc.pid


def test_a_live_pid_counts_as_holding_even_without_a_flock(tmp_path):
    # e.g. a filesystem without flock: the pid check alone must keep a second writer out
    run = tmp_path / "run"
    run.mkdir()
    record = {"pid": os.getppid(), "host": socket.gethostname(), "started": "earlier"}
    (run / LOCK_FILE).write_text(json.dumps(record))
    assert lock_holder(run) == record
    with pytest.raises(SlovoError, match=f"pid {os.getppid()}"):
        RunLock(run).acquire()


def test_a_lock_file_naming_a_pid_reused_by_a_later_process_is_taken_over(tmp_path):
    # the pid is alive, but its process started an hour after the one that wrote the record: the writer is gone
    run = tmp_path / "run"
    run.mkdir()
    reused = os.getppid()
    record = {"pid": reused, "host": socket.gethostname(), "started": "earlier"}
    record["pid_started"] = process_started(reused) - 3600
    (run / LOCK_FILE).write_text(json.dumps(record))
    assert lock_holder(run) is None
    with RunLock(run) as lock:
        assert lock.took_over["pid"] == reused
        assert lock_holder(run)["pid_started"] == process_started()  # the new holder's record tells it apart


def test_process_alive_tells_a_live_process_from_a_gone_one_and_from_a_reused_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    parent = os.getppid()
    assert process_alive(parent) and process_alive(parent, started=process_started(parent))
    assert not process_alive(parent, started=process_started(parent) + 10)
    assert not process_alive(proc.pid)
    assert process_alive(proc.pid, host="elsewhere.invalid")  # another machine's pid cannot be checked


def test_a_holder_on_another_host_is_not_taken_over_and_the_message_says_what_to_delete(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid", "started": "earlier"}))
    with pytest.raises(SlovoError, match=r"pid 1 on host elsewhere.invalid.*if it is gone, delete .*\.lock"):
        RunLock(run).acquire()
    assert lock_holder(run)["host"] == "elsewhere.invalid"


def test_a_lock_from_before_a_reboot_is_taken_over_even_if_its_pid_is_alive_now(tmp_path):
    from slovo.train.runlock import _boot_id

    if _boot_id() is None:
        pytest.skip("no boot id on this system")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(
        json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "earlier", "boot": "another-boot"})
    )
    assert lock_holder(run) is None
    with RunLock(run):
        pass


def test_no_lock_file_means_no_holder(tmp_path):
    assert lock_holder(tmp_path) is None
    assert lock_holder(tmp_path / "missing") is None
