"""Checkpoints and resume (kd_ref/plumbing/resume.py, run.py): a run killed with SIGKILL and rerun
ends bitwise equal to an uninterrupted one; a crash while writing a checkpoint leaves a
complete one; a NaN keeps the last good checkpoint; flags must match to resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import run
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing import resume
from kd_ref.plumbing.resume import Checkpoints
from tiny_task import write_tiny_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A teacher that already has an RTE head: no fine-tuning."""
    d = tmp_path_factory.mktemp("resume")
    write_tiny_task(d, n_train=320, n_dev=60, n_test=20, num_labels=2)
    return d


def flags(tiny: Path, out: Path, *extra: str) -> list[str]:
    """A checkpoint at every phase end (--checkpoint-minutes 0): these runs take seconds."""
    return ["--task", "rte", "--data-dir", str(tiny / "data"), "--teacher", str(tiny / "teacher"),
            "--out", str(out), "--method", "ksm-soft", "--seed", "3", "--max-len", "32", "--batch-size", "16",
            "--epochs", "2", "--episodes", "2", "--phases-per-epoch", "4", "--lr", "5e-4",
            "--checkpoint-minutes", "0", *extra]


def command(tiny, out, *extra):
    return [sys.executable, str(ROOT / "run.py"), *flags(tiny, out, *extra)]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count in every process


@pytest.mark.parametrize("method, extra, after", [
    ("ksm-soft", (), 0),
    # halving saves at the end of each proxy run: killed once a few of them are scored
    ("halving", ("--search-budget", "2", "--reward-fraction", "0.2"), 3),
    # knockout-gate: all's per-row losses (episode 0), the reference of every later z, come back from its state
    ("knockout-gate", ("--search-budget", "2", "--reward-fraction", "0.2"), 2),
    # episode-ac: its greedy subsets and references come back from the history it saved
    ("episode-ac", ("--search-budget", "2", "--reward-fraction", "0.2"), 2)])
def test_sigkill_mid_episode_then_rerun_is_bitwise_identical(tiny, tmp_path, method, extra, after):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    extra = ("--method", method, *extra)
    subprocess.run(command(tiny, whole, *extra), check=True, capture_output=True, env=env(), cwd=ROOT)

    proc = subprocess.Popen(command(tiny, killed, *extra), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=env(), cwd=ROOT)
    meta_file = killed / f"{method}-s3" / "checkpoint" / "meta.json"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):  # not there yet, or replaced while we read it
            meta = None
        if meta and meta["run"] == "episode" and meta["episode"] >= after:  # some of the episodes are done
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    assert proc.wait() == -signal.SIGKILL, "the run ended before it could be killed mid-episode"
    at = json.loads(meta_file.read_text())
    assert at["run"] == "episode", at
    assert not (killed / f"{method}-s3" / "metrics.json").exists()

    resumed = subprocess.run(command(tiny, killed, *extra), check=True, capture_output=True, text=True, env=env(),
                             cwd=ROOT)
    assert f"resuming from the checkpoint after episode run, episode {at['episode']}" in resumed.stdout
    assert "teacher-cache.safetensors" in resumed.stdout and "reused" in resumed.stdout
    a, b = whole / f"{method}-s3", killed / f"{method}-s3"
    assert (a / "student" / "model.safetensors").read_bytes() == (b / "student" / "model.safetensors").read_bytes()
    assert (a / "log.jsonl").read_text() == (b / "log.jsonl").read_text()  # actions, rewards, Q, losses, dev, search
    assert (a / "dev_predictions.tsv").read_bytes() == (b / "dev_predictions.tsv").read_bytes()
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert ma["dev"] == mb["dev"] and mb["resumed_from"]["step"] == at["step"] and ma["resumed_from"] is None
    # the cost is the whole run's: the checkpoint carried the killed process's CPU seconds, metrics.json adds them
    assert 0 < at["times"]["cpu_s"] == mb["resumed_from"]["times"]["cpu_s"] < mb["cpu_s"]
    assert "cpu_s" not in mb["wall_s"]


def test_a_crash_while_writing_leaves_a_complete_checkpoint(tmp_path):
    ckpts = Checkpoints(tmp_path, every=1)
    model = torch.nn.Linear(3, 2)

    def save(step):
        with torch.no_grad():
            model.weight.fill_(step)
        ckpts.save({"step": step}, {"m": model}, {}, {"step": step})

    save(1)
    save(2)
    assert ckpts.load()["meta"]["step"] == 2 and not (tmp_path / "checkpoint.old").exists()
    # killed after moving checkpoint/ aside, before the new one took its place
    (tmp_path / "checkpoint").rename(tmp_path / "checkpoint.old")
    (tmp_path / "checkpoint.tmp").mkdir()
    (tmp_path / "checkpoint.tmp" / "meta.json").write_text("{\"step\": 3")  # half written
    got = ckpts.load()
    assert got["meta"]["step"] == 2 and torch.equal(got["weights"]["m.weight"], torch.full((2, 3), 2.0))
    save(4)  # the next save cleans up
    assert ckpts.load()["meta"]["step"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    (tmp_path / "checkpoint" / "state.pt").write_bytes(b"garbage")
    with pytest.raises(KdError, match="checkpoint: cannot read the checkpoint"):
        ckpts.load()


def test_phase_checkpoints_wait_the_minutes_and_change_nothing_computed(tiny, tmp_path, monkeypatch):
    """--checkpoint-minutes: a phase end's checkpoint waits until that long after the last save (or
    the run's start); those at episode and run ends do not wait. Saving or not changes no result."""
    saved = {}

    def recording(save):
        def wrapper(self, meta, *rest):
            saved.setdefault(self.dir.parent.name, []).append((meta["run"], meta["episode"], meta["phase"]))
            return save(self, meta, *rest)
        return wrapper
    monkeypatch.setattr(Checkpoints, "save", recording(Checkpoints.save))
    every, default = tmp_path / "every", tmp_path / "default"
    run.main(flags(tiny, every))  # --checkpoint-minutes 0
    without = flags(tiny, default)
    i = without.index("--checkpoint-minutes")
    run.main(without[:i] + without[i + 2:])  # the default, 2 minutes: longer than this whole run
    last = {}  # the last phase of each episode and of the final run, in order
    for s in saved["every"]:
        last[s[:2]] = s
    assert list(last) == [("episode", 0), ("episode", 1), ("final", 0)]
    for key, end in last.items():  # minutes 0: every phase end
        assert [s[2] for s in saved["every"] if s[:2] == key] == list(range(end[2] + 1))
    assert saved["default"] == list(last.values())  # 2 minutes: the run ends only
    a, b = every / "ksm-soft-s3", default / "ksm-soft-s3"
    assert (a / "log.jsonl").read_text() == (b / "log.jsonl").read_text()
    assert (a / "student" / "model.safetensors").read_bytes() == (b / "student" / "model.safetensors").read_bytes()


def test_checkpoints_wait_from_the_last_save(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(resume.time, "monotonic", lambda: clock[0])
    ckpts = Checkpoints(tmp_path, 1, minutes=2)
    assert ckpts.due(0, last=False) and not ckpts.waited()  # due by its phase, not yet by the clock
    clock[0] += 119.9
    assert not ckpts.waited()
    clock[0] += 0.1
    assert ckpts.waited()
    ckpts.save({"step": 1}, {"m": torch.nn.Linear(2, 2)}, {}, {"step": 1})
    assert not ckpts.waited()
    assert Checkpoints(tmp_path, 1).waited()  # minutes 0: never waits


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    make_view = run.make_teacher_view

    def poisoned(*a, **kw):
        view, calls = make_view(*a, **kw), [0]

        def view_with_nan(b):
            calls[0] += 1
            t = view(b)
            if calls[0] == 9:  # a step inside the third phase of the first episode
                t.logits = t.logits * float("nan")
            return t
        return view_with_nan

    monkeypatch.setattr(run, "make_teacher_view", poisoned)
    with pytest.raises(KdError, match=r"episode run, episode 0, step 8: loss is nan \(fink"):
        run.main(flags(tiny, tmp_path, "--epochs", "1", "--episode-fraction", "1"))
    kept = Checkpoints(tmp_path / "ksm-soft-s3", 1).load()
    assert kept["meta"]["run"] == "episode" and kept["meta"]["step"] < 8
    assert all(torch.isfinite(w).all() for w in kept["weights"].values())
    assert (tmp_path / "ksm-soft-s3" / "config.json").is_file()


def test_resume_needs_the_same_flags_and_reuses_finished_runs(tiny, tmp_path):
    run_dir = tmp_path / "ksm-soft-s3"
    run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1", "--keep-checkpoint"))
    metrics = (run_dir / "metrics.json").read_bytes()
    with pytest.raises(KdError, match="already holds a finished run: pass --resume"):
        run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1"))
    run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1", "--resume"))  # reused, not redone
    assert (run_dir / "metrics.json").read_bytes() == metrics
    config = json.loads((run_dir / "config.json").read_text())
    del config["args"]["search_score"]  # as a run made before the flag, whose default was then the metric
    (run_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(KdError, match=r"made with --search-score metric \(now loss\)"):
        run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1", "--resume"))
    run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1", "--search-score", "metric", "--resume"))
    assert (run_dir / "metrics.json").read_bytes() == metrics
    with pytest.raises(KdError, match="holds a finished run made with --lr 0.0005 \\(now 0.001\\)"):
        run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1", "--lr", "1e-3", "--resume"))
    (run_dir / "metrics.json").unlink()  # as if it had died before finishing
    with pytest.raises(KdError, match="made with --lr 0.0005 \\(now 0.001\\)"):
        run.main(flags(tiny, tmp_path, "--epochs", "1", "--episodes", "1", "--lr", "1e-3"))
    assert load_file(run_dir / "checkpoint" / "weights.safetensors")  # nothing was removed


def test_agent_flags_matter_only_to_runs_with_an_agent(tiny, tmp_path):
    """A finished kd run is the same run whatever the KSM's flags; a ksm run is not."""
    base = ("--epochs", "1", "--episodes", "1", "--method", "kd,ksm-soft")
    run.main(flags(tiny, tmp_path, *base))
    kd = (tmp_path / "kd-s3" / "metrics.json").read_bytes()
    logged = [json.loads(line) for line in (tmp_path / "kd-s3" / "log.jsonl").read_text().splitlines()]
    assert all("reward_task" in r and "q" not in r for r in logged)  # every method logs the reward; no agent, no Q
    with pytest.raises(KdError, match=r"ksm-soft-s3 holds a finished run made with --lr-actor 0.001 \(now 0.01\)"):
        run.main(flags(tiny, tmp_path, *base, "--lr-actor", "1e-2", "--resume"))
    run.main(flags(tiny, tmp_path, *base[:-1], "kd", "--lr-actor", "1e-2", "--episode-fraction", "0.5", "--resume"))
    assert (tmp_path / "kd-s3" / "metrics.json").read_bytes() == kd  # reused, not redone
