"""kd_ref.plumbing.threads: a run takes the cores free at its start, shared with the runs beside it."""
import math
import os
import subprocess
import sys

import pytest
import torch

from kd_ref.plumbing import threads
from kd_ref.plumbing.errors import KdError

CLAIM_AND_WAIT = """
import math, sys, torch
from pathlib import Path
from kd_ref.plumbing import threads
threads.busy_cores = lambda seconds=0: 0.0
threads.usable_cores = lambda: 4
threads.cpu_sample = lambda: None
wanted = None if sys.argv[2] == "share" else int(sys.argv[2])
torch.set_num_threads(threads.claim_threads(wanted, folder=Path(sys.argv[1])))
print(torch.get_num_threads(), flush=True)
for _ in sys.stdin:  # a line in: rebalance now, print the threads it runs with
    threads.rebalance(now=math.inf)
    print(torch.get_num_threads(), flush=True)
"""


def other_run(folder, threads="share"):
    """A kd-ref run in another process, claiming in folder: `threads` counted, or its share."""
    return subprocess.Popen([sys.executable, "-c", CLAIM_AND_WAIT, str(folder), threads],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def ask(run) -> int:
    run.stdin.write("\n")
    run.stdin.flush()
    return int(run.stdout.readline())


@pytest.fixture(autouse=True)
def own_sharing_state(monkeypatch):
    """Each test's claims are its own: a later Progress.update must not rebalance into a deleted folder."""
    monkeypatch.setattr(threads, "_sharing", {})
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def idle_four_cores(monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0: 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "cpu_sample", lambda: None)  # rebalance: nothing busy since the last look


def test_busy_cores_reads_proc_stat_over_a_short_interval():
    busy = threads.busy_cores(0.05)
    assert 0.0 <= busy <= os.cpu_count() + 0.5


def test_a_run_started_beside_another_shares_the_cores_and_takes_them_all_once_alone(tmp_path, idle_four_cores):
    """Two runs started at once each find the machine idle: the claims split it, the first gives cores back."""
    other = other_run(tmp_path)
    try:
        assert int(other.stdout.readline()) == 4  # alone on 4 idle cores
        assert threads.claim_threads(None, folder=tmp_path) == 2  # it claimed 4, measured idle or not: half each
        assert ask(other) == 2  # it gave two back at its next look
        threads.rebalance(now=math.inf)
        assert torch.get_num_threads() == 2
    finally:
        other.kill()
        other.wait()
    threads.rebalance(now=math.inf)
    assert torch.get_num_threads() == 4  # its claim died with it: ours takes the machine again
    assert threads.claim_threads(None, folder=tmp_path) == 4  # a new run: ours is not counted against it
    assert sorted(p.name for p in tmp_path.glob("*.claim")) == [f"{os.getpid()}.claim"]


def test_a_count_asked_for_is_left_to_its_run_and_never_rebalanced(tmp_path, idle_four_cores):
    other = other_run(tmp_path, "3")
    try:
        assert int(other.stdout.readline()) == 3
        assert threads.claim_threads(None, folder=tmp_path) == 1  # 4 less the 3 counted
        assert ask(other) == 3  # a counted run keeps its count
        assert threads.claim_threads(2, folder=tmp_path) == 2  # asked for beside it: taken as asked
        torch.set_num_threads(2)
        threads.rebalance(now=math.inf)
        assert torch.get_num_threads() == 2
    finally:
        other.kill()
        other.wait()


def test_a_load_at_start_that_goes_is_taken_back_and_one_that_stays_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0: 1.0)  # busy at start: a run beside it importing torch
    # /proc/stat at each look, {core: (busy jiffies, all jiffies)}: idle, then cores 0 and 1 busy throughout
    samples = iter([{c: (0, 0) for c in range(4)}, {c: (0, 100) for c in range(4)},
                    {0: (100, 200), 1: (100, 200), 2: (0, 200), 3: (0, 200)}])
    monkeypatch.setattr(threads, "cpu_sample", lambda: next(samples))
    assert threads.claim_threads(None, folder=tmp_path) == 3
    threads.rebalance(now=math.inf)  # nothing busy since the start: the load has gone
    assert torch.get_num_threads() == 4
    torch.set_num_threads(1)  # say ours ran one thread meanwhile: of the 2 busy cores, 1 is someone else's
    threads.rebalance(now=math.inf)
    assert torch.get_num_threads() == 3


def test_rebalance_looks_at_most_every_few_seconds(tmp_path, idle_four_cores, monkeypatch):
    threads.claim_threads(None, folder=tmp_path)
    looks = []
    monkeypatch.setattr(threads, "live_claims", lambda folder: looks.append(folder) or [])
    start = threads._sharing["next"]
    for now in (start - 1, start, start + 1, start + threads.REBALANCE_S):
        threads.rebalance(now=now)
    assert looks == [tmp_path, tmp_path]


def test_busy_cores_are_left_to_their_processes_and_a_count_asked_for_is_claimed(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0: 1.0)  # one core busy elsewhere
    assert threads.claim_threads(None, folder=tmp_path) == 3
    assert threads.claim_threads(2, folder=tmp_path) == 2  # asked for: no measure; it replaces the claim
    assert (tmp_path / f"{os.getpid()}.claim").read_text() == "2 counted"


def test_flag_then_omp_num_threads_then_the_measure(monkeypatch, idle_four_cores, tmp_path):
    monkeypatch.setattr(threads, "CLAIMS", tmp_path)
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert threads.choose_threads(2) == 2 and torch.get_num_threads() == 2
        assert threads.choose_threads(None) == 3 and torch.get_num_threads() == 3
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert threads.choose_threads(None) == 4 and torch.get_num_threads() == 4
    finally:
        torch.set_num_threads(before)
    with pytest.raises(KdError, match="^--threads 0: must be at least 1"):
        threads.choose_threads(0)
