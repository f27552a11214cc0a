"""A tokenised GLUE split, its batches, and the held-out reward split.

Rows keep their position in the full split (`rows`), so the teacher cache and
the prediction files stay indexed by the original example whatever subset or
shuffle a batch came from.
"""
from dataclasses import dataclass

import numpy as np
import torch

from .batching import Batch, make_batches
from .glue import Task, read_split
from .tokenizer import BertTokenizer


@dataclass
class Encoded:
    pairs: list            # (input_ids, token_type_ids) per example, unpadded
    labels: np.ndarray     # int64 class index or float32 score; 0 for unlabeled test rows
    rows: np.ndarray       # position of each example in its full split

    def __len__(self):
        return len(self.pairs)

    def subset(self, idx: np.ndarray) -> "Encoded":
        return Encoded([self.pairs[i] for i in idx], self.labels[idx], self.rows[idx])

    def batches(self, batch_size: int, max_len: int, *, shuffle: bool, seed: int = 0,
                shard: tuple[int, int] = (0, 1)) -> list[Batch]:
        out = make_batches(self.pairs, self.labels, batch_size, max_len, shuffle=shuffle,
                           seed=seed, shard=shard)
        rows = torch.as_tensor(self.rows)
        for b in out:
            b.index = rows[b.index]
        return out


def encode_split(data_dir, task: Task, split: str, tokenizer: BertTokenizer) -> Encoded:
    examples = read_split(data_dir, task, split)
    dtype = np.float32 if task.labels is None else np.int64
    labels = np.array([0 if e.label is None else e.label for e in examples], dtype=dtype)
    return Encoded(tokenizer.encode(examples), labels, np.arange(len(examples)))


def reward_split(labels: np.ndarray, fraction: float, seed: int, regression: bool):
    """method.md "Reward" [ours]: hold out `fraction` of the training set, stratified by label
    (by score quintile for regression), with a fixed seed. Returns (train_idx, reward_idx)."""
    rng = np.random.default_rng(seed)
    strata = np.digitize(labels, np.quantile(labels, [0.2, 0.4, 0.6, 0.8])) if regression else labels
    held = []
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        held.append(members[: int(round(fraction * len(members)))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held
