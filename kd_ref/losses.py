"""The knowledge losses of method.md "Four kinds of knowledge, one loss each".

Small pure functions over plain tensors, one per kind of knowledge (TextBrewer
style). The training loop has already picked the mapped layers (student layer i
learns from teacher layer g(i)) and applied the learned projections W_i, so every
student tensor here already has the teacher's width.

Conventions shared by every function (KD results are often irreproducible
because papers leave these out):
- `valid` is [B] bool: False marks filler rows that pad a fixed-size batch.
  They contribute nothing and get exactly zero gradient.
- `mask` is [B, L], 1 for the real tokens of valid examples and 0 elsewhere
  (the caller passes attention_mask * valid[:, None]).
- Means run over valid examples or real tokens, never over the padded batch,
  so adding filler rows leaves every value unchanged. With nothing valid the
  loss is 0, not NaN.
- `count`, where a function takes it, is the denominator of that mean: by
  default this batch's own count of valid rows (real tokens, token pairs). Under
  torchrun each rank holds a slice of the global batch and passes the global
  count (`counts` below, summed over ranks): its loss is then its share of the
  global mean, the shares sum to what one process computes on the whole batch,
  and so do their gradients (kd_ref/plumbing/distributed.py sums them).
- Inputs are upcast to fp32 (these losses measure small differences that bf16
  would round away; kd_ref.bert computes the logits in full precision even under
  autocast, so nothing is lost before the upcast) and the result is an fp32 scalar.
- Teacher tensors are detached: the teacher is a fixed target, never trained.
"""
import torch
import torch.nn.functional as F
from torch import Tensor

from kd_ref.plumbing.errors import KdError


def counts(valid: Tensor, attention_mask: Tensor) -> Tensor:
    """[3] long: the batch's valid rows, their real tokens, and their (query, key) pairs of real tokens;
    the `count` of the row means, of feak and of attk. Summed over ranks: the global batch's."""
    tokens = (attention_mask * valid[:, None]).sum(-1)
    return torch.stack([valid.sum(), tokens.sum(), (tokens ** 2).sum()])


def _valid_mean(per_example: Tensor, valid: Tensor, count: Tensor | None = None) -> Tensor:
    """Sum of a [B] tensor over valid rows / count (default: the number of valid rows).
    Multiplying by 0 gives filler rows zero gradient."""
    weight = valid.float()
    return (per_example * weight).sum() / (weight.sum() if count is None else count).clamp(min=1)


def _check_layers(loss: str, students: list, teachers: list) -> None:
    """Student and teacher lists must pair up one to one, with equal shapes."""
    if len(students) != len(teachers):
        raise KdError(f"losses.py {loss}: {len(students)} student layers but {len(teachers)} teacher layers")
    for i, (s, t) in enumerate(zip(students, teachers)):
        if s.shape != t.shape:
            raise KdError(f"losses.py {loss}: student layer {i} has shape {list(s.shape)} "
                          f"but teacher layer {i} has {list(t.shape)}")


def fink_per_example(logits_s: Tensor, labels: Tensor) -> Tensor:
    """FinK of each example, [B]: cross-entropy (logits [B, C], labels [B] int) or, for regression
    (logits [B, 1], labels [B] float), squared error."""
    logits_s = logits_s.float()
    if logits_s.shape[-1] == 1:
        return (logits_s[:, 0] - labels.float()) ** 2
    return F.cross_entropy(logits_s, labels.long(), reduction="none")


def fink(logits_s: Tensor, labels: Tensor, valid: Tensor, count: Tensor | None = None) -> Tensor:
    """FinK, fine-tune knowledge (method.md item 1): the task loss against gold labels, mean over valid
    examples (fink_per_example)."""
    labels = torch.where(valid.bool(), labels, 0)  # filler labels may hold anything: -100, NaN
    return _valid_mean(fink_per_example(logits_s, labels), valid, count)


def resk(logits_s: Tensor, logits_t: Tensor, valid: Tensor, temperature: float = 1.0,
         count: Tensor | None = None) -> Tensor:
    """ResK, response knowledge (method.md item 2): match the teacher's output distribution.

    Classification: logits [B, C] each; T^2 * KL(softmax(z_T/T) || softmax(z_S/T)),
    summed over classes, mean over valid examples. The T^2 keeps gradient sizes
    independent of T (Hinton et al. 2015). Regression: logits [B, 1]; squared
    error of the student's prediction against the teacher's, mean over valid
    examples (no T).
    """
    if logits_s.shape != logits_t.shape:
        raise KdError(f"losses.py resk: logits_s {list(logits_s.shape)} and logits_t {list(logits_t.shape)} differ")
    z_s, z_t = logits_s.float(), logits_t.detach().float()
    if z_s.shape[-1] == 1:
        return _valid_mean((z_s[:, 0] - z_t[:, 0]) ** 2, valid, count)
    log_p_s = F.log_softmax(z_s / temperature, dim=-1)
    log_p_t = F.log_softmax(z_t / temperature, dim=-1)
    per_example = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    return temperature ** 2 * _valid_mean(per_example, valid, count)


def feak(hs: list[Tensor], ht: list[Tensor], mask: Tensor, count: Tensor | None = None) -> Tensor:
    """FeaK, feature knowledge (method.md item 3), token form: our default [ours].

    hs, ht: one [B, L, D] tensor per mapped layer i = 1..M (student projected).
    Per layer: squared error summed over real tokens and D, divided by
    (number of real tokens of the batch * D), so every token weighs the same
    whatever the length of its example; then the mean over layers.
    """
    _check_layers("feak", hs, ht)
    m = mask.float()[..., None]  # [B, L, 1]
    denom = (m.sum() if count is None else count).clamp(min=1) * hs[0].shape[-1]
    per_layer = [(((s.float() - t.detach().float()) * m) ** 2).sum() / denom for s, t in zip(hs, ht)]
    return torch.stack(per_layer).mean()


def feak_cls(hs_cls: list[Tensor], ht_cls: list[Tensor], valid: Tensor, count: Tensor | None = None) -> Tensor:
    """FeaK (method.md item 3), BERT-PKD form (option `cls`) [ours]: compare directions of the [CLS] vectors.

    hs_cls, ht_cls: one [B, D] tensor per mapped layer. Both are L2-normalised,
    then squared error averaged over D (so at most 4/D per example), mean over
    valid examples, mean over layers.
    """
    _check_layers("feak_cls", hs_cls, ht_cls)
    per_layer = []
    for s, t in zip(hs_cls, ht_cls):
        diff = F.normalize(s.float(), dim=-1) - F.normalize(t.detach().float(), dim=-1)
        per_layer.append(_valid_mean((diff ** 2).mean(-1), valid, count))
    return torch.stack(per_layer).mean()


def fsp(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """FSP matrix (method.md item 4) per example: G = A^T B / n over the n real tokens of that example.

    a [B, L, Da], b [B, L, Db], mask [B, L] -> [B, Da, Db]. Rows without real
    tokens give G = 0.
    """
    m = mask.float()[..., None]  # [B, L, 1]
    n = m.sum(dim=(1, 2)).clamp(min=1)[:, None, None]
    return (a.float() * m).transpose(1, 2) @ (b.float() * m) / n


def relk(hs: list[Tensor], ht: list[Tensor], mask: Tensor, count: Tensor | None = None) -> Tensor:
    """RelK, relation knowledge (method.md item 4) [ours]: MSE between FSP matrices of consecutive mapped layers.

    hs, ht: M+1 states [B, L, D] each, index 0 the embedding output, then the
    mapped layers in order (student projected). For each i = 1..M the FSP
    matrices G = fsp(h^(i-1), h^(i)) of student and teacher are compared by
    squared error averaged over the D*D entries, mean over valid examples
    (rows of mask with a real token; count: their number): each example
    weighs the same whatever its length, unlike feak's tokens; then the mean over i.
    """
    _check_layers("relk", hs, ht)
    if len(hs) < 2:
        raise KdError(f"losses.py relk: needs the embeddings plus at least one layer, got {len(hs)} states")
    valid = mask.bool().any(-1)
    per_pair = []
    for i in range(1, len(hs)):
        g_s = fsp(hs[i - 1], hs[i], mask)
        g_t = fsp(ht[i - 1].detach(), ht[i].detach(), mask)
        per_pair.append(_valid_mean(((g_s - g_t) ** 2).mean(dim=(1, 2)), valid, count))
    return torch.stack(per_pair).mean()


def attk(scores_s: list[Tensor], scores_t: list[Tensor], mask: Tensor, count: Tensor | None = None) -> Tensor:
    """AttK, TinyBERT attention knowledge (method.md item 5, extension, off unless asked).

    scores_s, scores_t: one [B, heads, L, L] tensor of pre-softmax scores per
    mapped layer; heads must match, as TinyBERT pairs heads one to one. Squared
    error over the entries whose query and key are both real tokens, divided by
    their count (times heads; count: the number of such pairs); then the mean
    over layers. Masked entries may hold -inf: they are selected away before
    anything is multiplied.
    """
    _check_layers("attk", scores_s, scores_t)
    m = mask.bool()
    both_real = m[:, None, :, None] & m[:, None, None, :]  # [B, 1, L(query), L(key)]
    entries = ((both_real.sum() if count is None else count) * scores_s[0].shape[1]).clamp(min=1)
    per_layer = [torch.where(both_real, s.float() - t.detach().float(), 0.0).pow(2).sum() / entries
                 for s, t in zip(scores_s, scores_t)]
    return torch.stack(per_layer).mean()
