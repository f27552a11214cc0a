"""The headroom table (experiments/subsets.sh): fixed knowledge subsets, chosen on held-out rows of train,
reported on dev.

    python experiments/subset_table.py experiments/logs/subsets/mrpc [experiments/logs/subsets/cola ...]

Reads the finished runs (metrics.json, config.json) of fixed subsets made with --holdout and prints,
per task, each subset's main metric as mean ± sd over seeds on the held-out rows and on dev, and its
dev difference from the control (subset-1111, all four knowledges with the selectors' normalisation)
paired by seed. Then the honest choice: the subset with the best mean held-out score, reported on
dev (nothing looked at dev to choose it) against the control; the best subset on dev, for reference
only (chosen on the numbers it is judged by); and how far held-out means rank the subsets as dev
means do (Spearman's rho over subsets). Last, what each knowledge adds: the difference between
subsets that differ in that knowledge alone (on − off), over every such pair and seed, on held-out
and dev, and how many of those differences are positive. Only the seeds every subset has finished
count, so every subset is judged on the same seeds.
"""
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kd_table import load, mean_std, signed  # noqa: E402

CONTROL = "subset-1111"
KNOWLEDGE = ("FinK", "ResK", "FeaK", "RelK")


def differences(a: dict[int, float], b: dict[int, float]) -> list[float]:
    return [a[s] - b[s] for s in sorted(a)]


def paired(a: dict[int, float], b: dict[int, float]) -> str:
    """a - b paired by seed."""
    return signed(differences(a, b))


def with_digit(subset: str, k: int, digit: str) -> str:
    """subset-XXXX with its k-th knowledge's digit set to `digit`."""
    i = len("subset-") + k
    return subset[:i] + digit + subset[i + 1:]


def spearman(x: list[float], y: list[float]) -> float:
    rank = lambda v: np.argsort(np.argsort(v)).astype(float)
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def task_table(folder: Path) -> list[str]:
    runs = [m for m, c in load(folder) if m["method"].startswith("subset-")]
    if not runs or any("holdout" not in m for m in runs):
        raise SystemExit(f"subset_table.py: {folder}: needs finished subset-XXXX runs made with --holdout")
    main, first = runs[0]["main_metric"], runs[0]
    subsets = sorted({m["method"] for m in runs}, reverse=True)  # subset-1111 (the control) first
    seeds = sorted(set.intersection(*({m["seed"] for m in runs if m["method"] == s} for s in subsets)))
    if CONTROL not in subsets or not seeds:
        raise SystemExit(f"subset_table.py: {folder}: needs {CONTROL} and a seed every subset has finished")
    score = {(m["method"], split): {} for m in runs for split in ("holdout", "dev")}
    for m in runs:
        if m["seed"] in seeds:
            for split in ("holdout", "dev"):
                score[m["method"], split][m["seed"]] = m[split][main]
    mean = lambda s, split: statistics.mean(score[s, split].values())
    out = [f"### {first['task']} ({main}; held-out: {first['holdout_rows']} rows of train; seeds "
           f"{','.join(map(str, seeds))})", "",
           f"| subset | {' '.join(KNOWLEDGE)} | held-out {main} | dev {main} | dev vs control |",
           "|---|---|---|---|---|"]
    for s in subsets:
        digits = " ".join(s[len("subset-"):])
        against = "" if s == CONTROL else paired(score[s, "dev"], score[CONTROL, "dev"])
        out.append(f"| {s} | {digits} | {mean_std(list(score[s, 'holdout'].values()))} | "
                   f"{mean_std(list(score[s, 'dev'].values()))} | {against} |")
    chosen = max(subsets, key=lambda s: mean(s, "holdout"))
    best_dev = max(subsets, key=lambda s: mean(s, "dev"))
    rho = spearman([mean(s, "holdout") for s in subsets], [mean(s, "dev") for s in subsets])
    verdict = ("it is the control" if chosen == CONTROL else
               f"on dev against the control: {paired(score[chosen, 'dev'], score[CONTROL, 'dev'])}")
    out += ["", f"Chosen on held-out: **{chosen}**; {verdict}. Best on dev (for reference, chosen on the "
            f"scores it is judged by): {best_dev}. Spearman's rho of held-out and dev means over the "
            f"{len(subsets)} subsets: {rho:.2f}.", "",
            f"| knowledge | subset pairs | held-out {main}, on − off | dev {main}, on − off |", "|---|---|---|---|"]
    for k, name in enumerate(KNOWLEDGE):
        pairs = [(s, with_digit(s, k, "0")) for s in subsets if with_digit(s, k, "1") == s]
        pairs = [(on, off) for on, off in pairs if off in subsets]
        cells = []
        for split in ("holdout", "dev"):
            diffs = [d for on, off in pairs for d in differences(score[on, split], score[off, split])]
            cells.append(signed(diffs, "positive") if diffs else "")
        out.append(f"| {name} | {len(pairs)} | {cells[0]} | {cells[1]} |")
    return out + [""]


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print("\n".join(line for folder in sys.argv[1:] for line in task_table(Path(folder))))
