"""kd_ref.fused against the spec, kd_ref.losses: values and gradients, eager and compiled (CPU inductor, fp32).

The batch has 3 rows: row 0 with padding, row 1 full, row 2 a filler row
(valid False) of large garbage that must change nothing and get zero gradient.
"""
import pytest
import torch
from torch._dynamo.utils import counters

from kd_ref import fused, losses
from kd_ref.plumbing.errors import KdError

B, L, D, C, HEADS, M = 3, 8, 32, 3, 2, 2
ATTENTION = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [1] * L, [1, 1, 1, 0, 0, 0, 0, 0]])
VALID = torch.tensor([True, True, False])
MASK = ATTENTION * VALID[:, None]


def rand(*shape, grad=False):
    x = torch.randn(*shape)
    x[2] *= 50  # filler row
    return x.requires_grad_(grad)


def make_inputs(regression=False, width=D):
    classes = 1 if regression else C
    labels = torch.tensor([0.5, 2.0, float("nan")]) if regression else torch.tensor([2, 0, -100])
    return dict(logits_s=rand(B, classes, grad=True), logits_t=rand(B, classes), labels=labels,
                hs=[rand(B, L, width, grad=True) for _ in range(M + 1)], ht=[rand(B, L, width) for _ in range(M + 1)],
                scores_s=[rand(B, HEADS, L, L, grad=True) for _ in range(M)],
                scores_t=[rand(B, HEADS, L, L) for _ in range(M)])


def spec_loss(x, weights, temperature, feak_mode, attk_weight):
    """The weighted sum as distill.knowledge_losses builds it from kd_ref.losses."""
    if feak_mode == "cls":
        feak = losses.feak_cls([h[:, 0] for h in x["hs"][1:]], [h[:, 0] for h in x["ht"][1:]], VALID)
    else:
        feak = losses.feak(x["hs"][1:], x["ht"][1:], MASK)
    raw = [losses.fink(x["logits_s"], x["labels"], VALID),
           losses.resk(x["logits_s"], x["logits_t"], VALID, temperature), feak, losses.relk(x["hs"], x["ht"], MASK)]
    total = sum(w * r for w, r in zip(weights, raw))
    if attk_weight is not None:
        raw.append(losses.attk(x["scores_s"], x["scores_t"], MASK))
        total = total + attk_weight * raw[-1]
    return total, torch.stack(raw)


def call_fused(fn, x, weights, temperature, feak_mode, attk_weight):
    return fn(x["logits_s"], x["logits_t"], x["labels"], VALID, ATTENTION, x["hs"], x["ht"], torch.tensor(weights),
              torch.tensor(temperature), feak_mode=feak_mode, regression=x["logits_s"].shape[-1] == 1,
              scores_s=x["scores_s"], scores_t=x["scores_t"],
              attk_weight=None if attk_weight is None else torch.tensor(attk_weight))


def grads(total, x):
    leaves = [x["logits_s"], *x["hs"], *x["scores_s"]]
    return torch.autograd.grad(total, leaves, allow_unused=True)


def assert_rel(actual, expected, tol=1e-5):
    """Relative error in norm: elementwise rtol is meaningless for entries near 0."""
    err = (actual.double() - expected.double()).norm() / expected.double().norm().clamp(min=1e-30)
    assert err <= tol, f"relative error {err:.3g} > {tol}"


def check_against_spec(fn, x, weights, temperature, feak_mode, attk_weight):
    total, raw = call_fused(fn, x, weights, temperature, feak_mode, attk_weight)
    ref_total, ref_raw = spec_loss(x, weights, temperature, feak_mode, attk_weight)
    assert total.dtype == torch.float32 and not raw.requires_grad
    assert_rel(total, ref_total)
    assert_rel(raw, ref_raw.detach())
    for g, ref_g in zip(grads(total, x), grads(ref_total, x)):
        if ref_g is None:  # scores without AttK
            assert g is None
            continue
        assert_rel(g, ref_g)
        assert g[2].abs().max() == 0  # the filler row learns nothing


@pytest.mark.parametrize("width", [4, D])  # 4 wide: the d x d form; 32 wide: the Gram form
def test_relk_fast_matches_spec(width):
    x = make_inputs(width=width)
    assert fused.gram_is_cheaper(L, width, M) == (width == D)
    value, ref = fused.relk_fast(x["hs"], x["ht"], MASK), losses.relk(x["hs"], x["ht"], MASK)
    assert_rel(value, ref)
    for g, ref_g in zip(torch.autograd.grad(value, x["hs"]), torch.autograd.grad(ref, x["hs"])):
        assert_rel(g, ref_g)


def fsp_loss_fp64(hs, ht, mask):
    """RelK in float64 straight from method.md: the reference for precision."""
    m = mask.double()[..., None]
    n = m.sum(dim=(1, 2))[:, None, None]

    def g(a, b):
        return (a.double() * m).transpose(1, 2) @ (b.double() * m) / n
    rows = mask.bool().any(-1)
    return torch.stack([((g(hs[i - 1], hs[i]) - g(ht[i - 1], ht[i])) ** 2).mean(dim=(1, 2))[rows].mean()
                        for i in range(1, len(hs))]).mean()


def test_relk_fast_stays_accurate_when_student_is_close():
    """Student = teacher + 1e-3 noise: the FSP difference is tiny next to the FSP matrices, where a
    difference of two bf16 matrices loses every digit; relk_fast must stay within 1% in bf16."""
    ht = [torch.randn(4, 32, 64) for _ in range(M + 1)]
    hs = [t + 1e-3 * torch.randn_like(t) for t in ht]
    mask = torch.ones(4, 32, dtype=torch.long)
    mask[0, 20:] = 0
    ref = fsp_loss_fp64(hs, ht, mask)
    assert_rel(fused.relk_fast(hs, ht, mask), ref, tol=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert_rel(fused.relk_fast(hs, ht, mask), ref, tol=1e-2)


def test_gram_crossover():
    """The documented crossovers: Gram up to 438 tokens for bert-base to 6 layers, 192 for 384 wide to 3."""
    assert fused.gram_is_cheaper(438, 768, 6) and not fused.gram_is_cheaper(439, 768, 6)
    assert fused.gram_is_cheaper(192, 384, 3) and not fused.gram_is_cheaper(193, 384, 3)


def test_eager_regression_cls_matches_spec():
    check_against_spec(fused.make_fused_loss(compile=False), make_inputs(regression=True),
                       [0.3, 1.0, 20.0, 0.5], 2.0, "cls", None)


def test_compiled_matches_spec_and_new_weights_do_not_recompile():
    fn = fused.make_fused_loss(compile=True)
    x = make_inputs()
    check_against_spec(fn, x, [1.0, 0.5, 0.2, 0.3], 2.0, "tokens", 0.7)
    graphs = counters["stats"]["unique_graphs"]
    check_against_spec(fn, x, [0.0, 1.0, 0.9, 0.0], 1.0, "tokens", 0.1)  # a new action, a new temperature
    assert counters["stats"]["unique_graphs"] == graphs


def test_bad_arguments():
    x = make_inputs()
    fn = fused.make_fused_loss(compile=False)
    with pytest.raises(KdError, match="feak_mode"):
        call_fused(fn, x, [1.0] * 4, 1.0, "pooled", None)
    with pytest.raises(KdError, match="weights"):
        call_fused(fn, x, [1.0] * 5, 1.0, "tokens", None)
    with pytest.raises(KdError, match="regression"):
        fn(x["logits_s"], x["logits_t"], x["labels"], VALID, ATTENTION, x["hs"], x["ht"], torch.ones(4),
           torch.tensor(1.0), feak_mode="tokens", regression=True)
    with pytest.raises(KdError, match="scores_s"):
        fn(x["logits_s"], x["logits_t"], x["labels"], VALID, ATTENTION, x["hs"], x["ht"], torch.ones(4),
           torch.tensor(1.0), feak_mode="tokens", regression=False, attk_weight=torch.tensor(1.0))


@pytest.mark.parametrize("feak_mode", fused.FEAK_MODES)
def test_shares_of_the_global_batch_add_up_to_one_process(feak_mode):
    """Under torchrun each rank holds a slice of the global batch's rows and divides by the global
    counts (losses.counts summed over ranks): the slices' losses and gradients must add up to the
    one-process values. Here the slices are as unequal as batching makes them: rank 0 holds 2 valid
    rows of 7 and 3 tokens, rank 1 one valid row of 8 tokens and a filler row."""
    attention = torch.tensor([[1] * 7 + [0], [1, 1, 1, 0, 0, 0, 0, 0], [1] * L, [1, 1, 0, 0, 0, 0, 0, 0]])
    valid = torch.tensor([True, True, True, False])
    x = {"logits_s": torch.randn(4, C, requires_grad=True), "logits_t": torch.randn(4, C),
         "labels": torch.tensor([2, 0, 1, -100]),
         "hs": [torch.randn(4, L, D, requires_grad=True) for _ in range(M + 1)],
         "ht": [torch.randn(4, L, D) for _ in range(M + 1)],
         "scores_s": [torch.randn(4, HEADS, L, L, requires_grad=True) for _ in range(M)],
         "scores_t": [torch.randn(4, HEADS, L, L) for _ in range(M)]}
    leaves = [x["logits_s"], *x["hs"], *x["scores_s"]]

    def loss(rows, counts=None):
        part = {k: [t[rows] for t in v] if isinstance(v, list) else v[rows] for k, v in x.items()}
        return fused.fused_kd_loss(part["logits_s"], part["logits_t"], part["labels"], valid[rows], attention[rows],
                                   part["hs"], part["ht"], torch.tensor([1.0, 0.5, 0.2, 0.3]), torch.tensor(2.0),
                                   feak_mode=feak_mode, regression=False, scores_s=part["scores_s"],
                                   scores_t=part["scores_t"], attk_weight=torch.tensor(0.7), counts=counts)
    whole, whole_raw = loss(slice(0, 4))
    ranks = [slice(0, 2), slice(2, 4)]
    counts = sum(losses.counts(valid[r], attention[r]) for r in ranks)  # what distributed.sum_ gives every rank
    shares = [loss(r, counts) for r in ranks]
    assert_rel(sum(raw for _, raw in shares), whole_raw)
    for g, ref_g in zip(torch.autograd.grad(sum(total for total, _ in shares), leaves),
                        torch.autograd.grad(whole, leaves)):
        assert_rel(g, ref_g)
