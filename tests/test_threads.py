"""kd_ref.plumbing.threads: a run takes the cores free at its start, less those other runs claimed."""
import os
import subprocess
import sys

import pytest
import torch

from kd_ref.plumbing import threads
from kd_ref.plumbing.errors import KdError

CLAIM_AND_WAIT = """
import sys, time
from pathlib import Path
from kd_ref.plumbing import threads
threads.busy_cores = lambda seconds=0: 0.0
threads.usable_cores = lambda: 4
print(threads.claim_threads(None, folder=Path(sys.argv[1])), flush=True)
time.sleep(60)
"""


@pytest.fixture
def idle_four_cores(monkeypatch):
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0: 0.0)
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)


def test_busy_cores_reads_proc_stat_over_a_short_interval():
    busy = threads.busy_cores(0.05)
    assert 0.0 <= busy <= os.cpu_count() + 0.5


def test_a_run_started_beside_another_takes_what_that_one_left_and_all_once_it_ends(tmp_path, idle_four_cores):
    """Two runs started at once each find the machine idle: the claims keep the second off the first's cores."""
    other = subprocess.Popen([sys.executable, "-c", CLAIM_AND_WAIT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "4"  # alone on 4 idle cores
        assert threads.claim_threads(None, folder=tmp_path) == 1  # it claimed 4, measured idle or not: 1 is the least
    finally:
        other.kill()
        other.wait()
    assert threads.claim_threads(None, folder=tmp_path) == 4  # its claim died with it (and ours is not counted)
    assert sorted(p.name for p in tmp_path.glob("*.claim")) == [f"{os.getpid()}.claim"]


def test_busy_cores_are_left_to_their_processes_and_a_count_asked_for_is_claimed(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads, "busy_cores", lambda seconds=0: 1.0)  # one core busy elsewhere
    assert threads.claim_threads(None, folder=tmp_path) == 3
    assert threads.claim_threads(2, folder=tmp_path) == 2  # asked for: no measure; it replaces the claim
    assert (tmp_path / f"{os.getpid()}.claim").read_text() == "2"


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
