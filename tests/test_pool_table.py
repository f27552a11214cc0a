"""experiments/pool_table.py: the pooled choice replayed on every pool of seeds, on folders written by hand."""
import json
import runpy
from pathlib import Path

import pytest

from test_gate_table import proxies
from test_search_table import write_run

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "pool_table.py"))
LEFT_OUT = {"1011": 0.62, "1101": 0.605, "1110": 0.607}


def knockout(loss_0111: float) -> list[dict]:
    """A knockout run's proxies in the selector's order: all, then FinK, ResK, FeaK, RelK left out."""
    return proxies({"1111": 0.60, "0111": loss_0111, **LEFT_OUT})


def test_each_pool_chooses_by_its_seeds_and_is_scored_on_the_others(tmp_path):
    # 0111's lead over all's proxy: 5%, 4%, 6% on seeds 1-3, -3% on seed 4; its whole runs +2 F1 on every seed
    # (knockout's final runs: 0111's on seeds 1-3, all's on seed 4)
    for seed, lead in {1: 0.05, 2: 0.04, 3: 0.06, 4: -0.03}.items():
        write_run(tmp_path, "knockout", seed, 0.82 if lead > 0 else 0.80, 200.0, knockout(0.60 * (1 - lead)))
        write_run(tmp_path, "subset-1111", seed, 0.80, 100.0, [])
        write_run(tmp_path / "part1", "subset-0111", seed, 0.82, 100.0, [])
    text = "\n".join(module["pool_table"]([tmp_path, tmp_path / "part1"]))
    assert "Proxy seeds 1,2,3,4; dev f1 of the control on seeds 1,2,3,4." in text
    assert "| 1 | +5.00% | -3.33% | -0.83% | -1.17% |" in text
    # pairs of seeds: the three of 1-3 clear (t over two seeds >= 2: 5/4% -> t 9, 4/6% -> t 5, 5/6% -> t 11);
    # the three with seed 4 do not; each pool that chose 0111 gains +2 on both other seeds, all's pools 0
    assert "| 2 | 6 | 0111 50%, 1111 50% | +1.00 | 50% / 50% | 0/12 |" in text
    # triples: 1,2,3 clears; with seed 4 the mean is 2-2.67% but t < 2; four seeds: mean 3%, t 1.47
    assert "| 3 | 4 | 1111 75%, 0111 25% | +0.50 | 25% / 25% | 0/4 |" in text
    assert "| all seeds | +3.00 ± 4.08%, t 1.47 | -3.33 ± 0.00%, t -inf |" in text
    assert "| 4 | 1 | 1111 100% | - | - | 0/0 |" in text


def test_a_chosen_subset_without_a_run_on_a_seed_is_counted_missing_and_a_cut_rung_is_no_evidence(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, "subset-1111", seed, 0.80, 100.0, [])
        if seed < 3:  # knockout-gate's final runs: 0111's on seeds 1 and 2
            write_run(tmp_path, "knockout-gate", seed, 0.81, 200.0, knockout(0.57))
    unfinished = tmp_path / "knockout-s3"  # its proxies done, its final run not: no 0111 run on seed 3
    unfinished.mkdir()
    (unfinished / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in knockout(0.57)))
    cut = tmp_path / "knockout-s4"  # a stop in its third proxy: two search lines only
    cut.mkdir()
    (cut / "log.jsonl").write_text("".join(json.dumps(line) + "\n" for line in knockout(0.57)[:2]))
    text = "\n".join(module["pool_table"]([tmp_path]))
    assert "Proxy seeds 1,2,3;" in text
    # every pair chooses 0111 (a 5% lead on each seed); pool 1,2 has no run to score on seed 3
    assert "| 2 | 3 | 0111 100% | +1.00 | 100% / 100% | 1/3 |" in text


def test_one_seed_of_proxies_is_refused(tmp_path):
    write_run(tmp_path, "knockout", 1, 0.80, 200.0, knockout(0.57))
    with pytest.raises(SystemExit, match="1 seed"):
        module["pool_table"]([tmp_path])


def test_a_registered_test_pools_its_seeds_and_pairs_the_choice_with_the_control_on_others(tmp_path):
    for seed, lead in {1: 0.05, 2: 0.04, 3: -0.10}.items():
        write_run(tmp_path, "knockout", seed, 0.80, 200.0, knockout(0.60 * (1 - lead)))
    for seed, (control, chosen) in {3: (0.80, 0.83), 4: (0.81, 0.80), 5: (0.79, None)}.items():
        write_run(tmp_path, "subset-1111", seed, control, 100.0, [])
        if chosen:
            write_run(tmp_path, "subset-0111", seed, chosen, 100.0, [])
    text = "\n".join(module["pool_test"]([tmp_path], [1, 2], [3, 4, 5]))
    assert "pooled over seeds 1,2, chosen 0111; dev f1 against the control on seeds 3,4,5" in text
    assert "| 3 | 80.00 | 83.00 | +3.00 |" in text and "| 5 | 79.00 | ? | ? |" in text
    assert "Gain over the control: +1.00 ± 2.83 (1/2 ahead); t(1) = 0.50, sign p = 1.00." in text
    # seed 3's proxies say the opposite: pooled with it, the lead's t falls below 2 and all is kept
    assert "chosen 1111" in "\n".join(module["pool_test"]([tmp_path], [1, 2, 3], [4]))
    with pytest.raises(SystemExit, match="shares seeds with --test"):
        module["pool_test"]([tmp_path], [1, 2], [2, 3])
