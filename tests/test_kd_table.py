"""experiments/kd_table.py, which turns run folders into the table of experiments/RESULTS-kd.md: its
means, standard deviations and paired differences, on run folders written here by hand."""
import json
import runpy
from pathlib import Path

import pytest

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "kd_table.py"))
kd_table = module["table"]
kd_summary = module["summary"]


def fake_run(folder: Path, method: str, seed: int, f1: float, weights: list[float], loss_norm: str = "auto"):
    run = folder / f"{method}-s{seed}"
    run.mkdir(parents=True)
    args = {f: 1 for f in module["SHOWN_FLAGS"]} | {"loss_norm": loss_norm}
    (run / "config.json").write_text(json.dumps({"args": args}))
    (run / "metrics.json").write_text(json.dumps({
        "task": "mrpc", "method": method, "seed": seed, "main_metric": "f1", "dev": {"f1": f1},
        "teacher_dev": {"f1": 0.9}, "wall_s": {"final_s": 10.0, "eval_s": 2.0}}))
    rows = [{"event": "phase", "run": "episode", "episode": e, "phase": 0, "action": [9.0] * 4, "critic_loss": e + f1}
            for e in (0, 1)]
    rows += [{"event": "phase", "run": "final", "phase": k, "action": w} for k, w in enumerate((weights, weights))]
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def main_rows(lines: list[str]) -> dict[str, list[str]]:
    """The first table's rows by method: its cells after the method's name."""
    first = lines[:lines.index("Per seed, f1:")]
    return {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in first
            if line.startswith("| ") and "---" not in line and not line.startswith("| method")}


def test_table_gives_means_sds_and_differences_paired_by_seed(tmp_path):
    for seed, f1 in ((1, 0.80), (2, 0.82), (3, 0.84)):
        fake_run(tmp_path, "finetune", seed, f1, [1.0, 0.0, 0.0, 0.0])
    for seed, f1 in ((1, 0.81), (2, 0.85)):  # seed 3 unfinished: no metrics.json
        fake_run(tmp_path, "kd", seed, f1, [0.5, 0.5, 0.0, 0.0])
    (tmp_path / "kd-s3").mkdir()
    lines = kd_table(tmp_path)
    assert lines[2] == "Teacher dev: f1 90.00. Flags: " + ", ".join(
        f"--{f} {'auto' if f == 'loss-norm' else 1}" for f in (
                             "teacher-seed", "student-layers", "epochs", "episodes", "phases-per-epoch", "lr",
                             "batch-size", "max-len", "teacher-epochs", "teacher-lr", "reward-split", "loss-norm",
                             "action-norm", "episode-fraction", "reward-fraction", "reward-baseline", "lr-actor",
                             "critic-weight-decay",
                             "corrupt")) + "."
    rows = main_rows(lines)
    # kd's mean (83.0) is above finetune's (82.0): kd is the best fixed baseline; teacher 90
    assert "| Δ vs best fixed (kd), paired |" in lines[4]
    assert rows["finetune"] == ["1,2,3", "82.00 ± 2.00", "91.1%", "", "", "-2.00 ± 1.41 (0/2 ahead)", "",
                                      "1.00/0.00/0.00/0.00", "12 ± 0 |"]
    # kd - finetune on seeds 1 and 2: +1 and +3 points; episode actions are not the final weights; no all runs
    assert rows["kd"] == ["1,2", "83.00 ± 2.83", "92.2%", "+2.00 ± 1.41 (2/2 ahead)", "", "", "",
                                "0.50/0.50/0.00/0.00", "12 ± 0 |"]
    assert "| Δ vs best random (none), paired |" in lines[4]  # no random runs yet


def test_empty_folder_says_so(tmp_path):
    assert kd_table(tmp_path) == [f"{tmp_path}: no finished runs", ""]


def test_a_missing_folder_is_an_error_naming_it(tmp_path):
    fake_run(tmp_path / "a", "all", 1, 0.8, [1.0] * 4)
    with pytest.raises(SystemExit, match=f"{tmp_path / 'b'}: no such folder"):
        kd_table(tmp_path / "a", tmp_path / "b")


@pytest.mark.parametrize("f1, expected", [(0.70, "-10.00 ± 0.00 (0/1 ahead)"), (0.80, "+0.00 ± 0.00 (0/1 ahead)")])
def test_difference_sign(tmp_path, f1, expected):
    fake_run(tmp_path, "finetune", 1, 0.80, [1.0, 0.0, 0.0, 0.0])
    fake_run(tmp_path, "all", 1, f1, [1.0, 1.0, 1.0, 1.0])
    fake_run(tmp_path, "ksm-soft", 1, 0.75, [1.0, 0.0, 1.0, 1.0])
    lines = kd_table(tmp_path)
    rows = main_rows(lines)
    assert expected in rows["all"]  # all vs finetune
    versus_all = 100 * (0.75 - f1)  # ksm-soft vs all: +5 or -5 points
    assert f"{versus_all:+.2f} ± 0.00 ({int(versus_all > 0)}/1 ahead)" in rows["ksm-soft"]
    # best fixed: finetune, above all or tied with it (a tie keeps the first in ORDER); ksm-soft is 5 below it,
    # as it is below finetune: two cells of -5, three when all ties finetune
    assert "| Δ vs best fixed (finetune), paired |" in lines[4]
    assert rows["ksm-soft"].count("-5.00 ± 0.00 (0/1 ahead)") == (2 if f1 < 0.80 else 3)


def test_the_ksm_is_compared_with_the_better_random_baseline(tmp_path):
    for seed, soft, hard, ksm in ((1, 0.80, 0.83, 0.84), (2, 0.78, 0.85, 0.82)):
        fake_run(tmp_path, "random-soft", seed, soft, [0.5] * 4)
        fake_run(tmp_path, "random-hard", seed, hard, [1.0, 0.0, 1.0, 0.0])
        fake_run(tmp_path, "ksm-soft", seed, ksm, [1.0, 0.0, 1.0, 1.0])
    lines = kd_table(tmp_path)
    assert "| Δ vs best fixed (none), paired | Δ vs best random (random-hard), paired |" in lines[4]
    rows = main_rows(lines)
    assert rows["ksm-soft"][-3] == "-1.00 ± 2.83 (1/2 ahead)"  # +1 then -3 points
    assert rows["random-hard"][-3] == ""  # not compared with itself


def test_per_seed_table_gives_each_seeds_metric_and_the_ksm_weights(tmp_path):
    fake_run(tmp_path, "kd", 1, 0.81, [0.5, 0.5, 0.0, 0.0])
    fake_run(tmp_path, "kd", 2, 0.83, [0.5, 0.5, 0.0, 0.0])
    fake_run(tmp_path, "ksm-soft", 2, 0.845, [1.0, 0.25, 0.0, 1.0])
    lines = kd_table(tmp_path)
    start = lines.index("Per seed, f1:")
    # the critic's loss is that of the last episode (1 + f1 in these logs), not the first (f1)
    assert lines[start + 2:start + 6] == ["| seed | kd | ksm-soft | ksm-soft weights | ksm-soft critic loss |",
                                          "|---|---|---|---|---|", "| 1 | 81.00 |  |  |  |",
                                          "| 2 | 83.00 | 84.50 | 1.00/0.25/0.00/1.00 | 1.84 |"]


def test_a_control_from_another_folder_gets_its_own_row_and_is_no_baseline(tmp_path):
    study, control = tmp_path / "study", tmp_path / "control"
    for seed, plain, ema, ksm in ((1, 0.80, 0.83, 0.82), (2, 0.81, 0.84, 0.85)):
        fake_run(study, "all", seed, plain, [1.0] * 4)
        fake_run(control, "all", seed, ema, [1.0] * 4, loss_norm="ema")
        fake_run(study, "ksm-soft", seed, ksm, [1.0, 0.0, 1.0, 1.0])
    lines = kd_table(study, control)
    assert lines[0] == f"### mrpc ({study} + {control})"
    assert "--loss-norm auto (4 runs) or ema (2 runs)" in lines[2]
    rows = main_rows(lines)
    assert list(rows) == ["all", "all --loss-norm ema", "ksm-soft"]
    # the control is compared with all (+3 points on each seed); ksm-soft with all, not with the control
    assert rows["all --loss-norm ema"][4] == "+3.00 ± 0.00 (2/2 ahead)"
    assert rows["ksm-soft"][4] == "+3.00 ± 1.41 (2/2 ahead)"  # +2, +4
    assert "| Δ vs best fixed (all), paired |" in lines[4]
    assert "| seed | all | all --loss-norm ema | ksm-soft |" in lines[lines.index("Per seed, f1:") + 2]


def test_a_flag_the_runs_differ_on_shows_each_value_with_its_count(tmp_path):
    for seed in (1, 2, 3):
        fake_run(tmp_path, "kd", seed, 0.8, [0.5, 0.5, 0.0, 0.0])
    config = tmp_path / "kd-s1" / "config.json"
    config.write_text(config.read_text().replace('"teacher_lr": 1', '"teacher_lr": 2e-05'))
    flags = kd_table(tmp_path)[2]
    assert "--teacher-lr 1 (2 runs) or 2e-05 (1 runs), " in flags
    assert "--lr 1, " in flags


def test_summary_puts_each_tasks_ksm_against_its_own_best_fixed_random_and_control(tmp_path):
    a, b, control = tmp_path / "a", tmp_path / "b", tmp_path / "control"
    for seed, finetune, all_, soft, ema, ksm in ((1, 0.80, 0.82, 0.83, 0.81, 0.84), (2, 0.82, 0.81, 0.85, 0.87, 0.83)):
        for method, f1 in (("finetune", finetune), ("all", all_), ("random-soft", soft), ("ksm-soft", ksm)):
            fake_run(a, method, seed, f1, [1.0] * 4)
        fake_run(control, "all", seed, ema, [1.0] * 4, loss_norm="ema")
    fake_run(b, "finetune", 1, 0.70, [1.0, 0.0, 0.0, 0.0])
    fake_run(b, "ksm-soft", 1, 0.75, [1.0] * 4)
    lines = kd_summary((a, control), (b,))
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[1:] for line in lines[2:] if line}
    assert lines[0] == "| | mrpc f1 | mrpc f1 |"  # fake_run writes task mrpc into every run
    assert rows["teacher"] == ["90.00", "90.00 |"]
    # rows in ORDER, the control after its method; a method a task lacks leaves its cell empty
    assert list(rows)[1:5] == ["finetune", "all", "all --loss-norm ema", "random-soft"]
    assert rows["finetune"] == ["81.00 ± 1.41 (2)", "70.00 ± 0.00 (1) |"]
    assert rows["all"] == ["81.50 ± 0.71 (2)", " |"]
    # task a's best fixed is all (81.5 against finetune's 81.0), not the control; ksm-soft +2, +2 over it
    assert rows["ksm-soft − best fixed, paired"] == ["+2.00 ± 0.00 (2/2 ahead) vs all",
                                                    "+5.00 ± 0.00 (1/1 ahead) vs finetune |"]
    assert rows["ksm-soft − best random, paired"] == ["-0.50 ± 2.12 (1/2 ahead) vs random-soft", " |"]  # +1, -2
    assert rows["ksm-soft − control, paired"] == ["-0.50 ± 4.95 (1/2 ahead) vs all --loss-norm ema", " |"]  # +3, -4
    assert not any(row.startswith("ksm-hard") for row in rows)  # no ksm-hard runs: no rows for it


def test_summary_of_a_folder_without_runs_is_an_error(tmp_path):
    fake_run(tmp_path / "a", "all", 1, 0.8, [1.0] * 4)
    (tmp_path / "b").mkdir()
    with pytest.raises(SystemExit, match=f"{tmp_path / 'b'}: no finished runs"):
        kd_summary((tmp_path / "a",), (tmp_path / "b",))


def test_lr_table_marks_each_tasks_best_rate(tmp_path):
    lr_table = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "lr_table.py"))["lr_table"]
    for task, rate, score in (("stsb", "5e-5", 0.70), ("stsb", "2e-4", 0.80), ("mrpc", "5e-5", 0.79), ("mrpc", "2e-4", 0.78)):
        fake_run(tmp_path / f"{task}-{rate}", "finetune", 1, score, [1.0, 0.0, 0.0, 0.0])
    rows = lr_table(tmp_path)
    assert rows[0] == "| task (teacher) | 5e-5 | 2e-4 | best |"
    # fake_run writes task mrpc and main metric f1 into every run; the folder names the task
    assert rows[2:] == ["| mrpc (f1 90.00) | **79.00** | 78.00 | 5e-5 |", "| stsb (f1 90.00) | 70.00 | **80.00** | 2e-4 |"]


def test_paired_test_matches_scipy():
    from scipy import stats
    paired_test = module["paired_test"]
    for diffs in ([0.01, 0.02, 0.005, 0.01, 0.003], [0.01, -0.02, 0.005, 0.0], [-0.3, -0.1, -0.2]):
        t = stats.ttest_1samp(diffs, 0).statistic
        nonzero = [d for d in diffs if d]
        p = stats.binomtest(sum(d > 0 for d in nonzero), len(nonzero)).pvalue
        assert paired_test(diffs) == f"t({len(diffs) - 1}) = {t:.2f}, sign p = {p:.2f}"
    assert paired_test([-0.04]) == "one seed: no test"  # not t(0) = -inf
    assert paired_test([0.0, 0.0]) == "equal on every seed: no test"  # not t(1) = inf
