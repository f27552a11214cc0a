"""Copy the small text files of finished runs into the repo, so tables rebuild without the runs.

    python experiments/collect_runs.py runs/select/stsb-resk experiments/logs/select/stsb-resk

For every <src>/<method>-s<seed>/ with a metrics.json (finished), copies config.json,
metrics.json, log.jsonl and report.svg to <dst>/<method>-s<seed>/; never weights,
checkpoints or predictions. experiments/kd_table.py reads the copies as it reads run folders.
A search stopped once it named its winner (experiments/search_score.sh) has no metrics.json: its
config.json and log.jsonl are copied, which is all experiments/search_table.py reads of it.
"""
import shutil
import sys
from pathlib import Path

KEPT = ("config.json", "metrics.json", "log.jsonl", "report.svg")


def collect(src: Path, dst: Path) -> list[str]:
    copied = []
    for run in sorted(src.glob("*-s*/")):
        if not ((run / "metrics.json").is_file() or searched(run)):
            continue
        target = dst / run.name
        target.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (run / name).is_file():
                shutil.copyfile(run / name, target / name)
        copied.append(run.name)
    return copied


def searched(run: Path) -> bool:
    """A search's log that names its winner: the search is finished, whatever became of its final run."""
    return (run / "log.jsonl").is_file() and '"winner"' in (run / "log.jsonl").read_text()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    print(" ".join(collect(Path(sys.argv[1]), Path(sys.argv[2]))) or "no finished runs")
