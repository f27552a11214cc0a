"""kd_ref.losses against values computed by hand with explicit loops.

The tiny batch has 3 rows: row 0 with two padding tokens, row 1 full, row 2 a
filler row (valid False) whose values are large garbage that must not matter.
"""
import math

import numpy as np
import pytest
import torch

from kd_ref import losses
from kd_ref.plumbing.errors import KdError

B, L, D, C = 3, 4, 3, 3
ATTENTION = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]])
VALID = torch.tensor([True, True, False])
MASK = ATTENTION * VALID[:, None]


def rand(*shape, scale=1.0):
    x = torch.randn(*shape) * scale
    x[2] *= 50  # filler row: garbage of another scale
    return x


def real_tokens(b):
    return [pos for pos in range(L) if MASK[b, pos]]


def valid_rows():
    return [b for b in range(B) if VALID[b]]


# ---- values by hand ---------------------------------------------------------

def test_fink_classification_by_hand():
    logits, labels = rand(B, C), torch.tensor([2, 0, -100])
    expected = np.mean([-(logits[b, labels[b]] - math.log(sum(math.exp(z) for z in logits[b].tolist()))).item()
                        for b in valid_rows()])
    assert losses.fink(logits, labels, VALID).item() == pytest.approx(expected, rel=1e-5)


def test_fink_regression_by_hand():
    pred, gold = rand(B, 1), torch.tensor([0.5, 4.0, float("nan")])
    expected = np.mean([(pred[b, 0] - gold[b]).item() ** 2 for b in valid_rows()])
    assert losses.fink(pred, gold, VALID).item() == pytest.approx(expected, rel=1e-5)


def test_resk_by_hand():
    z_s, z_t, temp = rand(B, C), rand(B, C), 2.0
    per_example = []
    for b in valid_rows():
        p_s = np.exp(z_s[b].numpy() / temp) / np.exp(z_s[b].numpy() / temp).sum()
        p_t = np.exp(z_t[b].numpy() / temp) / np.exp(z_t[b].numpy() / temp).sum()
        per_example.append(sum(p_t[c] * math.log(p_t[c] / p_s[c]) for c in range(C)))
    expected = temp ** 2 * np.mean(per_example)
    assert losses.resk(z_s, z_t, VALID, temperature=temp).item() == pytest.approx(expected, rel=1e-5)


def test_resk_regression_by_hand():
    y_s, y_t = rand(B, 1), rand(B, 1)
    expected = np.mean([(y_s[b, 0] - y_t[b, 0]).item() ** 2 for b in valid_rows()])
    assert losses.resk(y_s, y_t, VALID, temperature=3.0).item() == pytest.approx(expected, rel=1e-5)


def test_feak_by_hand():
    hs, ht = [rand(B, L, D), rand(B, L, D)], [rand(B, L, D), rand(B, L, D)]
    per_layer = []
    for s, t in zip(hs, ht):
        total, count = 0.0, 0
        for b in range(B):
            for pos in real_tokens(b):
                total += sum((s[b, pos, d] - t[b, pos, d]).item() ** 2 for d in range(D))
                count += 1
        per_layer.append(total / (count * D))
    assert losses.feak(hs, ht, MASK).item() == pytest.approx(np.mean(per_layer), rel=1e-5)


def test_feak_cls_by_hand():
    hs, ht = [rand(B, D), rand(B, D)], [rand(B, D), rand(B, D)]
    per_layer = []
    for s, t in zip(hs, ht):
        per_example = []
        for b in valid_rows():
            u, v = s[b].numpy() / np.linalg.norm(s[b].numpy()), t[b].numpy() / np.linalg.norm(t[b].numpy())
            per_example.append(np.mean((u - v) ** 2))
        per_layer.append(np.mean(per_example))
    assert losses.feak_cls(hs, ht, VALID).item() == pytest.approx(np.mean(per_layer), rel=1e-5)


def fsp_by_hand(a, b_, row):
    tokens = real_tokens(row)
    return np.array([[sum(a[row, pos, i].item() * b_[row, pos, j].item() for pos in tokens) / len(tokens)
                      for j in range(b_.shape[-1])] for i in range(a.shape[-1])])


def test_fsp_by_hand():
    a, b_ = rand(B, L, D), rand(B, L, D + 1)
    g = losses.fsp(a, b_, MASK)
    assert g.shape == (B, D, D + 1)
    for row in valid_rows():
        np.testing.assert_allclose(g[row].numpy(), fsp_by_hand(a, b_, row), rtol=1e-5, atol=1e-6)
    assert torch.equal(g[2], torch.zeros(D, D + 1))  # no real tokens: G = 0


def test_relk_by_hand():
    hs, ht = [rand(B, L, D) for _ in range(3)], [rand(B, L, D) for _ in range(3)]
    per_pair = []
    for i in (1, 2):
        per_example = [np.mean((fsp_by_hand(hs[i - 1], hs[i], row) - fsp_by_hand(ht[i - 1], ht[i], row)) ** 2)
                       for row in valid_rows()]
        per_pair.append(np.mean(per_example))
    assert losses.relk(hs, ht, MASK).item() == pytest.approx(np.mean(per_pair), rel=1e-5)


def test_fsp_gram_identity():
    """||A^T B||_F^2 = sum((A A^T) * (B B^T)): the fused RelK path relies on it (method.md note)."""
    a, b_ = rand(B, L, D), rand(B, L, D + 2)
    n = MASK.sum(1).clamp(min=1).float()
    m = MASK.float()[..., None]
    a_m, b_m = a * m, b_ * m
    frobenius = (losses.fsp(a, b_, MASK) ** 2).sum(dim=(1, 2))
    via_gram = ((a_m @ a_m.transpose(1, 2)) * (b_m @ b_m.transpose(1, 2))).sum(dim=(1, 2)) / n ** 2
    torch.testing.assert_close(frobenius, via_gram, rtol=1e-4, atol=1e-4)


def test_attk_by_hand_ignores_masked_inf():
    heads = 2
    s, t = rand(B, heads, L, L), rand(B, heads, L, L)
    key_pad = ~ATTENTION.bool()[:, None, None, :]
    t = t.masked_fill(key_pad, float("-inf"))  # how BERT masks padding keys
    s = s.masked_fill(key_pad, float("-inf")).requires_grad_()
    total, count = 0.0, 0
    for b in range(B):
        for h in range(heads):
            for q in real_tokens(b):
                for k in real_tokens(b):
                    total += (s[b, h, q, k] - t[b, h, q, k]).item() ** 2
                    count += 1
    loss = losses.attk([s], [t], MASK)
    assert loss.item() == pytest.approx(total / count, rel=1e-5)
    loss.backward()
    assert torch.isfinite(s.grad).all()


# ---- errors -------------------------------------------------------------------

def test_attk_heads_must_match():
    with pytest.raises(KdError, match=r"\[3, 2, 4, 4\].*\[3, 4, 4, 4\]"):
        losses.attk([torch.zeros(B, 2, L, L)], [torch.zeros(B, 4, L, L)], MASK)


def test_layer_count_must_match():
    with pytest.raises(KdError, match="2 student layers but 1 teacher"):
        losses.feak([rand(B, L, D)] * 2, [rand(B, L, D)], MASK)


# ---- masking, gradients, precision --------------------------------------------

def every_loss(student, teacher, proj):
    """Each loss on tensors where `student` [B, L, Ds] reaches the loss through `proj`."""
    hs = [proj(student)]
    logits_s = hs[0][:, 0, :C]
    return {
        "fink": losses.fink(logits_s, torch.tensor([1, 2, 0]), VALID),
        "fink_regression": losses.fink(logits_s[:, :1], torch.tensor([0.1, 0.2, 9.0]), VALID),
        "resk": losses.resk(logits_s, teacher[:, 0, :C], VALID, temperature=2.0),
        "feak": losses.feak(hs, [teacher], MASK),
        "feak_cls": losses.feak_cls([h[:, 0] for h in hs], [teacher[:, 0]], VALID),
        "relk": losses.relk([proj(student * 0.5)] + hs, [teacher * 0.5, teacher], MASK),
        "attk": losses.attk([(hs[0] @ hs[0].transpose(1, 2))[:, None]],
                            [(teacher @ teacher.transpose(1, 2))[:, None]], MASK),
    }


@pytest.fixture
def projected():
    student = rand(B, L, 2).requires_grad_()
    teacher = rand(B, L, D).requires_grad_()  # would collect gradient if a loss failed to detach it
    proj = torch.nn.Linear(2, D)
    return student, teacher, proj


@pytest.mark.parametrize("name", ["fink", "fink_regression", "resk", "feak", "feak_cls", "relk", "attk"])
def test_gradient_reaches_student_and_projection_only(projected, name):
    student, teacher, proj = projected
    every_loss(student, teacher, proj)[name].backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0
    assert student.grad is not None and student.grad[:2].abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize("name", ["fink", "fink_regression", "resk", "feak", "feak_cls", "relk", "attk"])
def test_filler_row_gets_exactly_zero_gradient(projected, name):
    student, teacher, proj = projected
    every_loss(student, teacher, proj)[name].backward()
    assert torch.equal(student.grad[2], torch.zeros_like(student.grad[2]))
    if name in ("feak", "relk", "attk"):  # token losses: padding tokens too
        assert torch.equal(student.grad[0, 2:], torch.zeros_like(student.grad[0, 2:]))


@pytest.mark.parametrize("name", ["fink", "fink_regression", "resk", "feak", "feak_cls", "relk", "attk"])
def test_filler_rows_leave_values_unchanged(projected, name):
    student, teacher, proj = projected
    with_filler = every_loss(student, teacher, proj)[name]
    with torch.no_grad():
        student[2].normal_(0, 100)
        teacher[2].normal_(0, 100)
    other_filler = every_loss(student, teacher, proj)[name]
    assert with_filler.item() == pytest.approx(other_filler.item(), rel=1e-6)


def test_nothing_valid_gives_zero_not_nan():
    none = torch.zeros(B, dtype=torch.bool)
    assert losses.fink(rand(B, C), torch.tensor([0, 1, 2]), none).item() == 0.0
    assert losses.relk([rand(B, L, D)] * 2, [rand(B, L, D)] * 2, torch.zeros(B, L)).item() == 0.0


@pytest.mark.parametrize("name", ["fink", "fink_regression", "resk", "feak", "feak_cls", "relk", "attk"])
def test_bf16_inputs_give_fp32_results(projected, name):
    student, teacher, proj = projected
    full = every_loss(student, teacher, proj)[name]
    half = every_loss(student.bfloat16(), teacher.bfloat16(), proj.bfloat16())[name]
    assert full.dtype == half.dtype == torch.float32
    assert half.item() == pytest.approx(full.item(), rel=0.05, abs=1e-3)
