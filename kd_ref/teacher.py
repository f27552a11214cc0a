"""The teacher: fine-tuned on the task when it arrives only pre-trained, then
asked once for everything the student learns from (method.md "Episodes":
teacher outputs are the same in every episode: cache them)."""
import math
from dataclasses import dataclass

import torch

from kd_ref import losses
from kd_ref.optim import make_optimizer
from kd_ref.plumbing import distributed
from kd_ref.plumbing.errors import NonFinite
from kd_ref.plumbing.progress import Progress


def finetune(model, train, *, epochs: int, lr: float, batch_size: int, max_len: int, weight_decay: float,
             warmup: float, seed: int, device, checkpoints=None, per_epoch: int = 4, resume=None,
             meta=dict) -> None:
    """Plain fine-tuning with the gold labels (FinK alone), in place; over all ranks under torchrun.

    checkpoints (kd_ref.plumbing.resume.Checkpoints) keeps the whole training state per_epoch times an
    epoch, the last at its end, so a crash loses at most that much of hours of fine-tuning;
    meta() gives the rest of its meta.json. With resume, one of those checkpoints, the
    fine-tuning continues from it as if uninterrupted (bitwise on the CPU): an epoch's batches
    are a function of the seed, and the weights, optimizer, schedule and RNG states are
    restored. A NaN or infinite loss or weight stops it (NonFinite), the last checkpoint kept.
    """
    epoch_batches = lambda epoch: train.batches(batch_size, max_len, shuffle=True, seed=seed * 1000 + epoch,
                                                shard=distributed.shard())
    first = epoch_batches(0)
    n = len(first)
    steps = epochs * n
    opt, sched = make_optimizer(model.parameters(), lr, weight_decay, steps, warmup)
    modules, stateful = {"teacher": model}, {"optimizer": opt, "scheduler": sched}
    step = checkpoints.restore(resume, modules, stateful)["step"] if resume else 0
    due = lambda k: k * per_epoch // n > (k - 1) * per_epoch // n  # k: steps into the epoch, 1..n
    trained = distributed.wrap(model)
    model.train()
    with Progress(steps - step, "teacher fine-tuning") as bar:
        for epoch in range(step // n, epochs):
            for b in (first if epoch == 0 else epoch_batches(epoch))[step - epoch * n:]:
                b = b.to(device)
                # this rank's share of the global batch's mean: DDP sums the shares (kd_ref/plumbing/distributed.py)
                loss = losses.fink(trained(b.input_ids, b.attention_mask, b.token_type_ids).logits,
                                   b.labels, b.valid, distributed.sum_(b.valid.sum()))
                global_loss = distributed.sum_(loss.detach().clone()).item()
                if not math.isfinite(global_loss):  # every rank sees the global loss: all stop together
                    raise NonFinite(f"teacher fine-tuning, epoch {epoch}, step {step}: loss is {global_loss}; "
                                    "lower --teacher-lr or check the inputs")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)  # BERT's; --max-grad-norm is the student's
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                bar.update(loss=global_loss)
                if checkpoints and due(step - epoch * n):
                    if not all(torch.isfinite(p).all() for p in model.parameters()):
                        raise NonFinite(f"teacher fine-tuning, epoch {epoch}, step {step}: non-finite weights")
                    if distributed.is_main():
                        checkpoints.save({"step": step, "epoch": epoch, **meta()}, modules, stateful,
                                         {"step": step})
    model.eval()


@dataclass
class TeacherView:
    """What the student sees of the teacher on one batch."""
    logits: torch.Tensor            # [B, C]
    hidden: list                    # teacher states g(0..M), each [B, L, D]
    scores: list                    # pre-softmax attention scores of g(1..M) (AttK only), else []


def teacher_forward(teacher, b, dtype, attention_layers=()):
    """The teacher's forward on a batch, the same whichever path asks (cache or live), so the
    targets do not depend on --attk-weight or --teacher-cache-gb. dtype is the teacher precision:
    bfloat16 (run.py on CUDA) runs it under bf16 autocast and keeps its hidden states in bf16, the
    cache's storage, where an fp32 forward would buy nothing that is kept and would slow the live
    path (it runs every step); float32 (the CPU) runs and keeps fp32. Logits are fp32 either way:
    kd_ref.bert computes the head in full precision."""
    with torch.no_grad(), torch.autocast(b.input_ids.device.type, torch.bfloat16, enabled=dtype == torch.bfloat16):
        return teacher(b.input_ids, b.attention_mask, b.token_type_ids, output_hidden_states=True,
                       attention_layers=attention_layers)


class TeacherCache:
    """Teacher logits and mapped hidden states for every training row, kept packed:
    each mapped layer is one [total tokens, D] tensor holding only real tokens.
    Memory: rows * C + tokens * D * (M + 1) numbers in the cache dtype (see nbytes), which is
    also the teacher precision (teacher_forward; logits fp32). Attention scores are not cached (L x L per head); AttK runs the teacher live.

    Under torchrun each rank runs the teacher on its shard of the batches and the
    cache is summed over ranks (every row is valid on exactly one rank).
    `tensors` / `from_tensors` let teacher_setup.py keep the cache on disk and reuse it after a resume."""

    def __init__(self, teacher, batches, n_rows: int, g: list[int], device, dtype):
        lengths = torch.zeros(n_rows, dtype=torch.long, device=device)
        for b in batches:
            lengths[b.index[b.valid].to(device)] = b.attention_mask[b.valid].sum(-1).to(device)
        self._index(distributed.sum_(lengths), g)
        d = teacher.config.hidden_size
        self.logits = torch.zeros(n_rows, teacher.config.num_labels, device=device)
        self.hidden = [torch.zeros(int(lengths.sum()), d, device=device, dtype=dtype) for _ in g]
        for b in batches:
            b = b.to(device)
            out = teacher_forward(teacher, b, dtype)
            rows = b.index[b.valid]
            self.logits[rows] = out.logits[b.valid]
            real = b.attention_mask[b.valid].bool()
            pos = self.offsets[rows, None] + torch.arange(real.shape[1], device=device)
            for cache, layer in zip(self.hidden, g):
                cache[pos[real]] = out.hidden_states[layer][b.valid][real].to(dtype)
        for t in (self.logits, *self.hidden):
            distributed.sum_(t)

    def _index(self, lengths, g) -> None:
        self.lengths, self.g = lengths, g
        self.offsets = torch.cumsum(lengths, 0) - lengths

    def tensors(self) -> dict:
        return {"lengths": self.lengths, "logits": self.logits,
                **{f"hidden.{i}": h for i, h in enumerate(self.hidden)}}

    @classmethod
    def from_tensors(cls, tensors: dict, g: list[int], device) -> "TeacherCache":
        cache = cls.__new__(cls)
        cache._index(tensors["lengths"].to(device), g)
        cache.logits = tensors["logits"].to(device)
        cache.hidden = [tensors[f"hidden.{i}"].to(device) for i in range(len(g))]
        return cache

    @property
    def nbytes(self) -> int:
        return self.logits.nbytes + sum(h.nbytes for h in self.hidden)

    def view(self, b) -> TeacherView:
        length = b.input_ids.shape[1]
        pos = self.offsets[b.index, None] + torch.arange(length, device=b.index.device)
        real = torch.arange(length, device=b.index.device) < self.lengths[b.index, None]
        pos = torch.where(real, pos, 0)
        hidden = [torch.where(real[..., None], h[pos], 0) for h in self.hidden]
        return TeacherView(self.logits[b.index], hidden, [])


def live_view(teacher, b, g: list[int], attention: bool, dtype) -> TeacherView:
    """Run the teacher on the batch (used when the cache is off or AttK needs scores): the same
    forward and the same rounding of the hidden states as TeacherCache with this dtype."""
    out = teacher_forward(teacher, b, dtype, g[1:] if attention else ())
    return TeacherView(out.logits, [out.hidden_states[i].to(dtype) for i in g],
                       [out.scores[i] for i in g[1:]] if attention else [])


def estimate_cache_bytes(n_rows: int, n_tokens: int, num_labels: int, width: int, layers: int,
                         itemsize: int) -> int:
    return n_rows * num_labels * 4 + n_tokens * width * layers * itemsize
