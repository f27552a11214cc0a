"""Your own data: a task described on run.py's command line or in a task.json beside the files,
made into a Task, the description the GLUE table holds, so kd_ref.data.glue reads it as it
reads GLUE.

    python run.py --data train.csv,dev.csv[,test.csv] --text-columns review --label-column stars ...
    python run.py --task data/reviews/task.json ...

task.json holds the same as the flags (paths relative to its folder):

    {"name": "reviews", "train": "train.csv", "dev": "dev.csv", "test": "test.csv",
     "text_columns": ["review"], "label_column": "stars", "metrics": ["f1", "accuracy"]}

Classification takes the labels found in train, in sorted order (numerically when every
label is a number), unless `labels` gives the order; regression (`regression`: true)
takes labels that are numbers. The first metric is the main one, which run.py reports and
summarises; defaults: accuracy, or pearson and spearman for regression.
"""
import dataclasses
import json
import math
from pathlib import Path

from kd_ref.data.glue import TASKS, Task, get_task, records
from kd_ref.data.metrics import METRICS
from kd_ref.plumbing.errors import KdError

KEYS = ("name", "train", "dev", "test", "text_columns", "label_column", "labels", "regression", "metrics")
REGRESSION_METRICS = ("pearson", "spearman")


def task_from_args(args) -> Task:
    """The task of run.py's flags: --task NAME (GLUE), --task FILE.json, or --data FILES with
    --text-columns, --label-column, --labels, --regression and --metrics (--task naming it)."""
    own_flags = [flag for flag in ("text_columns", "labels", "metrics") if getattr(args, flag)]
    own_flags += ["regression"] if args.regression else []
    if args.data:
        files = [f.strip() for f in args.data.split(",")]
        if not 2 <= len(files) <= 3:
            raise KdError(f"--data {args.data}: give TRAIN,DEV or TRAIN,DEV,TEST (comma-separated files)")
        if not args.text_columns:
            raise KdError("--data needs --text-columns (the one or two columns holding the texts)")
        split = lambda v: [x.strip() for x in v.split(",")] if v else None
        return describe(args.task or Path(files[0]).resolve().parent.name, dict(zip(("train", "dev", "test"), files)),
                        split(args.text_columns), args.label_column, split(args.labels), args.regression,
                        split(args.metrics), where="--")
    if own_flags:
        raise KdError(f"--{own_flags[0].replace('_', '-')} describes your own data: give its files with --data")
    if args.task and args.task.endswith(".json"):
        return task_from_file(Path(args.task))
    return get_task(args.task)


def task_from_file(path: Path) -> Task:
    """The task a task.json describes; its file paths are relative to its folder."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KdError(f"{path}: file not found (a task description, or a GLUE task name: {', '.join(TASKS)})") from None
    except (OSError, ValueError) as e:
        raise KdError(f"{path}: cannot read a task description ({type(e).__name__}: {e})") from None
    if not isinstance(spec, dict):
        raise KdError(f"{path}: a task description is a JSON object with the keys {', '.join(KEYS)}")
    unknown = sorted(set(spec) - set(KEYS))
    if unknown:
        raise KdError(f"{path}: unknown key {unknown[0]!r}; a task description has {', '.join(KEYS)}")
    for key in ("train", "dev", "text_columns"):
        if key not in spec:
            raise KdError(f"{path}: no {key!r}; a task description needs train, dev and text_columns")
    files = {split: str(path.parent / spec[split]) for split in ("train", "dev", "test") if spec.get(split)}
    as_list = lambda key: [spec[key]] if isinstance(spec.get(key), str) else spec.get(key)
    return describe(spec.get("name") or path.resolve().parent.name, files, as_list("text_columns"),
                    spec.get("label_column", "label"), as_list("labels"), bool(spec.get("regression", False)),
                    as_list("metrics"), where=f"{path}: ")


def describe(name: str, files: dict, text_columns: list, label_column: str, labels: list | None,
             regression: bool, metrics: list | None, where: str) -> Task:
    """A Task from a description; `where` prefixes each error: '--' (a flag) or 'task.json: ' (a key)."""
    flag = lambda key: f"{where}{key.replace('_', '-')}" if where == "--" else f"{where}{key}"
    if not 1 <= len(text_columns) <= 2 or not all(isinstance(c, str) and c for c in text_columns):
        raise KdError(f"{flag('text_columns')} {text_columns}: one or two column names (a text, or a pair)")
    if regression and labels:
        raise KdError(f"{flag('labels')}: a regression task has scores, not labels")
    metrics = metrics or (list(REGRESSION_METRICS) if regression else ["accuracy"])
    fits = REGRESSION_METRICS if regression else tuple(m for m in METRICS if m not in REGRESSION_METRICS)
    for m in metrics:
        if m not in fits:
            raise KdError(f"{flag('metrics')} {','.join(metrics)}: {m!r} is not a metric of "
                          f"{'regression' if regression else 'classification'}; choose among {', '.join(fits)}")
    task = Task(name, name, None, tuple(metrics), metrics[0], text_columns[0],
                text_columns[1] if len(text_columns) == 2 else None, label_column, test_splits=("test",) * ("test" in files),
                files=tuple(files.items()))
    if regression:
        return task
    if labels is None:
        labels = found_labels(task)
    elif len(set(labels)) != len(labels) or len(labels) < 2:
        raise KdError(f"{flag('labels')} {','.join(map(str, labels))}: two or more labels, each once")
    if "f1" in metrics and len(labels) != 2:
        raise KdError(f"{flag('metrics')}: f1 is the binary F1 of the second label; {name} has {len(labels)} labels")
    return dataclasses.replace(task, labels=tuple(map(str, labels)))


def found_labels(task: Task) -> list[str]:
    """The labels train holds, sorted: by value when every one is a number, else as text."""
    path = task.path(None, "train")
    if not path.is_file():
        raise KdError(f"{path}: file not found ({task.name} train file)")
    found = set()
    for where, _, _, label in records(path, task, labeled=True):
        if not label.strip():
            raise KdError(f"{where}: no label (column {task.label_column!r} is empty)")
        found.add(label)
    if len(found) < 2:
        raise KdError(f"{path}: holds the one label {found.pop()!r}; classification needs two or more "
                      "(for scores, ask for regression)")
    numeric = all(number(label) is not None for label in found)
    return sorted(found, key=lambda label: (number(label), label) if numeric else label)


def number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
