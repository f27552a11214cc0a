"""Fixed-shape batches from tokenized examples, bucketed by length.

Every batch has exactly batch_size rows and a length from bucket_lengths(max_len),
so a compiled model sees only a few shapes. Each example goes to the smallest
bucket that holds it; the last batch of a bucket is filled up with filler rows
that copy real rows of that batch and are marked valid=False. Fillers copy real
rows rather than being all padding because a fully masked row makes the attention
softmax NaN. Losses and metrics must use only rows with valid=True; then every
example counts exactly once per epoch.
"""
from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from kd_ref.plumbing.errors import KdError


@dataclass
class Batch:
    input_ids: Tensor       # [B, L] long, padded with pad_id
    attention_mask: Tensor  # [B, L] long, 1 = real token, 0 = padding
    token_type_ids: Tensor  # [B, L] long, 0 = first text, 1 = second text
    labels: Tensor          # [B] long class index (classification, -1 if unlabeled) or float32 score
    index: Tensor           # [B] long, row of the example in `encoded` (fillers repeat a real row)
    valid: Tensor           # [B] bool, False for filler rows
    gold: Tensor            # [B] bool, False where FinK must not train on the label (run.py --augment)

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, f.name).to(device) for f in fields(self)))


def bucket_lengths(max_len: int) -> tuple[int, ...]:
    """Powers of two from 32 below max_len, then max_len: 128 -> (32, 64, 128)."""
    lengths = []
    length = 32
    while length < max_len:
        lengths.append(length)
        length *= 2
    return (*lengths, max_len)


def make_batches(encoded: list[tuple[list[int], list[int]]], labels, batch_size: int, max_len: int, *,
                 shuffle: bool, seed: int = 0, pad_id: int = 0, shard: tuple[int, int] = (0, 1), gold=None) -> list[Batch]:
    """Batches of `encoded` (input_ids, token_type_ids) pairs, each of 1..max_len tokens.

    labels: one per example, ints (classification) or floats (regression); None
    or all None (Example.label on a test split) for unlabeled data, labeled -1.
    gold: one bool per example, whether FinK trains on its label (default: every one).

    shuffle=False keeps dataset order within each bucket, buckets shortest first.
    shuffle=True permutes the examples within buckets and then the batches with
    numpy Generator(seed); pass seed + epoch for a new order each epoch.

    shard=(rank, world), for several processes (kd_ref.plumbing.distributed): batch_size is
    the global batch; every rank builds the same global batches and keeps rows
    [rank * b, (rank + 1) * b) of each, b = batch_size / world. So the ranks run
    the same steps on the same global batch as one process would, and a rank may
    hold only filler rows of a bucket's last batch (its losses are then 0).
    """
    rank, world = shard
    if not 0 <= rank < world:
        raise ValueError(f"shard {shard} is not (rank, world) with 0 <= rank < world")
    if batch_size % world:
        raise KdError(f"--batch-size {batch_size} (the global batch) is not divisible by the {world} processes")
    local = slice(rank * batch_size // world, (rank + 1) * batch_size // world)
    lengths = np.array([len(ids) for ids, _ in encoded], dtype=np.int64)
    if len(lengths) and not (lengths.min() >= 1 and lengths.max() <= max_len):
        raise KdError(f"tokenized examples have {lengths.min()}..{lengths.max()} tokens, "
                      f"batching needs 1..{max_len} (--max-len)")
    unlabeled = labels is None or all(label is None for label in labels)
    label_array = np.full(len(encoded), -1) if unlabeled else np.asarray(labels)
    if len(label_array) != len(encoded) or label_array.dtype.kind not in "biuf":
        raise ValueError(f"need one int or float label per example, got {len(label_array)} "
                         f"of dtype {label_array.dtype} for {len(encoded)} examples")
    label_dtype = torch.float32 if label_array.dtype.kind == "f" else torch.long
    gold = np.ones(len(encoded), dtype=bool) if gold is None else np.asarray(gold, dtype=bool)
    rng = np.random.default_rng(seed)

    # plan: (rows of encoded, number of real rows, length) per batch
    buckets = bucket_lengths(max_len)
    bucket_of = np.searchsorted(buckets, lengths)  # smallest bucket with length >= example length
    plan = []
    for bucket, length in enumerate(buckets):
        members = np.flatnonzero(bucket_of == bucket)
        if shuffle:
            members = rng.permutation(members)
        for start in range(0, len(members), batch_size):
            real = members[start:start + batch_size]
            plan.append((np.resize(real, batch_size), len(real), length))  # resize repeats real rows
    if shuffle:
        plan = [plan[i] for i in rng.permutation(len(plan))]

    batches = []
    for rows, n_real, length in plan:
        valid = (np.arange(batch_size) < n_real)[local]
        rows = rows[local]
        input_ids = np.full((len(rows), length), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(rows), length), dtype=np.int64)
        attention_mask = np.zeros((len(rows), length), dtype=np.int64)
        for i, row in enumerate(rows):
            ids, types = encoded[row]
            input_ids[i, :len(ids)] = ids
            token_type_ids[i, :len(ids)] = types
            attention_mask[i, :len(ids)] = 1
        batches.append(Batch(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(attention_mask),
            token_type_ids=torch.from_numpy(token_type_ids),
            labels=torch.as_tensor(label_array[rows], dtype=label_dtype),
            index=torch.from_numpy(rows.astype(np.int64)),
            valid=torch.from_numpy(valid),
            gold=torch.from_numpy(gold[rows]),
        ))
    return batches
