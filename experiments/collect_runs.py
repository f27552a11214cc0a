"""Copy the small text files of finished runs into the repo, so tables rebuild without the runs.

    python experiments/collect_runs.py runs/select/stsb-resk experiments/logs/select/stsb-resk

For every <src>/<method>-s<seed>/ with a metrics.json (finished), copies config.json,
metrics.json, log.jsonl and report.svg to <dst>/<method>-s<seed>/; never weights,
checkpoints or predictions. experiments/kd_table.py reads the copies as it reads run folders.
"""
import shutil
import sys
from pathlib import Path

KEPT = ("config.json", "metrics.json", "log.jsonl", "report.svg")


def collect(src: Path, dst: Path) -> list[str]:
    copied = []
    for metrics in sorted(src.glob("*-s*/metrics.json")):
        target = dst / metrics.parent.name
        target.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (metrics.parent / name).is_file():
                shutil.copyfile(metrics.parent / name, target / name)
        copied.append(metrics.parent.name)
    return copied


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(" ".join(collect(Path(sys.argv[1]), Path(sys.argv[2]))) or "no finished runs")
