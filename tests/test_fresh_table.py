"""experiments/fresh_table.py: part 3's pairs by seed, on folders written by hand."""
import runpy
from pathlib import Path

from test_search_table import write_run

module = runpy.run_path(str(Path(__file__).parents[1] / "experiments" / "fresh_table.py"))


def test_each_method_against_each_comparator_paired_by_seed(tmp_path):
    dev = {"subset-1111": {6: 0.80, 7: 0.82, 8: 0.81}, "knockout": {6: 0.81, 7: 0.84, 8: 0.80},
           "subset-0111": {6: 0.82, 7: 0.83}, "ksm-soft": {7: 0.79}}
    for method, seeds in dev.items():
        for seed, d in seeds.items():
            write_run(tmp_path, method, seed, d, 200.0 if method == "knockout" else 100.0, [])
    text = "\n".join(module["fresh_table"](tmp_path, "subset-0111"))
    assert "| method | seeds | dev f1 | Δ vs subset-1111 | Δ vs subset-0111 | Δ vs ksm-soft | cost vs the control |" in text
    # knockout - control: +1, +2, -1 (2 of 3 ahead); - subset-0111 over seeds 6, 7: -1, +1; - ksm-soft on 7: +5
    assert ("| knockout | 6,7,8 | 81.67 ± 2.08 | +0.67 ± 1.53 (2/3 ahead), t(2) = 0.76, sign p = 1.00 | "
            "+0.00 ± 1.41 (1/2 ahead), t(1) = 0.00, sign p = 1.00 | +5.00 ± 0.00 (1/1 ahead), one seed: no test | 2.00x |") in text
    assert "| subset-1111 | 6,7,8 | 81.00 ± 1.00 |  |" in text  # no pair with itself, no cost against itself
