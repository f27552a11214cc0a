"""A GLUE task's rows rewritten as a user's own data (issue 30): train.csv and dev.csv with other column
names (text, or first and second; the label as 'gold'), and a task.json describing them, so that
run.py --task OUT/task.json reads them through the own-data path. Labels keep GLUE's text ('0', '1';
scores for STS-B), so a teacher fine-tuned on the GLUE task is matched to them by name.

    python experiments/glue_as_csv.py cola runs/own/cola/data [--rows N]   # N: the first N train rows only
"""
import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kd_ref.data.glue import get_task, read_split, resolve_data_dir  # noqa: E402
from kd_ref.plumbing.errors import KdError  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task")
    p.add_argument("out", type=Path)
    p.add_argument("--rows", type=int, help="keep the first ROWS rows of train (and of dev): a smoke test")
    p.add_argument("--data-dir", help="GLUE folder (default: as run.py)")
    args = p.parse_args()
    try:
        task = get_task(args.task)
        data_dir = resolve_data_dir(args.data_dir)
        columns = ["first", "second"] if task.text_b else ["text"]
        args.out.mkdir(parents=True, exist_ok=True)
        for split, name in (("train", "train"), (task.dev_splits[0], "dev")):
            examples = read_split(data_dir, task, split)[: args.rows]
            with open(args.out / f"{name}.csv", "w", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["id", *columns, "gold"])
                for i, e in enumerate(examples):
                    label = e.label if task.labels is None else task.labels[e.label]
                    writer.writerow([i, e.text_a, *([e.text_b] if task.text_b else []), label])
        spec = {"name": f"{task.name}-csv", "train": "train.csv", "dev": "dev.csv", "text_columns": columns,
                "label_column": "gold", "regression": task.labels is None, "metrics": list(task.metrics)}
        if task.main_metric != task.metrics[0]:
            spec["metrics"] = [task.main_metric] + [m for m in task.metrics if m != task.main_metric]
        (args.out / "task.json").write_text(json.dumps(spec, indent=2) + "\n")
    except KdError as e:
        sys.exit(f"error: {e}")
    print(f"{args.out}: train.csv, dev.csv, task.json ({task.name} as your own data)")


if __name__ == "__main__":
    main()
