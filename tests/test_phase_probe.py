"""experiments/phase_probe.py: its continuations are paired exactly (the same state, batches and
dropout give the same reward bit for bit), the action changes the reward, and the summary's
arithmetic."""
import json
import runpy
from pathlib import Path

import pytest

from tiny_task import write_tiny_task

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "phase_probe.py"))


def test_probe_pairs_its_continuations_exactly(tmp_path):
    write_tiny_task(tmp_path, n_train=200, n_dev=20, n_test=2, num_labels=2)  # dropout on: the RNG matters
    out = tmp_path / "probe.jsonl"
    module["probe"](out, ["--task", "rte", "--data-dir", str(tmp_path / "data"), "--teacher", str(tmp_path / "teacher"),
                          "--seed", "2", "--max-len", "32", "--batch-size", "16", "--epochs", "1",
                          "--phases-per-epoch", "3", "--episode-fraction", "1", "--reward-fraction", "0.1",
                          "--lr", "5e-3", "--student-layers", "2"])
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["phase"] for r in records] == [0, 1, 2]
    for r in records:
        assert r["rewards"]["ref"] == r["trunk"]  # the continuation starts exactly where the trunk was
        assert r["rewards"]["ref_again"] == r["rewards"]["ref"]  # same state, batches, dropout: same reward
        assert r["ref_other"] != r["rewards"]["ref"]  # other batches and dropout
        assert any(r["rewards"][f"-{k}"] != r["rewards"]["ref"] for k in module["KNOWLEDGE"])
    lines = module["summary"](records)
    assert lines[0].startswith("3 phases of rte s2; ref_again - ref at most 0;")


def test_a_teacher_without_a_classifier_is_refused(tmp_path):
    write_tiny_task(tmp_path, n_train=40, n_dev=10, n_test=2, num_labels=3)  # RTE has 2 classes
    with pytest.raises(Exception, match="no classifier for rte"):
        module["probe"](tmp_path / "p.jsonl", ["--task", "rte", "--data-dir", str(tmp_path / "data"),
                                               "--teacher", str(tmp_path / "teacher")])


def test_summary_gives_paired_effects_and_the_unpaired_spread():
    # rewards 0.10, 0.20, 0.15 with the reference action; with one knowledge off, lower by `effect`
    effects = ((0.03, -0.01, 0.0, 0.02), (0.01, -0.02, 0.0, -0.02), (0.02, -0.03, 0.0, 0.03))
    records = [{"task": "mrpc", "seed": 1, "phase": p, "ref_other": other,
                "rewards": {"ref": ref, "ref_again": ref,
                            **{f"-{k}": ref - e for k, e in zip(module["KNOWLEDGE"], effect)}}}
               for p, (ref, other, effect) in enumerate(zip((0.10, 0.20, 0.15), (0.00, 0.30, 0.15), effects))]
    lines = module["summary"](records)
    # ref - ref_other: 0.1, -0.1, 0: sd 0.1, over sqrt 2
    assert lines[0].startswith("3 phases of mrpc s1; ref_again - ref at most 0; spread of an unpaired reward 0.0707;")
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[4:]}
    assert rows["fink"] == ["+0.0200", "0.0100", "+3.46", "3/3 |"]  # t = 0.02 / (0.01 / sqrt 3)
    assert rows["resk"] == ["-0.0200", "0.0100", "-3.46", "0/3 |"]
    assert rows["feak"] == ["+0.0000", "0.0000", "+nan", "0/3 |"]  # never any effect: no t
    assert rows["relk"][3] == "2/3 |"
