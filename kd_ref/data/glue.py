"""Tasks: the GLUE table and the one reader of every task's files, GLUE's or the user's.

One description (Task) says, per task, where its files live, which columns hold the
texts and the label, the label order and the metrics; the nine GLUE tasks are entries
of TASKS, a user's own data a Task made by kd_ref.data.own, and one reader (read_split,
read_file) handles them all. Conventions:

- GLUE: <data_dir>/<Task.folder>/<split>.tsv, split in 'train', Task.dev_splits,
  Task.test_splits (the layout `python -m kd_ref.data.download` makes). A user's task
  names its files (Task.files): TSV, CSV or JSON Lines (kd_ref.data.rows).
- Example.label is an index into Task.labels, a float for regression (Task.labels is
  None), and None on the unlabeled test splits.
- Any malformed file raises KdError naming the file and line.
"""
import math
import os
from dataclasses import dataclass
from pathlib import Path

from kd_ref.data.rows import read_table
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import write_atomically


@dataclass(frozen=True)
class Task:
    name: str                       # our key: 'cola', 'sst2', ...
    folder: str                     # folder in the GLUE release: 'CoLA', 'SST-2', ...
    labels: tuple[str, ...] | None  # label strings in index order (HF/GLUE processors); None = regression
    metrics: tuple[str, ...]        # official metric names, keys of kd_ref.data.metrics.METRICS
    main_metric: str                # the metric we report and select checkpoints on
    text_a: str                     # header name of the first text column
    text_b: str | None              # header name of the second text column (None = single sentence)
    label_column: str               # header name of the label column (absent in test files)
    headerless: tuple[str, ...] = ()  # column names of train/dev files that have no header (CoLA)
    dev_splits: tuple[str, ...] = ("dev",)
    test_splits: tuple[str, ...] = ("test",)
    score_range: tuple[float, float] | None = None  # regression: the scores a label may hold (STS-B: 0..5)
    # the name a teacher's config.json (id2label) may give each class besides its label, as the
    # Hugging Face `datasets` GLUE features name them: how a teacher fine-tuned elsewhere is matched
    label_aliases: tuple[str, ...] = ()
    files: tuple[tuple[str, str], ...] = ()  # a user's task: (split, path) of each file; GLUE: ()

    def path(self, data_dir, split: str) -> Path:
        """The file of a split: GLUE's <data_dir>/<folder>/<split>.tsv, or the user's file."""
        splits = ("train",) + self.dev_splits + self.test_splits
        if split not in splits:
            raise KdError(f"{self.name} has no split {split!r}; splits: {', '.join(splits)}")
        return Path(dict(self.files)[split]) if self.files else Path(data_dir) / self.folder / f"{split}.tsv"

    def describe(self) -> dict | None:
        """A user's task as a record (files, columns, labels, metrics) for the run folder and the
        teacher's recipe; None for a GLUE task, which its name says."""
        if not self.files:
            return None
        return {"name": self.name, "files": dict(self.files), "text_columns": [c for c in (self.text_a, self.text_b) if c],
                "label_column": self.label_column, "labels": None if self.labels is None else list(self.labels),
                "metrics": list(self.metrics)}

    @property
    def num_labels(self) -> int:
        """Classifier outputs: 1 for regression (STS-B)."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None


TASKS = {t.name: t for t in [
    # CoLA train/dev: source, label, original author's mark, sentence; no header.
    Task("cola", "CoLA", ("0", "1"), ("mcc",), "mcc", "sentence", None, "label",
         headerless=("source", "label", "author_label", "sentence"), label_aliases=("unacceptable", "acceptable")),
    Task("sst2", "SST-2", ("0", "1"), ("accuracy",), "accuracy", "sentence", None, "label",
         label_aliases=("negative", "positive")),
    Task("mrpc", "MRPC", ("0", "1"), ("f1", "accuracy"), "f1", "#1 String", "#2 String", "Quality",
         label_aliases=("not_equivalent", "equivalent")),
    Task("stsb", "STS-B", None, ("pearson", "spearman"), "pearson", "sentence1", "sentence2", "score",
         score_range=(0.0, 5.0)),
    Task("qqp", "QQP", ("0", "1"), ("f1", "accuracy"), "f1", "question1", "question2", "is_duplicate",
         label_aliases=("not_duplicate", "duplicate")),
    Task("mnli", "MNLI", ("contradiction", "entailment", "neutral"), ("accuracy",), "accuracy",
         "sentence1", "sentence2", "gold_label",
         dev_splits=("dev_matched", "dev_mismatched"), test_splits=("test_matched", "test_mismatched")),
    Task("qnli", "QNLI", ("entailment", "not_entailment"), ("accuracy",), "accuracy",
         "question", "sentence", "label"),
    Task("rte", "RTE", ("entailment", "not_entailment"), ("accuracy",), "accuracy",
         "sentence1", "sentence2", "label"),
    Task("wnli", "WNLI", ("0", "1"), ("accuracy",), "accuracy", "sentence1", "sentence2", "label",
         label_aliases=("not_entailment", "entailment")),
]}


def get_task(name: str) -> Task:
    """Task by name, case-insensitive; the GLUE folder spellings 'SST-2', 'STS-B' also work."""
    key = name.lower().replace("-", "")
    if key not in TASKS:
        raise KdError(f"unknown GLUE task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[key]


@dataclass
class Example:
    guid: str                       # '<split>-<row>', row counted from 0 over data rows
    text_a: str
    text_b: str | None
    label: int | float | None       # index into Task.labels, float for STS-B, None if unlabeled


def resolve_data_dir(arg: str | None) -> Path:
    """GLUE root: --data-dir, else $KD_GLUE_DIR, else <repo>/../shared/data/glue."""
    if arg:
        path, origin = Path(arg), "--data-dir"
    elif os.environ.get("KD_GLUE_DIR"):
        path, origin = Path(os.environ["KD_GLUE_DIR"]), "$KD_GLUE_DIR"
    else:
        path, origin = Path(__file__).resolve().parents[3] / "shared" / "data" / "glue", "default"
    if not path.is_dir():
        raise KdError(f"GLUE data directory {path} ({origin}) does not exist; "
                      f"get GLUE with `python -m kd_ref.data.download DIR` and pass --data-dir DIR")
    return path


def read_split(data_dir, task: Task, split: str) -> list[Example]:
    """All examples of a split of the task (task.path), in file order."""
    path = task.path(data_dir, split)
    if not path.is_file():
        what = f"GLUE {task.folder} {split} split" if not task.files else f"{task.name} {split} file"
        raise KdError(f"{path}: file not found ({what})")
    return read_file(path, task, labeled=split not in task.test_splits, split=split)


def read_file(path: Path, task: Task, *, labeled: bool, split: str) -> list[Example]:
    """All examples of one file of the task (a split, or rows added by run.py --augment), in file
    order; guids '<split>-<row>'. An unlabeled file (a test split) may lack the label column."""
    return [Example(f"{split}-{row_no}", text_a, text_b, None if label is None else _parse_label(task, label, where))
            for row_no, (where, text_a, text_b, label) in enumerate(records(path, task, labeled))]


def records(path: Path, task: Task, labeled: bool) -> list[tuple[str, str, str | None, str | None]]:
    """(file:line, text a, text b, label text) of every row, the label unparsed (None when unlabeled):
    what read_file makes examples of, and what kd_ref.data.own finds a task's labels in."""
    table = read_table(path, task.headerless if labeled else ())
    wanted = [name for name in (task.text_a, task.text_b, task.label_column if labeled else None) if name]
    for name in wanted if table.names is not None else ():
        if name not in table.names:
            raise KdError(f"{path}:1: header lacks column {name!r}; {task.name} reads the columns "
                          f"{' and '.join(map(repr, wanted))}, the header names {', '.join(map(repr, table.names))}")
    if not table.rows:
        raise KdError(f"{path}: header only, no data rows")
    out = []
    for line_no, row in table.rows:
        where = f"{path}:{line_no}"
        for name in wanted:
            if row.get(name) is None:
                raise KdError(f"{where}: no {name!r}" if name not in row else
                              f"{where}: {name!r} is not a string or a number")
        out.append((where, row[task.text_a], row[task.text_b] if task.text_b else None,
                    row[task.label_column] if labeled else None))
    return out


def _parse_label(task: Task, text: str, where: str) -> int | float:
    if task.labels is not None:
        if text not in task.labels:
            raise KdError(f"{where}: unknown {task.name} label {text!r}; expected one of {task.labels}")
        return task.labels.index(text)
    try:
        score = float(text)
    except ValueError:
        score = None
    low, high = task.score_range or (-math.inf, math.inf)
    if score is None or not low <= score <= high or not math.isfinite(score):  # rejects nan, inf
        within = f" in [{low:g}, {high:g}]" if task.score_range else ""
        raise KdError(f"{where}: {task.name} score {text!r} is not a{' finite' if not within else ''} number{within}")
    return score


def write_predictions(path, task: Task, predictions) -> None:
    """GLUE submission file: 'index\\tprediction' header, then one row per example in order.

    predictions: class indices into task.labels (written as the label string) or,
    for regression, scores (written with 3 decimals). The file appears atomically.
    """
    path = Path(path)
    rows = ["index\tprediction"]
    for i, p in enumerate(predictions):
        if task.labels is None:
            rows.append(f"{i}\t{float(p):.3f}")
        elif 0 <= int(p) < len(task.labels):
            rows.append(f"{i}\t{task.labels[int(p)]}")
        else:
            raise KdError(f"{path}: prediction {i} is class {int(p)}, {task.name} has {len(task.labels)} classes")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, lambda tmp: tmp.write_text("\n".join(rows) + "\n", encoding="utf-8"))
