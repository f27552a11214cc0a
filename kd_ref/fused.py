"""The fast path of the knowledge losses: every loss and their weighted sum in one function,
written so that torch.compile turns it into one graph (forward and backward).

kd_ref/losses.py stays the readable spec; this file reuses its functions wherever the
fast form is the same computation (FinK, ResK, FeaK, AttK; inductor fuses their masked
fp32 reductions into single kernels that read the bf16 or fp32 inputs once). Only
RelK takes a different form, relk_fast below. tests/test_fused.py checks values and
gradients against the spec.

Why the signature looks the way it does:
- weights [4] and temperature are tensors, not Python floats: a new action from the
  selector (or a new loss-norm scale) changes their values, never the graph, so it
  never triggers a recompile. The caller passes weights = action / loss-norm scale.
- Every loss is computed at every step, zero-weighted ones included, for the same
  reason: skipping one would be a branch on a tensor value. Together they cost a
  few per cent of a step (see speed/BENCHMARKS.md). A non-finite zero-weighted loss
  therefore makes the total non-finite, where the eager loop would skip it.
- Masks and means follow losses.py: `valid` marks real rows, attention_mask real
  tokens, every mean runs over real rows or tokens only, and `counts` (losses.counts,
  summed over ranks) gives each mean its global denominator under torchrun.
"""
import torch
from torch import Tensor

from kd_ref import losses
from kd_ref.losses import _valid_mean
from kd_ref.plumbing.errors import KdError

FEAK_MODES = ("tokens", "cls")


def gram_is_cheaper(length: int, width: int, pairs: int) -> bool:
    """Whether RelK's n x n Gram form costs fewer FLOPs than its d x d form (forward + backward).

    Gram: 3 Grams of [L, L] per state (M + 1 states), 2 L^2 D FLOPs each forward
    and 4 L^2 D backward: 18 L^2 D (M + 1). d x d: 2 products of [D, D] per pair
    (M pairs), 2 L D^2 forward and 4 L D^2 backward each: 12 L D^2 M. The
    crossover is L = 2/3 D M / (M + 1): 438.9 tokens for D = 768, M = 6 (bert-base
    to 6 layers) and 192 for D = 384, M = 3; so at --max-len 128 it is always Gram.
    """
    return 18 * length * (pairs + 1) <= 12 * width * pairs


def relk_fast(hs: list[Tensor], ht: list[Tensor], mask: Tensor, count: Tensor | None = None) -> Tensor:
    """RelK (method.md item 4), the same value as losses.relk, computed without FSP matrices where cheaper.

    With sigma = h_S + h_T and delta = h_S - h_T (padding rows zeroed), for each
    pair a = h^(i-1), b = h^(i):
        A_S^T B_S - A_T^T B_T = (sigma_a^T delta_b + delta_a^T sigma_b) / 2,
    so the FSP difference is formed from the small deltas directly and never as a
    difference of two large matrices: no cancellation when the student is close to
    the teacher, which keeps bf16 / TF32 matmuls accurate relative to the loss.
    Its squared norm either comes from that d x d matrix, or from n x n Grams
    (method.md's note, ||X^T Y||^2 = sum((X X^T) * (Y Y^T))):
        ||sigma_a^T delta_b + delta_a^T sigma_b||^2
            = sum(S_a * D_b + D_a * S_b + 2 C_a * C_b^T),
    S = sigma sigma^T, D = delta delta^T, C = sigma delta^T, each [B, L, L] and
    computed once per state. gram_is_cheaper picks the form.
    Matmuls run in the autocast dtype (bf16 on GPU) and their outputs are upcast
    before the fp32 reductions. count: as in losses.relk, the number of valid rows.
    """
    losses._check_layers("relk", hs, ht)
    if len(hs) < 2:
        raise KdError(f"fused.py relk: needs the embeddings plus at least one layer, got {len(hs)} states")
    m = mask.float()[..., None]  # [B, L, 1]
    n = m.sum(dim=(1, 2)).clamp(min=1)  # real tokens per example [B]
    sigma = [(s.float() + t.detach().float()) * m for s, t in zip(hs, ht)]
    delta = [(s.float() - t.detach().float()) * m for s, t in zip(hs, ht)]
    _, length, width = hs[0].shape
    pairs = len(hs) - 1
    if gram_is_cheaper(length, width, pairs):
        def gram(x, y):
            return (x @ y.transpose(1, 2)).float()
        S = [gram(x, x) for x in sigma]
        D = [gram(x, x) for x in delta]
        C = [gram(x, y) for x, y in zip(sigma, delta)]
        sq_norm = [(S[i - 1] * D[i] + D[i - 1] * S[i] + 2 * C[i - 1] * C[i].transpose(1, 2)).sum(dim=(1, 2))
                   for i in range(1, pairs + 1)]
    else:
        sq_norm = [((sigma[i - 1].transpose(1, 2) @ delta[i] + delta[i - 1].transpose(1, 2) @ sigma[i])
                    .float() ** 2).sum(dim=(1, 2)) for i in range(1, pairs + 1)]
    valid = mask.bool().any(-1)
    scale = 4 * n ** 2 * width ** 2  # (2n)^2 from the 1/2 above and G = A^T B / n; D^2 entries per MSE
    return torch.stack([_valid_mean(s / scale, valid, count) for s in sq_norm]).mean()


def fused_kd_loss(logits_s: Tensor, logits_t: Tensor, labels: Tensor, valid: Tensor, attention_mask: Tensor,
                  hs: list[Tensor], ht: list[Tensor], weights: Tensor, temperature: Tensor, *,
                  feak_mode: str, regression: bool, scores_s=(), scores_t=(),
                  attk_weight: Tensor | None = None, ht_relk: list[Tensor] | None = None,
                  counts: Tensor | None = None, gold: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Every knowledge loss and L = sum_k weights[k] * loss_k (+ attk_weight * AttK), one graph.

    logits_s, logits_t [B, C] (C = 1: regression); labels [B]; valid [B] bool;
    attention_mask [B, L]; hs = student states 0..M, already projected to the
    teacher's width, and ht = teacher states g(0..M), each [B, L, D]; weights [4]
    for (FinK, ResK, FeaK, RelK); temperature a 0-d tensor (ResK). AttK is computed
    when attk_weight (0-d tensor) is given, from the pre-softmax scores of the
    mapped layers, scores_s / scores_t, M tensors [B, heads, L, L] each.
    ht_relk: RelK's teacher states when they are not ht (only run.py --corrupt feak or relk).
    counts: the denominators of the means, losses.counts of the global batch (default: this batch's).
    gold [B] bool: the rows whose gold label FinK trains on (default: every valid row); the others
    (run.py --augment's rows) add 0 to FinK's sum and still count in its mean, so a row weighs the
    same in every batch, whatever the share of augmented rows beside it.
    Returns (total, raw): total the fp32 scalar to backpropagate, raw the detached
    losses [4] or [5] in the order fink, resk, feak, relk(, attk).
    """
    if feak_mode not in FEAK_MODES:
        raise KdError(f"fused.py: feak_mode {feak_mode!r} is not one of {', '.join(FEAK_MODES)}")
    if regression != (logits_s.shape[-1] == 1):
        raise KdError(f"fused.py: regression={regression} but the student logits have shape {list(logits_s.shape)}")
    if weights.shape != (4,):
        raise KdError(f"fused.py: weights must have shape [4] (fink, resk, feak, relk), got {list(weights.shape)}")
    mask = attention_mask * valid[:, None]
    rows, tokens, pairs = losses.counts(valid, attention_mask) if counts is None else counts
    if feak_mode == "cls":
        feak = losses.feak_cls([h[:, 0] for h in hs[1:]], [h[:, 0] for h in ht[1:]], valid, rows)
    else:
        feak = losses.feak(hs[1:], ht[1:], mask, tokens)
    raw = [losses.fink(logits_s, labels, valid if gold is None else valid & gold, rows), losses.resk(logits_s, logits_t, valid, temperature, rows),
           feak, relk_fast(hs, ht if ht_relk is None else ht_relk, mask, rows)]
    total = (weights.float() * torch.stack(raw)).sum()
    if attk_weight is not None:
        if not scores_s:
            raise KdError("fused.py: attk_weight is given but scores_s is empty; ask the student for attention_layers")
        raw.append(losses.attk(list(scores_s), list(scores_t), mask, pairs))
        total = total + attk_weight * raw[-1]
    return total, torch.stack(raw).detach()


def make_fused_loss(compile: bool, backend: str = "inductor", mode: str | None = None):
    """fused_kd_loss, compiled or eager. dynamic=False: batching.py gives a few fixed
    shapes (one per length bucket), and a graph specialised to each is faster than
    one symbolic graph. backend and mode: see kd_ref.plumbing.compiled.compile_model."""
    return torch.compile(fused_kd_loss, dynamic=False, backend=backend, mode=mode) if compile else fused_kd_loss
