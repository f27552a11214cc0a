"""What the augmented rows did (issue 30): per method, the dev main metric without and with --augment,
mean ± sd over seeds, and the difference paired by seed (same seed, same original rows).

    python experiments/own_table.py runs/own/cola/plain runs/own/cola/augmented

Reads <folder>/<method>-s<seed>/metrics.json (finished runs only). Nothing is run here.
"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kd_table import mean_std, signed  # noqa: E402


def scores(folder: Path) -> dict:
    """(method, seed) -> dev main metric, and the main metric's name."""
    out = {}
    for path in sorted(folder.glob("*-s*/metrics.json")):
        m = json.loads(path.read_text())
        out[m["method"], m["seed"]] = m["dev"][m["main_metric"]]
        out["metric"] = m["main_metric"]
    return out


def main(plain: Path, augmented: Path) -> None:
    a, b = scores(plain), scores(augmented)
    order = ("finetune", "kd", "pkd", "all", "random-soft", "random-hard", "ksm-hard", "ksm-soft")
    methods = sorted({key[0] for key in a if key != "metric"}, key=lambda m: order.index(m) if m in order else 99)
    print(f"| dev {a.get('metric')} (×100) | without augmented rows | with | with − without, paired by seed |")
    print("|---|---|---|---|")
    for method in methods:
        seeds = sorted(s for m, s in (k for k in a if k != "metric") if m == method and (m, s) in b)
        if not seeds:
            continue
        before, after = [a[method, s] for s in seeds], [b[method, s] for s in seeds]
        print(f"| {method} ({len(seeds)} seeds) | {mean_std(before)} | {mean_std(after)} | "
              f"{signed([y - x for x, y in zip(before, after)], 'up')} |")


if __name__ == "__main__":
    main(*map(Path, sys.argv[1:3]))
