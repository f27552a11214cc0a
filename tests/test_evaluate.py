"""kd_ref.evaluate: the gold loss of a split, whole and row by row (what knockout-gate's paired test reads)."""
import numpy as np
import pytest
import torch

from kd_ref.bert import Bert, BertConfig
from kd_ref.data.batching import make_batches
from kd_ref.data.glue import TASKS
from kd_ref.evaluate import evaluate, evaluate_with_loss, gold_loss


@pytest.mark.parametrize("task, labels", [("rte", [0, 1, 1, 0, 1, 0, 0, 1, 1]),
                                          ("stsb", [0.5, 4.0, 2.5, 3.0, 1.0, 5.0, 0.0, 2.0, 3.5])])
def test_row_losses_are_each_rows_gold_loss_in_the_splits_order(task, labels):
    torch.manual_seed(0)
    model = Bert(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_labels=1 if task == "stsb" else 2))
    rng = torch.Generator().manual_seed(1)
    encoded = [(torch.randint(1, 100, (k,), generator=rng).tolist(), [0] * k) for k in (5, 9, 3, 7, 12, 4, 6, 8, 2)]
    # batches of 4 bucketed by length: rows leave the split's order, and the last batch has filler rows
    batches = make_batches(encoded, labels, 4, 16, shuffle=False)
    labels = np.array(labels, dtype=np.float32 if task == "stsb" else np.int64)
    out = evaluate_with_loss(model, TASKS[task], batches, labels, per_row=True)
    assert out["loss"] == gold_loss(model, batches) and {**out, "row_losses": 0} == {
        **evaluate(model, TASKS[task], batches, labels)[0], "loss": out["loss"], "row_losses": 0}
    model.eval()
    with torch.no_grad():  # each row alone: its own loss, whatever batch it shared
        for i, (ids, types) in enumerate(encoded):
            logits = model(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), torch.tensor([types])).logits[0]
            alone = (logits[0] - labels[i]) ** 2 if task == "stsb" else torch.logsumexp(logits, 0) - logits[labels[i]]
            assert out["row_losses"][i] == pytest.approx(float(alone), rel=1e-4, abs=1e-6)
    assert out["row_losses"].mean() == pytest.approx(out["loss"], rel=1e-5)
    assert "row_losses" not in evaluate_with_loss(model, TASKS[task], batches, labels)
