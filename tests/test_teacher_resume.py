"""The teacher's fine-tuning keeps checkpoints (kd_ref/teacher.py, teacher_setup.py): killed with
SIGKILL and rerun, it ends bitwise equal to an uninterrupted one on the CPU; a NaN keeps the last
good checkpoint; a checkpoint made with other flags is refused, naming the flag."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import run
from kd_ref import losses, teacher
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.progress import Progress
from kd_ref.plumbing.resume import Checkpoints
from tiny_task import write_tiny_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("teacher_resume")
    write_tiny_task(d, n_train=320, n_dev=60, n_test=20, num_labels=3)  # another task's head: fine-tuned first
    return d


def flags(tiny: Path, out: Path, *extra: str) -> list[str]:
    """20 teacher steps an epoch, a checkpoint every 10; the student run after it is short."""
    return ["--task", "rte", "--data-dir", str(tiny / "data"), "--teacher", str(tiny / "teacher"),
            "--out", str(out), "--method", "finetune", "--max-len", "32", "--batch-size", "16", "--epochs", "1",
            "--teacher-batch-size", "16", "--teacher-lr", "5e-4", "--teacher-epochs", "8",
            "--teacher-checkpoints-per-epoch", "2", *extra]


@pytest.fixture
def one_thread(monkeypatch):
    """The killed run is a subprocess with OMP_NUM_THREADS=1: the in-process runs use one thread too (run.py
    sets its threads from OMP_NUM_THREADS where it is set: a suite run with OMP_NUM_THREADS=2 gave 2)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    yield
    torch.set_num_threads(threads)


def test_sigkill_during_teacher_finetuning_then_rerun_is_bitwise_identical(tiny, tmp_path, one_thread, capsys,
                                                                          monkeypatch):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run.main(flags(tiny, whole))

    proc = subprocess.Popen([sys.executable, str(ROOT / "run.py"), *flags(tiny, killed)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=ROOT)
    meta_file = killed / "teacher-checkpoint" / "meta.json"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if meta_file.is_file():  # complete: teacher-checkpoint/ appears by a rename
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    at = Checkpoints(killed, 2, name="teacher-checkpoint", log=False).load()["meta"]["step"]  # maybe .old
    assert 10 <= at < 160 and not (killed / "teacher").exists(), at

    capsys.readouterr()
    totals = []
    monkeypatch.setattr(teacher, "Progress", lambda total, desc: totals.append(total) or Progress(total, desc))
    run.main(flags(tiny, killed))
    assert totals == [160 - at]  # it went on from the checkpoint, not from the start
    assert f"teacher: resuming its fine-tuning from {killed / 'teacher-checkpoint'}" in capsys.readouterr().out
    a, b = whole / "teacher", killed / "teacher"
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "finetune.json").read_text() == (b / "finetune.json").read_text()
    assert not (killed / "teacher-checkpoint").exists()  # dropped once the teacher is saved


def test_nan_in_teacher_finetuning_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    fink, calls = losses.fink, [0]

    def poisoned(*a, **kw):
        calls[0] += 1
        loss = fink(*a, **kw)
        return loss * math.nan if calls[0] == 26 else loss  # step 25: after the checkpoint at step 20

    monkeypatch.setattr(losses, "fink", poisoned)
    with pytest.raises(KdError, match=r"teacher fine-tuning, epoch 1, step 25: loss is nan; lower --teacher-lr"):
        run.main(flags(tiny, tmp_path))
    kept = Checkpoints(tmp_path, 2, name="teacher-checkpoint", log=False).load()
    assert kept["meta"]["step"] == 20 and kept["meta"]["recipe"]["teacher_lr"] == 5e-4
    assert all(torch.isfinite(w).all() for w in kept["weights"].values())
    assert not (tmp_path / "teacher").exists()
    monkeypatch.undo()
    with pytest.raises(KdError, match=r"teacher-checkpoint holds a fine-tuning started with --teacher-lr 0.0005 "
                                      r"\(now 0.001\): rerun with the same flags"):
        run.main(flags(tiny, tmp_path, "--teacher-lr", "1e-3"))
