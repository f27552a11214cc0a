"""GLUE tasks read from the original TSV release (the layout `python -m kd_ref.data.download` makes).

One table (TASKS) says, per task, where its files live, which header columns hold
the texts and the label, and the label order; one reader (read_split) handles all
nine tasks. Conventions:

- <data_dir>/<Task.folder>/<split>.tsv, split in 'train', Task.dev_splits, Task.test_splits.
- Fields are split on '\\t' only: quotes are data (MRPC/QNLI sentences contain '"').
- UTF-8, an optional BOM (MRPC train/dev have one), '\\n' or '\\r\\n' line ends.
- Example.label is an index into Task.labels, a float for STS-B (Task.labels is
  None), and None on the unlabeled test splits.
- Any malformed file raises KdError naming the file and line.
"""
import os
from dataclasses import dataclass
from pathlib import Path

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
         headerless=("source", "label", "author_label", "sentence")),
    Task("sst2", "SST-2", ("0", "1"), ("accuracy",), "accuracy", "sentence", None, "label"),
    Task("mrpc", "MRPC", ("0", "1"), ("f1", "accuracy"), "f1", "#1 String", "#2 String", "Quality"),
    Task("stsb", "STS-B", None, ("pearson", "spearman"), "pearson", "sentence1", "sentence2", "score"),
    Task("qqp", "QQP", ("0", "1"), ("f1", "accuracy"), "f1", "question1", "question2", "is_duplicate"),
    Task("mnli", "MNLI", ("contradiction", "entailment", "neutral"), ("accuracy",), "accuracy",
         "sentence1", "sentence2", "gold_label",
         dev_splits=("dev_matched", "dev_mismatched"), test_splits=("test_matched", "test_mismatched")),
    Task("qnli", "QNLI", ("entailment", "not_entailment"), ("accuracy",), "accuracy",
         "question", "sentence", "label"),
    Task("rte", "RTE", ("entailment", "not_entailment"), ("accuracy",), "accuracy",
         "sentence1", "sentence2", "label"),
    Task("wnli", "WNLI", ("0", "1"), ("accuracy",), "accuracy", "sentence1", "sentence2", "label"),
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
    """All examples of <data_dir>/<task.folder>/<split>.tsv, in file order."""
    splits = ("train",) + task.dev_splits + task.test_splits
    if split not in splits:
        raise KdError(f"{task.name} has no split {split!r}; splits: {', '.join(splits)}")
    path = Path(data_dir) / task.folder / f"{split}.tsv"
    if not path.is_file():
        raise KdError(f"{path}: file not found (GLUE {task.folder} {split} split)")
    rows = _read_tsv(path)
    labeled = split not in task.test_splits
    header_lines = 0 if labeled and task.headerless else 1
    names = rows[0] if header_lines else task.headerless
    wanted = (task.text_a, task.text_b, task.label_column if labeled else None)
    for name in filter(None, wanted):
        if name not in names:
            raise KdError(f"{path}:1: header lacks column {name!r}; a GLUE {task.folder} {split} file "
                          f"starts with a header naming its columns, {' and '.join(filter(None, wanted))} among them")
    col_a, col_b, col_label = (names.index(n) if n else None for n in wanted)
    if len(rows) == header_lines:
        raise KdError(f"{path}: header only, no data rows")

    examples = []
    for row_no, fields in enumerate(rows[header_lines:]):
        where = f"{path}:{header_lines + row_no + 1}"
        if len(fields) != len(names):
            raise KdError(f"{where}: expected {len(names)} tab-separated columns, got {len(fields)}")
        label = None if col_label is None else _parse_label(task, fields[col_label], where)
        text_b = None if col_b is None else fields[col_b]
        examples.append(Example(f"{split}-{row_no}", fields[col_a], text_b, label))
    return examples


def _read_tsv(path: Path) -> list[list[str]]:
    """Lines of a TSV file split on tabs: BOM and '\\r\\n' removed, a final newline optional."""
    try:
        data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    except OSError as e:
        raise KdError(f"{path}: cannot read ({e.strerror})") from None
    if not data.strip():
        raise KdError(f"{path}: file is empty")
    # split bytes on '\n' only: str.splitlines would also break on \x85, \u2028, ... inside text
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    rows = []
    for line_no, line in enumerate(lines, 1):
        if b"\0" in line:
            raise KdError(f"{path}:{line_no}: NUL byte, this is a binary file, not a GLUE TSV")
        try:
            text = line.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as e:
            raise KdError(f"{path}:{line_no}: not UTF-8 (byte {e.start + 1} of the line)") from None
        rows.append(text.split("\t"))
    return rows


def _parse_label(task: Task, text: str, where: str) -> int | float:
    if task.labels is not None:
        if text not in task.labels:
            raise KdError(f"{where}: unknown {task.name} label {text!r}; expected one of {task.labels}")
        return task.labels.index(text)
    try:
        score = float(text)
    except ValueError:
        score = None
    if score is None or not 0.0 <= score <= 5.0:  # STS-B similarity is in [0, 5]; rejects nan, inf
        raise KdError(f"{where}: {task.name} score {text!r} is not a number in [0, 5]")
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
