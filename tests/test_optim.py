"""kd_ref.optim, the teacher's and the student's optimiser, against the transformers
fine-tuning recipe it follows (experiments/finetune_vs_hf.py runs that recipe on real data)."""
import pytest
import torch
import transformers

from kd_ref import losses
from kd_ref.optim import make_optimizer
from kd_ref.plumbing.checkpoint import load_bert
from test_bert import CONFIGS, batch, hf_model


def test_training_steps_match_a_transformers_loop(tmp_path):
    """Same weights, batches and loss; AdamW with decay on all but biases and LayerNorm weights,
    gradients clipped to norm 1: after 5 steps every parameter agrees to 1e-4. Why not closer:
    Adam divides by sqrt(v) + 1e-8, so a gradient that is zero in exact arithmetic (the key bias:
    softmax ignores a shift shared by all keys) becomes a float-noise update of up to about lr / 10,
    which differs between our fused QKV and three separate matmuls. Decaying the wrong tensors
    (0.1 at lr 1e-3: 1e-4 per step on a LayerNorm weight near 1) would still show."""
    torch.manual_seed(0)
    hf, ours = hf_model(tmp_path / "start", **CONFIGS["odd"])
    lr, decay, steps = 1e-3, 0.1, 5
    opt, _ = make_optimizer(ours.parameters(), lr, decay, total_steps=steps, warmup=0.0)  # lr constant: no sched.step()
    named = list(hf.named_parameters())
    no_decay = ("bias", "LayerNorm.weight")
    ref = torch.optim.AdamW([{"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": decay},
                             {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0}], lr=lr)
    ours.train()
    hf.train()
    for _ in range(steps):
        ids, mask, types = batch()
        labels = torch.randint(0, 3, (3,))
        losses.fink(ours(ids, mask, types).logits, labels, torch.ones(3, dtype=torch.bool)).backward()
        hf(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss.backward()
        for model, optimizer in ((ours, opt), (hf, ref)):
            assert torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) > 1.0  # clipping is exercised
            optimizer.step()
            optimizer.zero_grad()
    hf.save_pretrained(tmp_path / "end", safe_serialization=True)
    trained_ref = load_bert(tmp_path / "end")[0].state_dict()
    for name, p in ours.state_dict().items():
        assert torch.allclose(p, trained_ref[name], atol=1e-4, rtol=0), name


def test_schedule_is_transformers_linear_warmup_one_step_ahead():
    """Linear warm-up then linear decay to 0, as get_linear_schedule_with_warmup, except that our
    first step already trains (lr / warm-up steps) where transformers' first step has lr 0."""
    total, warmup = 50, 0.2
    warm = int(warmup * total)
    opt, sched = make_optimizer([torch.nn.Parameter(torch.zeros(2, 2))], 1.0, 0.0, total, warmup)
    ref_opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = transformers.get_linear_schedule_with_warmup(ref_opt, warm, total)
    ours_lr, ref_lr = [], []
    for _ in range(total):
        ours_lr.append(opt.param_groups[0]["lr"])
        ref_lr.append(ref_opt.param_groups[0]["lr"])
        for o in (opt, sched, ref_opt, ref):
            o.step()
    assert ours_lr[:warm] == pytest.approx(ref_lr[1:warm + 1])
    assert ours_lr[warm:] == pytest.approx(ref_lr[warm:])
    assert ours_lr[0] == pytest.approx(1 / warm) and max(ours_lr) == 1.0
    assert ours_lr[-1] == pytest.approx(1 / (total - warm))
