"""The test on seeds no choice has seen (issue 27, part 3): every method of a fresh-seed folder against the
control and the comparators the issue names, paired by seed.

    python experiments/fresh_table.py experiments/logs/fresh/mrpc 0111
    python experiments/fresh_table.py runs/fresh/cola          # no best subset yet: part 1 unfinished

Reads the finished runs of the folder (experiments/fresh_seeds.sh: the searches, the control subset-1111
--loss-norm ema, ksm-soft, random-soft and part 1's best fixed subset, whose digits are the second argument, if it is known). Prints, per method,
its seeds and dev main metric (mean ± sd), and against each comparator (the control, the best subset, ksm-soft,
random-soft) the per-seed difference over the seeds both ran: mean ± sd, seeds ahead, the paired t and the
sign test's p; and its cost against the control's on the same seeds (CPU seconds where logged, else wall). The
issue's bar for a selector on MRPC and CoLA: ahead of the control on at least 4 of 5 seeds, mean gain at least
+0.3; on STS-B not more than 0.3 behind on average; cost within 2.5x.
"""
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kd_table import load, mean_std, paired_test, signed  # noqa: E402
from search_table import CONTROL, cost_of  # noqa: E402


def fresh_table(folder: Path, best: str | None) -> list[str]:
    runs = [m for m, _ in load(folder)]
    if not runs:
        raise SystemExit(f"fresh_table.py: no finished run in {folder}")
    main = runs[0]["main_metric"]
    by = {}
    for m in runs:
        by.setdefault(m["method"], {})[m["seed"]] = m
    comparators = [c for c in (CONTROL, best, "ksm-soft", "random-soft") if c in by]
    out = [f"### {runs[0]['task']} ({folder}): dev {main}, paired by seed", "",
           f"| method | seeds | dev {main} | " + " | ".join(f"Δ vs {c}" for c in comparators)
           + " | cost vs the control |", "|---|---|---|" + "---|" * (len(comparators) + 1)]
    for method in sorted(by, key=lambda m: (m in comparators, m)):
        mine = by[method]
        cells = []
        for c in comparators:
            seeds = sorted(set(mine) & set(by[c]))
            diffs = [mine[s]["dev"][main] - by[c][s]["dev"][main] for s in seeds]
            cells.append("" if c == method or not diffs else f"{signed(diffs)}, {paired_test(diffs)}")
        both = sorted(set(mine) & set(by.get(CONTROL, {})))
        cost = (f"{statistics.mean(cost_of(mine[s], by[CONTROL][s]) for s in both):.2f}x"
                if both and method != CONTROL else "")
        out.append(f"| {method} | {','.join(map(str, sorted(mine)))} | "
                   f"{mean_std([m['dev'][main] for m in mine.values()])} | " + " | ".join(cells) + f" | {cost} |")
    return out + [""]


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    print("\n".join(fresh_table(Path(sys.argv[1]), "subset-" + sys.argv[2] if len(sys.argv) == 3 else None)))
