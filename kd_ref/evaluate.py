"""Predictions and scores of a model on a list of batches (dropout off).

Under torchrun each rank holds a shard of every batch; logits and loss sums are
summed over ranks (kd_ref.plumbing.distributed), so every rank returns global values."""
import numpy as np
import torch

from kd_ref import losses
from kd_ref.data.glue import Task
from kd_ref.data.metrics import task_metrics
from kd_ref.plumbing import distributed


@torch.no_grad()
def predict_logits(model, batches, n_rows: int) -> np.ndarray:
    """Logits in the split's row order; filler rows of fixed-size batches are skipped."""
    was_training = model.training
    model.eval()
    out = None
    for b in batches:
        logits = model(b.input_ids, b.attention_mask, b.token_type_ids).logits.float()
        if out is None:
            out = torch.zeros(n_rows, logits.shape[-1], device=logits.device)
        out[b.index[b.valid]] = logits[b.valid]
    model.train(was_training)
    return distributed.sum_(out).cpu().numpy()  # each row is valid on exactly one rank


def predictions(task: Task, logits: np.ndarray) -> np.ndarray:
    return logits[:, 0] if task.labels is None else logits.argmax(-1)


def evaluate(model, task: Task, batches, labels: np.ndarray) -> tuple[dict, np.ndarray]:
    """(metrics dict, predictions) on a labelled split."""
    preds = predictions(task, predict_logits(model, batches, len(labels)))
    return task_metrics(task, preds, labels), preds


@torch.no_grad()
def gold_loss(model, batches) -> float:
    """FinK (cross-entropy, or MSE for regression) averaged over every valid example:
    the quantity whose decrease is the KSM reward (method.md "Reward")."""
    was_training = model.training
    model.eval()
    total = None  # (loss sum, example count), summed in float64 over batches and ranks
    for b in batches:
        logits = model(b.input_ids, b.attention_mask, b.token_type_ids).logits
        n = b.valid.sum()
        part = torch.stack([losses.fink(logits, b.labels, b.valid).double() * n, n.double()])
        total = part if total is None else total + part
    model.train(was_training)
    total = distributed.sum_(total)
    return float(total[0] / total[1])


def evaluate_with_loss(model, task: Task, batches, labels: np.ndarray, per_row: bool = False) -> dict:
    """The metrics of a labelled split and its gold loss ('loss'): the held-out rows' record, and a
    search's proxy run's score (halving, knockout, knockout-gate, episode-ac). per_row adds 'row_losses',
    each row's gold loss in the split's order (float64 numpy), for a test paired row by row (knockout-gate)."""
    logits = predict_logits(model, batches, len(labels))
    # 'loss' stays gold_loss's float64 sum over batches (not the rows' mean, equal to float rounding): the
    # value every logged run and every search's ranking was made with
    out = {**task_metrics(task, predictions(task, logits), labels), "loss": gold_loss(model, batches)}
    if per_row:
        out["row_losses"] = losses.fink_per_example(torch.from_numpy(logits), torch.as_tensor(labels)).double().numpy()
    return out
