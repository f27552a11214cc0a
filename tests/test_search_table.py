"""experiments/search_table.py: the searches' proxy scores ranked against whole runs, on folders written by hand."""
import json
import runpy
from pathlib import Path

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "search_table.py"))


def write_run(folder: Path, method: str, seed: int, dev: float, wall: float, log: list[dict]):
    run = folder / f"{method}-s{seed}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"args": {"loss_norm": "ema"}}))
    (run / "metrics.json").write_text(json.dumps({
        "task": "mrpc", "method": method, "seed": seed, "main_metric": "f1", "dev": {"f1": dev},
        "holdout": {"f1": dev}, "holdout_rows": 367, "teacher_dev": {"f1": 0.9}, "wall_s": {"final_s": wall}}))
    final = {"event": "phase", "run": "final", "phase": 0, "action": [1.0] * 4}
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log + [final]))


def test_rho_per_rung_winner_and_cost(tmp_path):
    whole = {"1111": 0.80, "0111": 0.84, "1000": 0.70, "0100": 0.75}
    for seed in (1, 2):
        for s, d in whole.items():
            write_run(tmp_path / "subsets", f"subset-{s}", seed, d, 100.0, [])
        # rung 0 ranks 0111 > 1111 > 0100 > 1000 as the whole runs do; rung 1 reverses its two
        search = [{"event": "search", "rung": 0, "subset": s, "fraction": 0.03, "score": d, "f1": d, "loss": d}
                  for s, d in whole.items()]
        search += [{"event": "search", "rung": 1, "subset": s, "fraction": 0.06, "score": d, "f1": d, "loss": d, **extra}
                   for s, d, extra in (("0111", 0.5, {}), ("1111", 0.6, {"winner": "1111"}))]
        write_run(tmp_path / "halving", "halving", seed, 0.80 + 0.01 * seed, 250.0, search)
    text = "\n".join(module["search_table"](tmp_path / "halving", tmp_path / "subsets"))
    assert "| 0 | 4 | 0.030 | 1.00 | 1.00 | -1.00, -1.00 |" in text and "| 1 | 2 | 0.060 | - | - | -, - |" in text
    assert "| 1 | subset-1111 | 80.00 | 81.00 | 80.00 | 2.50x |" in text
    assert "+1.50 ± 0.71 (2/2 ahead), t(1) = 3.00, sign p = 0.50; cost 2.50x" in text


def test_the_control_beside_halving_is_paired_on_seeds_the_subsets_never_ran(tmp_path):
    """Part 3's fresh seeds: halving and the control in one folder, the whole runs of every subset on other seeds."""
    for s, d in {"1111": 0.80, "0111": 0.84, "1000": 0.70}.items():
        write_run(tmp_path / "subsets", f"subset-{s}", 1, d, 100.0, [])
    search = [{"event": "search", "rung": 0, "subset": s, "fraction": 0.03, "score": d, "f1": d, "loss": d}
              for s, d in (("1111", 0.5), ("1000", 0.4), ("0111", 0.6, ))]
    search[-1]["winner"] = "0111"
    write_run(tmp_path / "fresh", "halving", 6, 0.83, 300.0, search)
    write_run(tmp_path / "fresh", "subset-1111", 6, 0.82, 100.0, [])
    text = "\n".join(module["search_table"](tmp_path / "fresh", tmp_path / "subsets"))
    assert "| 0 | 3 | 0.030 | 1.00 | 1.00 | -1.00, -1.00 |" in text
    assert "| 6 | subset-0111 | 84.00 | 83.00 | 82.00 | 3.00x |" in text


def test_a_search_under_way_shows_its_proxies_and_each_search_has_its_table(tmp_path):
    for s, d in {"1111": 0.80, "0111": 0.84, "1000": 0.70, "1110": 0.78}.items():
        write_run(tmp_path / "subsets", f"subset-{s}", 1, d, 100.0, [])
    write_run(tmp_path / "fresh", "subset-1111", 6, 0.82, 100.0, [])
    knockout = tmp_path / "fresh" / "knockout-s6"  # its search done, its final run not: no metrics.json yet
    knockout.mkdir()
    (knockout / "log.jsonl").write_text("".join(json.dumps(
        {"event": "search", "rung": 0, "subset": s, "fraction": 0.3, "score": d, "f1": d, "loss": 1 - d}) + "\n"
        for s, d in (("1111", 0.6), ("0111", 0.7), ("1110", 0.5))))
    write_run(tmp_path / "fresh", "halving", 6, 0.83, 250.0, [{"event": "search", "rung": 0, "subset": s,
              "fraction": 0.03, "score": d, "f1": d, "loss": d, "winner": "1000"} for s, d in (("1000", 0.9),)])
    text = "\n".join(module["search_table"](tmp_path / "fresh", tmp_path / "subsets"))
    assert "### mrpc: halving's proxies" in text and "### mrpc: knockout's proxies" in text
    assert "| 0 | 3 | 0.300 | 1.00 | 1.00 | 1.00, 1.00 |" in text  # knockout: 0111 > 1111 > 1110, as whole runs
    assert "| 6 | (searching) | nan |  | 82.00 |  |" in text
    assert "| 6 | subset-1000 | 70.00 | 83.00 | 82.00 | 2.50x |" in text


def test_rho_is_over_the_subsets_part_1_has_run_when_it_is_unfinished(tmp_path):
    """CoLA's part 1 ran 4 of 12 subsets when part 3 began: a proxy of a subset with no whole run is left out of rho."""
    for s, d in {"1111": 0.80, "0111": 0.84, "1000": 0.70}.items():
        write_run(tmp_path / "subsets", f"subset-{s}", 1, d, 100.0, [])
    search = [{"event": "search", "rung": 0, "subset": s, "fraction": 0.3, "score": d, "f1": d, "loss": 1 - d}
              for s, d in (("1111", 0.5), ("1000", 0.4), ("0111", 0.6), ("0110", 0.1))]
    search[-1]["winner"] = "0111"
    write_run(tmp_path / "fresh", "knockout", 6, 0.83, 200.0, search)
    text = "\n".join(module["search_table"](tmp_path / "fresh", tmp_path / "subsets"))
    assert "| 0 | 4 | 0.300 | 1.00 | 1.00 | 1.00, 1.00 |" in text  # 0110 (no whole run) left out

def test_the_score_to_rank_by_on_seeds_the_whole_runs_share(tmp_path):
    """Per seed, the last rung's best proxy by the metric and by the gold loss, each with its own whole run."""
    held = {1: {"1111": 0.80, "0111": 0.84, "1110": 0.78}, 2: {"1111": 0.82, "0111": 0.81, "1110": 0.79}}
    for seed, subsets in held.items():
        for s, d in subsets.items():
            write_run(tmp_path / "subsets", f"subset-{s}", seed, d, 100.0, [])
        # the metric prefers 1110 on both seeds (its two others tie: they share a rank); the loss ranks as the
        # seed's whole runs do
        search = [{"event": "search", "rung": 0, "subset": s, "fraction": 0.3, "score": 0.9 if s == "1110" else 0.5,
                   "f1": 0.9 if s == "1110" else 0.5, "loss": 1 - d} for s, d in subsets.items()]
        search[-1]["winner"] = "1110"
        write_run(tmp_path / "score", "knockout", seed, 0.78, 200.0, search)
    text = "\n".join(module["search_table"](tmp_path / "score", tmp_path / "subsets"))
    assert "| 1 | 1110 | 78.00 | 78.00 | 0111 | 84.00 | 84.00 | -0.87, 1.00 |" in text
    assert "| 2 | 1110 | 79.00 | 79.00 | 1111 | 82.00 | 82.00 | -0.87, 1.00 |" in text
    assert "by f1 78.50, by gold loss 83.00." in text



def test_the_cost_of_a_run_resumed_from_a_checkpoint_without_cpu_seconds_is_by_wall_time():
    cost_of = module["cost_of"]
    control = {"cpu_s": 200.0, "wall_s": {"final_s": 260.0}, "resumed_from": None}
    run = {"cpu_s": 400.0, "wall_s": {"episodes_s": 700.0, "final_s": 600.0}, "resumed_from": None}
    assert cost_of(run, control) == 2.0
    carried = {**run, "resumed_from": {"times": {"episodes_s": 700.0, "cpu_s": 350.0}}}
    assert cost_of(carried, control) == 2.0  # its cpu_s already holds the 350 s before the kill
    before = {**run, "resumed_from": {"times": {"episodes_s": 700.0}}}  # made before 2026-12-03: 400 s is a part
    assert cost_of(before, control) == 5.0  # 1300 s of wall time against 260
