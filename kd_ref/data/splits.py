"""A tokenised split, its batches, the splits held out of training (reward, --holdout), and
the rows --augment adds to the student's training.

Rows keep their position in the full split (`rows`), so the teacher cache and
the prediction files stay indexed by the original example whatever subset or
shuffle a batch came from. --holdout is the exception: it makes two new splits
of train, each numbered from 0.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kd_ref.data.batching import Batch, make_batches
from kd_ref.data.glue import Example, Task, read_file, read_split
from kd_ref.data.tokenizer import BertTokenizer
from kd_ref.plumbing.errors import KdError


@dataclass
class Encoded:
    pairs: list            # (input_ids, token_type_ids) per example, unpadded
    labels: np.ndarray     # int64 class index or float32 score; 0 for unlabeled test rows
    rows: np.ndarray       # position of each example in its full split
    gold: np.ndarray | None = None  # bool per example: FinK trains on its label (default: every row)

    def __post_init__(self):
        if self.gold is None:
            self.gold = np.ones(len(self.pairs), dtype=bool)

    def __len__(self):
        return len(self.pairs)

    def subset(self, idx: np.ndarray) -> "Encoded":
        return Encoded([self.pairs[i] for i in idx], self.labels[idx], self.rows[idx], self.gold[idx])

    def __add__(self, other: "Encoded") -> "Encoded":
        return Encoded(self.pairs + other.pairs, np.concatenate([self.labels, other.labels]),
                       np.concatenate([self.rows, other.rows]), np.concatenate([self.gold, other.gold]))

    def renumbered(self) -> "Encoded":
        """The same examples numbered from 0: a split of its own, scored against its own labels."""
        return Encoded(self.pairs, self.labels, np.arange(len(self)), self.gold)

    def batches(self, batch_size: int, max_len: int, *, shuffle: bool, seed: int = 0,
                shard: tuple[int, int] = (0, 1)) -> list[Batch]:
        out = make_batches(self.pairs, self.labels, batch_size, max_len, shuffle=shuffle,
                           seed=seed, shard=shard, gold=self.gold)
        rows = torch.as_tensor(self.rows)
        for b in out:
            b.index = rows[b.index]
        return out


def encode_split(data_dir, task: Task, split: str, tokenizer: BertTokenizer) -> Encoded:
    return encode(read_split(data_dir, task, split), task, tokenizer)


def encode(examples: list[Example], task: Task, tokenizer: BertTokenizer) -> Encoded:
    dtype = np.float32 if task.labels is None else np.int64
    labels = np.array([0 if e.label is None else e.label for e in examples], dtype=dtype)
    return Encoded(tokenizer.encode(examples), labels, np.arange(len(examples)))


def augmented(path: Path, task: Task, tokenizer: BertTokenizer, train: Encoded, fink: bool) -> Encoded:
    """--augment [ours]: the rows of path (the format and columns of train), numbered after train's
    rows, so that the teacher cache holds both; FinK trains on their labels only with fink=True
    (--augment-fink): an augmented row's label was copied from the row it was made from, so by
    default it learns from the teacher's knowledge alone, as TinyBERT distils on augmented data."""
    if not path.is_file():
        raise KdError(f"--augment {path}: file not found")
    rows = encode(read_file(path, task, labeled=True, split="augment"), task, tokenizer)
    return Encoded(rows.pairs, rows.labels, len(train) + rows.rows, np.full(len(rows), fink))


def stratified_split(labels: np.ndarray, fraction: float, seed: int, regression: bool):
    """Hold out `fraction` of a split, stratified by label (by score quintile for regression),
    with a fixed seed: method.md "Reward" [ours], and --holdout. Returns (kept_idx, held_idx)."""
    rng = np.random.default_rng(seed)
    strata = np.digitize(labels, np.quantile(labels, [0.2, 0.4, 0.6, 0.8])) if regression else labels
    held = []
    for s in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == s))
        held.append(members[: int(round(fraction * len(members)))])
    held = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(labels)), held), held


HOLDOUT_SEED = 0  # one held-out split for every method and seed, so their scores on it pair up


def hold_out(train: Encoded, fraction: float, regression: bool) -> tuple[Encoded, Encoded | None]:
    """--holdout [ours]: keep `fraction` of the training set out of everything run.py trains, the
    teacher's fine-tuning included, and score every student on it: a validation set that is not
    dev, to choose among methods and then report the choice on dev untouched. Both parts are
    numbered afresh from 0, as the teacher cache and evaluate index them by row."""
    if not fraction:
        return train, None
    keep, held = stratified_split(train.labels, fraction, HOLDOUT_SEED, regression)
    if len(held) == 0:
        raise KdError(f"--holdout {fraction}: holds out no row of the {len(train)} training rows")
    return train.subset(keep).renumbered(), train.subset(held).renumbered()
