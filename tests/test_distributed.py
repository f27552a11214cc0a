"""torchrun with 2 gloo processes on the CPU against one process, on the same global batch.

The data make the ranks unequal in every way the batching allows: examples of 16 to 56
tokens in two length buckets (32 and 64), so the ranks hold different numbers of real
tokens, and buckets whose last batch is partial, so the second rank holds fewer valid
rows than the first, or none (the final run's last batch of each bucket). Each rank
divides by the global counts and DDP sums the gradients (kd_ref/plumbing/distributed.py), so the
two must still agree with one process up to float rounding. Dropout is off (the ranks
draw their own masks). What is left is summation order: losses agree to 1e-4, actions
to 1e-3 (the agent learns from tiny rewards and carries their rounding along), and the
dev predictions exactly. Without the global counts the losses were 12% apart.
"""
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kd_ref.data.demo import COLOURS, OBJECTS, PLACES
from tiny_task import write_tiny_task

ROOT = Path(__file__).resolve().parents[1]


def write_unequal_length_rte(folder: Path, n: dict, seed: int = 0) -> None:
    """RTE files of pairs 'the C O is on the P.' followed by k more such clauses / 'the O is C.':
    16 + 8k tokens with [CLS] and [SEP]s; k in 0..2 (the 32-token bucket) for the first 2/3 of each
    split, 3..5 (the 64-token bucket) for the rest. Classes balanced."""
    rng = random.Random(seed)

    def clause():
        return f"the {rng.choice(COLOURS)} {rng.choice(OBJECTS)} is on the {rng.choice(PLACES)}."
    for split, count in n.items():
        lines = ["index\tsentence1\tsentence2\tlabel"]
        for i in range(count):
            colour, obj = rng.choice(COLOURS), rng.choice(OBJECTS)
            k = rng.randrange(3) if i < 2 * count // 3 else 3 + rng.randrange(3)
            first = " ".join([f"the {colour} {obj} is on the {rng.choice(PLACES)}."] + [clause() for _ in range(k)])
            entailed = i % 2 == 0
            said = colour if entailed else rng.choice([c for c in COLOURS if c != colour])
            lines.append(f"{i}\t{first}\tthe {obj} is {said}.\t{'entailment' if entailed else 'not_entailment'}")
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("ddp")
    # another task's head (the teacher is fine-tuned first, under DDP too), and no dropout
    write_tiny_task(d, n_train=40, n_dev=20, n_test=10, num_labels=3, dropout=False)
    # 200 + 100 rows: the final run's last batch of each bucket has 8 and 4 rows, all on rank 0
    write_unequal_length_rte(d / "data" / "RTE", {"train": 300, "dev": 64})
    (d / "data" / "RTE" / "test.tsv").unlink()
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one(tiny, tmp_path):
    flags = ["--task", "rte", "--data-dir", str(tiny / "data"), "--teacher", str(tiny / "teacher"),
             "--method", "ksm-soft", "--seed", "2", "--max-len", "64", "--batch-size", "32",
             "--teacher-epochs", "1", "--epochs", "2", "--episodes", "2", "--phases-per-epoch", "2",
             "--lr", "5e-4", "--teacher-lr", "5e-4", "--device", "cpu",
             # ema would divide by running means near 1e-6 (ResK of a student started from its
             # teacher) and so blow float rounding up past 1e-4; the raw losses are logged either way
             "--loss-norm", "none"]
    # loopback only: a CI container's hostname need not resolve to a usable interface
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    subprocess.run([sys.executable, "run.py", *flags, "--out", str(tmp_path / "one")],
                   check=True, capture_output=True, env=env, cwd=ROOT)
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_addr=127.0.0.1", f"--master_port={free_port()}", "run.py", *flags, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, cwd=ROOT)
    assert two.returncode == 0, two.stderr[-3000:]
    runs = {name: tmp_path / name / "ksm-soft-s2" for name in ("one", "two")}
    logs = {name: [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
            for name, d in runs.items()}
    assert len(logs["one"]) == len(logs["two"]) == 3 * 4  # 2 episodes and the final run, 4 phases each
    for a, b in zip(logs["one"], logs["two"]):
        assert (a["run"], a["episode"], a["phase"], a["step"]) == (b["run"], b["episode"], b["phase"], b["step"])
        # the agent learns from rewards of ~1e-4 (gold-loss decreases) and carries their float
        # rounding into its actions: 1e-4 apart at most here, 1e-3 allowed
        assert a["action"] == pytest.approx(b["action"], abs=1e-3)
        assert list(a["losses"].values()) == pytest.approx(list(b["losses"].values()), rel=1e-4, abs=1e-6)
        if a["run"] == "episode":
            assert a["reward"] == pytest.approx(b["reward"], rel=1e-3, abs=1e-5)
    metrics = {name: json.loads((d / "metrics.json").read_text()) for name, d in runs.items()}
    assert metrics["one"]["processes"] == 1 and metrics["two"]["processes"] == 2
    assert metrics["two"]["teacher_dev"] == metrics["one"]["teacher_dev"]
    assert metrics["two"]["dev"] == metrics["one"]["dev"]
    assert (runs["one"] / "dev_predictions.tsv").read_text() == (runs["two"] / "dev_predictions.tsv").read_text()
    # only rank 0 writes: one log line per phase, one summary
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["methods"]["ksm-soft"]["seeds"] == [2]
