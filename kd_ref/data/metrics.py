"""GLUE metrics in numpy: accuracy, binary F1, Matthews correlation, Pearson, Spearman.

Each metric takes two 1-D arrays of equal length N >= 1 (predictions, labels):
class indices for the classification metrics, real numbers for the correlations,
and returns a Python float. Degenerate inputs do not crash:
- F1 with no positive prediction and no positive label is 0.0 (as sklearn's default).
- MCC is 0.0 when all predictions (or all labels) are one class, as sklearn.
- Pearson/Spearman are 0.0 when either input is constant, where scipy gives nan:
  a model that predicts one value has learned no correlation, and 0.0 keeps
  checkpoint selection (max over evals) well defined.
NaN predictions are not degenerate but a diverged model: the correlations stay nan.
"""
import numpy as np

from kd_ref.data.glue import Task


def _check(predictions, labels) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(predictions).ravel(), np.asarray(labels).ravel()
    if len(p) != len(y) or len(p) == 0:
        raise ValueError(f"metrics need equal, non-zero lengths; got {len(p)} predictions, {len(y)} labels")
    return p, y


def accuracy(predictions, labels) -> float:
    p, y = _check(predictions, labels)
    return float(np.mean(p == y))


def f1(predictions, labels) -> float:
    """Binary F1 of the positive class 1: 2 TP / (2 TP + FP + FN)."""
    p, y = _check(predictions, labels)
    tp = np.sum((p == 1) & (y == 1))
    wrong = np.sum(p != y)  # FP + FN
    return float(2 * tp / (2 * tp + wrong)) if tp + wrong > 0 else 0.0


def matthews_corrcoef(predictions, labels) -> float:
    """Matthews correlation, multiclass form (Gorodkin 2004), equal to the usual one for 2 classes."""
    p, y = _check(predictions, labels)
    classes, codes = np.unique(np.concatenate([y, p]), return_inverse=True)
    confusion = np.zeros((len(classes), len(classes)))
    np.add.at(confusion, (codes[:len(y)], codes[len(y):]), 1)
    n, correct = confusion.sum(), np.trace(confusion)
    true_counts, pred_counts = confusion.sum(1), confusion.sum(0)
    cov_yp = correct * n - true_counts @ pred_counts
    cov_yy = n * n - true_counts @ true_counts
    cov_pp = n * n - pred_counts @ pred_counts
    return float(cov_yp / np.sqrt(cov_yy * cov_pp)) if cov_yy * cov_pp > 0 else 0.0


def pearson(predictions, labels) -> float:
    p, y = (a.astype(np.float64) for a in _check(predictions, labels))
    p, y = p - p.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(p * p) * np.sum(y * y))
    return float(np.sum(p * y) / denominator) if denominator != 0 else 0.0


def spearman(predictions, labels) -> float:
    """Pearson correlation of the ranks; tied values share their average rank."""
    p, y = _check(predictions, labels)
    if np.isnan(p).any() or np.isnan(y).any():  # ranks would hide the nan
        return float("nan")
    return pearson(_average_ranks(p), _average_ranks(y))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of x, ties replaced by the mean of the ranks they span (scipy's 'average')."""
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts_run = np.concatenate([[True], sorted_x[1:] != sorted_x[:-1]])
    run_start = np.flatnonzero(starts_run)
    run_end = np.append(run_start[1:], len(x))  # exclusive
    run_rank = (run_start + run_end + 1) / 2     # mean of ranks run_start+1 .. run_end
    ranks = np.empty(len(x))
    ranks[order] = run_rank[np.cumsum(starts_run) - 1]
    return ranks


METRICS = {"accuracy": accuracy, "f1": f1, "mcc": matthews_corrcoef, "pearson": pearson, "spearman": spearman}


def task_metrics(task: Task, predictions, labels) -> dict[str, float]:
    """task.metrics on (predictions, labels), plus the GLUE averages where they apply.

    predictions: class indices [N] (classification) or scores [N] (STS-B).
    Adds 'acc_and_f1' = (accuracy + f1) / 2 for MRPC/QQP and 'corr' =
    (pearson + spearman) / 2 for STS-B, as the GLUE leaderboard averages them.
    """
    out = {name: METRICS[name](predictions, labels) for name in task.metrics}
    if "accuracy" in out and "f1" in out:
        out["acc_and_f1"] = (out["accuracy"] + out["f1"]) / 2
    if "pearson" in out and "spearman" in out:
        out["corr"] = (out["pearson"] + out["spearman"]) / 2
    return out


def chance_score(task: Task, train_labels, dev_labels) -> float:
    """The main metric on dev of always answering train's most common class (regression: its mean
    score): the score a student that learned nothing of the input reaches."""
    train_labels = np.asarray(train_labels)
    answer = train_labels.mean() if task.is_regression else np.bincount(train_labels.astype(np.int64)).argmax()
    return task_metrics(task, np.full(len(dev_labels), answer), dev_labels)[task.main_metric]
