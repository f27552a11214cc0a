"""experiments/subset_table.py, the headroom table: the subset chosen on held-out rows, reported on dev
against the control, on run folders written here by hand."""
import json
import runpy
from pathlib import Path

import pytest

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "subset_table.py"))
task_table = module["task_table"]


def fake_run(folder: Path, subset: str, seed: int, holdout: float, dev: float):
    run = folder / f"subset-{subset}-s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"args": {"loss_norm": "ema"}}))
    (run / "metrics.json").write_text(json.dumps({
        "task": "mrpc", "method": f"subset-{subset}", "seed": seed, "main_metric": "f1", "dev": {"f1": dev},
        "holdout": {"f1": holdout}, "holdout_rows": 367, "teacher_dev": {"f1": 0.9}}))
    weights = [float(d) for d in subset]
    (run / "log.jsonl").write_text(json.dumps({"event": "phase", "run": "final", "phase": 0, "action": weights, "dev": {"f1": dev}}) + "\n")


def test_the_choice_is_made_on_held_out_rows_and_judged_on_dev(tmp_path):
    # 0111 leads on held-out but not on dev; 1100 leads on dev but not on held-out; seed 3 of 1100 is
    # unfinished, so only seeds 1 and 2 count for every subset
    for seed, (h, d) in {1: (0.80, 0.80), 2: (0.82, 0.82), 3: (0.5, 0.5)}.items():
        fake_run(tmp_path, "1111", seed, h, d)
    for seed, (h, d) in {1: (0.85, 0.79), 2: (0.84, 0.84), 3: (0.9, 0.9)}.items():
        fake_run(tmp_path, "0111", seed, h, d)
    for seed, (h, d) in {1: (0.79, 0.88), 2: (0.80, 0.86)}.items():
        fake_run(tmp_path, "1100", seed, h, d)
    lines = task_table(tmp_path)
    assert lines[0] == "### mrpc (f1; held-out: 367 rows of train; seeds 1,2)"
    rows = [line for line in lines if line.startswith("| subset-")]
    assert [r.split(" | ")[0] for r in rows] == ["| subset-1111", "| subset-1100", "| subset-0111"]
    assert rows[0] == "| subset-1111 | 1 1 1 1 | 81.00 ± 1.41 | 81.00 ± 1.41 |  |"
    # 0111 on dev against the control: -1 and +2 points
    assert rows[2] == "| subset-0111 | 0 1 1 1 | 84.50 ± 0.71 | 81.50 ± 3.54 | +0.50 ± 2.12 (1/2 ahead) |"
    verdict = next(line for line in lines if line.startswith("Chosen"))
    assert verdict.startswith("Chosen on held-out: **subset-0111**; on dev against the control: +0.50 ± 2.12 (1/2 ahead).")
    assert "Best on dev (for reference, chosen on the scores it is judged by): subset-1100." in verdict
    assert verdict.endswith("over the 3 subsets: -0.50.")  # held-out ranks 0111 > 1111 > 1100, dev 1100 > 0111 > 1111
    # FinK: 1111 - 0111 is the one pair; held-out -5 and -2 points, dev +1 and -2; no pair differs in another alone
    assert "| FinK | 1 | -3.50 ± 2.12 (0/2 positive) | -0.50 ± 2.12 (1/2 positive) |" in lines
    assert all(f"| {k} | 0 |  |  |" in lines for k in ("ResK", "FeaK", "RelK"))


def test_runs_without_holdout_or_without_the_control_are_refused(tmp_path):
    fake_run(tmp_path, "0111", 1, 0.8, 0.8)
    with pytest.raises(SystemExit, match="needs subset-1111"):
        task_table(tmp_path)
    metrics = tmp_path / "subset-0111-s1" / "metrics.json"
    metrics.write_text(json.dumps({k: v for k, v in json.loads(metrics.read_text()).items() if k != "holdout"}))
    with pytest.raises(SystemExit, match="made with --holdout"):
        task_table(tmp_path)


def test_held_out_loss_and_truncated_runs_rank_the_subsets(tmp_path):
    """Runs that logged the held-out gold loss (issue 27): a loss column, its rho, and one rho per phase
    of the final runs. Here the loss ranks the subsets against dev and the metric after phase 1 with it."""
    dev = {"1111": 0.80, "0111": 0.84, "1000": 0.70}
    for subset, d in dev.items():
        for seed in (1, 2):
            fake_run(tmp_path, subset, seed, d, d)
            metrics = tmp_path / f"subset-{subset}-s{seed}" / "metrics.json"
            m = json.loads(metrics.read_text())
            m["holdout"]["loss"] = d  # a higher loss where dev is higher: ranks against dev
            metrics.write_text(json.dumps(m))
            phases = [{"event": "phase", "run": "final", "phase": p, "action": [1.0] * 4, "dev": {"f1": d},
                       "holdout": {"f1": (1 - d) if p == 0 else d, "loss": 1 - d}} for p in range(2)]
            (metrics.parent / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in phases))
    text = "\n".join(task_table(tmp_path))
    assert "| held-out f1 | held-out loss | dev f1 |" in text
    assert "| subset-0111 | 0 1 1 1 | 84.00 ± 0.00 | 0.8400 ± 0.0000 | 84.00 ± 0.00 |" in text
    assert "By minus the held-out gold loss instead: -1.00." in text
    assert "| 1 | 2 | 1.00 | -1.00 | 1.00 |" in text and "| 2 | 2 | 1.00 | 1.00 | 1.00 |" in text
    # per seed, the lowest loss is 1000's (the lowest dev): 10 points behind the control on both seeds
    assert "By minus the held-out gold loss: 1: 1000, 2: 1000; on dev against the control -10.00 ± 0.00 (0/2 ahead)." in text


def test_the_per_seed_choice_takes_each_seeds_best_held_out_run(tmp_path):
    # held-out: seed 1 favours 1100, seed 2 favours 0111; dev: 1100 gains 3 points on seed 1, 0111 loses 1 on seed 2
    runs = {"1111": {1: (0.80, 0.80), 2: (0.80, 0.80)},
            "1100": {1: (0.90, 0.83), 2: (0.70, 0.70)},
            "0111": {1: (0.85, 0.90), 2: (0.81, 0.79)}}
    for subset, by_seed in runs.items():
        for seed, (h, d) in by_seed.items():
            fake_run(tmp_path, subset, seed, h, d)
    line = next(line for line in task_table(tmp_path) if line.startswith("Chosen per seed"))
    assert "at 3x a run's cost" in line
    assert line.endswith("1: 1100, 2: 0111; on dev against the control +1.00 ± 2.83 (1/2 ahead).")


def test_the_per_seed_loss_choice_pairs_each_loss_with_its_own_seed(tmp_path):
    # seeds 2 and 10: their folders sort as s10 before s2, so a loss taken in folder order lands on the wrong seed
    for subset, by_seed in {"1111": {2: (0.80, 0.70), 10: (0.80, 0.50)}, "0111": {2: (0.81, 0.60), 10: (0.82, 0.60)}}.items():
        for seed, (d, loss) in by_seed.items():
            fake_run(tmp_path, subset, seed, d, d)
            metrics = tmp_path / f"subset-{subset}-s{seed}" / "metrics.json"
            m = json.loads(metrics.read_text())
            m["holdout"]["loss"] = loss
            metrics.write_text(json.dumps(m))
    text = "\n".join(task_table(tmp_path))
    assert "By minus the held-out gold loss: 2: 0111, 10: 1111; on dev against the control +0.50 ± 0.71 (1/2 ahead)." in text
