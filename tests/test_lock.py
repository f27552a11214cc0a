"""One writer per run folder (kd_ref/plumbing/lock.py): a second run.py into a folder in use stops at once,
naming the holder, and touches nothing; a holder killed with SIGKILL blocks nobody; sweeps sharing
the teacher wait for the one preparing it."""
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import run
from kd_ref.plumbing import lock
from kd_ref.plumbing.errors import KdError
from tiny_task import write_tiny_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("lock")
    write_tiny_task(d, n_train=160, n_dev=40, n_test=20, num_labels=3)  # another task's head: fine-tuned first
    return d


def flags(tiny: Path, out: Path, *extra: str) -> list[str]:
    return ["--task", "rte", "--data-dir", str(tiny / "data"), "--teacher", str(tiny / "teacher"),
            "--out", str(out), "--method", "kd", "--max-len", "32", "--batch-size", "16", "--epochs", "1",
            "--teacher-epochs", "1", "--teacher-lr", "5e-4", *extra]


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_the_same_command_twice_stops_the_second_at_once_and_a_killed_holder_blocks_nobody(tiny, tmp_path):
    with lock.hold(tmp_path / "teacher"):  # stalls the first run at its teacher stage, its run folder locked
        first = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *flags(tiny, tmp_path)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.monotonic() + 120
        while f"pid {first.pid} " not in read(tmp_path / ".locks" / "kd-s1.lock"):
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took its lock"
            time.sleep(0.01)
        before = tree(tmp_path)
        with pytest.raises(KdError, match=rf"^{tmp_path / 'kd-s1'} is in use by pid {first.pid} on "
                                          rf"{socket.gethostname()} since \S+ \S+ UTC: let it finish, or use another"):
            run.main(flags(tiny, tmp_path))  # the same command again, in this process
        assert tree(tmp_path) == before
        first.send_signal(signal.SIGKILL)  # dies holding kd-s1's lock
        assert first.wait() == -signal.SIGKILL
    run.main(flags(tiny, tmp_path))  # the dead holder's lock went with it
    assert (tmp_path / "kd-s1" / "metrics.json").is_file()


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_a_folder_in_use_is_left_untouched(tiny, tmp_path):
    run.main(flags(tiny, tmp_path))
    with lock.hold(tmp_path / "kd-s1"):
        before = tree(tmp_path)
        with pytest.raises(KdError, match=rf"kd-s1 is in use by pid {os.getpid()} on .* since .*: let it finish"):
            run.main(flags(tiny, tmp_path, "--overwrite"))  # would otherwise redo the run
        assert tree(tmp_path) == before


def test_sweeps_sharing_a_teacher_wait_for_the_one_preparing_it(tiny, tmp_path, monkeypatch, capsys):
    waiting, done = threading.Event(), threading.Event()
    real_lock = lock.lock

    def noting_waits(fd, path, blocking):
        if blocking:
            waiting.set()
        return real_lock(fd, path, blocking)

    def other_sweep():  # holds the teacher stage until this process waits for it
        with lock.hold(tmp_path / "teacher"):
            done.set()
            waiting.wait(120)

    holder = threading.Thread(target=other_sweep)
    holder.start()
    done.wait(10)
    monkeypatch.setattr(lock, "lock", noting_waits)
    run.main(flags(tiny, tmp_path, "--seed", "2"))
    holder.join()
    out = capsys.readouterr().out
    assert f"{tmp_path / 'teacher'} is in use by pid {os.getpid()} on" in out and "waiting for it to finish" in out
    assert out.index("waiting for it") < out.index("fine-tuning it")
    assert (tmp_path / "kd-s2" / "metrics.json").is_file()


def test_a_file_system_without_locks_gets_a_warning(tmp_path, monkeypatch, capsys):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with lock.hold(tmp_path / "run"):
        pass
    assert "cannot lock (No locks available): nothing stops a second process" in capsys.readouterr().err
