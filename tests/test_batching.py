from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kd_ref.data.batching import Batch, bucket_lengths, make_batches
from kd_ref.plumbing.errors import KdError

PAD = 0


def fake_encoded(n: int, max_len: int, seed: int = 0):
    """n examples of 1..max_len tokens; token ids > 0 encode (example, position) so rows can be checked."""
    rng = np.random.default_rng(seed)
    encoded = []
    for i in range(n):
        length = int(rng.integers(1, max_len + 1))
        ids = [1000 * (i + 1) + j for j in range(length)]
        types = [int(j >= length // 2) for j in range(length)]
        encoded.append((ids, types))
    return encoded


def check_batches(batches, encoded, labels, batch_size, max_len, sharded=False):
    """Shapes, contents and filler rows of every batch (of batch_size rows: per rank when
    sharded); returns the valid indices in batch order."""
    buckets = bucket_lengths(max_len)
    valid_rows = []
    for b in batches:
        length = b.input_ids.shape[1]
        assert length in buckets
        for t in (b.input_ids, b.attention_mask, b.token_type_ids):
            assert t.shape == (batch_size, length) and t.dtype == torch.long
        assert b.labels.shape == b.index.shape == b.valid.shape == (batch_size,)
        assert b.valid.dtype == torch.bool and b.index.dtype == torch.long
        assert (b.attention_mask.sum(1) >= 1).all()  # no all-masked row: attention would be NaN
        real = set(b.index[b.valid].tolist())
        for row, i in enumerate(b.index.tolist()):
            ids, types = encoded[i]
            n = len(ids)
            assert length == min(x for x in buckets if x >= n)  # smallest bucket that holds it
            assert b.input_ids[row, :n].tolist() == ids and (b.input_ids[row, n:] == PAD).all()
            assert b.token_type_ids[row, :n].tolist() == types and (b.token_type_ids[row, n:] == 0).all()
            assert b.attention_mask[row].tolist() == [1] * n + [0] * (length - n)
            assert b.labels[row].item() == pytest.approx(labels[i])
            if not b.valid[row] and not sharded:
                assert i in real  # filler copies a real row of its own batch
        n_valid = int(b.valid.sum())
        assert b.valid.tolist() == [True] * n_valid + [False] * (batch_size - n_valid)
        valid_rows += b.index[b.valid].tolist()
    return valid_rows


def test_bucket_lengths():
    assert bucket_lengths(128) == (32, 64, 128)
    assert bucket_lengths(512) == (32, 64, 128, 256, 512)
    assert bucket_lengths(100) == (32, 64, 100)
    assert bucket_lengths(64) == (32, 64)
    assert bucket_lengths(16) == (16,)


@settings(max_examples=60, deadline=None, database=None)
@given(n=st.integers(0, 150), batch_size=st.integers(1, 17), max_len=st.sampled_from([8, 40, 128]),
       shuffle=st.booleans(), seed=st.integers(0, 2**32 - 1), world=st.sampled_from([1, 2, 4]))
def test_every_example_exactly_once(n, batch_size, max_len, shuffle, seed, world):
    batch_size *= world  # the global batch
    encoded = fake_encoded(n, max_len, seed)
    labels = list(np.random.default_rng(seed).integers(0, 3, n))
    shards = [make_batches(encoded, labels, batch_size, max_len, shuffle=shuffle, seed=seed, pad_id=PAD,
                           shard=(rank, world)) for rank in range(world)]
    assert len({len(s) for s in shards}) == 1  # every rank runs the same number of steps
    valid = Counter()
    for batches in shards:
        valid.update(check_batches(batches, encoded, labels, batch_size // world, max_len, sharded=world > 1))
    assert valid == Counter(range(n))  # each example valid exactly once over all ranks
    if world == 1:
        buckets = bucket_lengths(max_len)
        lengths = Counter(min(x for x in buckets if x >= len(ids)) for ids, _ in encoded)
        assert len(shards[0]) == sum(-(-c // batch_size) for c in lengths.values())  # one partial batch per bucket


def test_order_without_shuffle():
    encoded = fake_encoded(100, 128)
    batches = make_batches(encoded, [0] * 100, 8, 128, shuffle=False)
    rows = [i for b in batches for i in b.index[b.valid].tolist()]
    buckets = bucket_lengths(128)
    bucket_of = [min(k for k, x in enumerate(buckets) if x >= len(ids)) for ids, _ in encoded]
    assert rows == sorted(range(100), key=lambda i: (bucket_of[i], i))  # buckets in turn, dataset order within


def test_shuffle_is_seeded():
    encoded = fake_encoded(200, 128)
    order = lambda seed: [b.index.tolist() for b in make_batches(encoded, [0] * 200, 8, 128, shuffle=True, seed=seed)]
    assert order(3) == order(3)
    assert order(3) != order(4)
    assert order(3) != [b.index.tolist() for b in make_batches(encoded, [0] * 200, 8, 128, shuffle=False)]


def test_shards_split_each_global_batch():
    encoded, world = fake_encoded(90, 40), 4
    whole = make_batches(encoded, [0] * 90, 8, 40, shuffle=True, seed=5)
    shards = [make_batches(encoded, [0] * 90, 8, 40, shuffle=True, seed=5, shard=(r, world)) for r in range(world)]
    assert all(len(s) == len(whole) for s in shards)  # the same steps on every rank
    for k, b in enumerate(whole):  # rank r holds rows 2r, 2r + 1 of every global batch
        for field in ("input_ids", "attention_mask", "index", "valid"):
            assert torch.equal(torch.cat([getattr(s[k], field) for s in shards]), getattr(b, field))
    assert any(not s[k].valid.any() for s in shards for k in range(len(whole)))  # a rank with only fillers
    with pytest.raises(ValueError, match="rank"):
        make_batches(encoded, [0] * 90, 8, 40, shuffle=False, shard=(world, world))
    with pytest.raises(KdError, match="--batch-size 8 .* 3 processes"):
        make_batches(encoded, [0] * 90, 8, 40, shuffle=False, shard=(0, 3))


def test_label_types():
    encoded = fake_encoded(10, 16)
    (b,) = make_batches(encoded, [0.5 * i for i in range(10)], 16, 16, shuffle=False)
    assert b.labels.dtype == torch.float32 and b.labels[b.valid].tolist() == [0.5 * i for i in range(10)]
    (b,) = make_batches(encoded, np.arange(10), 16, 16, shuffle=False)
    assert b.labels.dtype == torch.long
    for unlabeled in (None, [None] * 10):
        (b,) = make_batches(encoded, unlabeled, 16, 16, shuffle=False)
        assert b.labels.dtype == torch.long and (b.labels == -1).all()
    with pytest.raises(ValueError, match="9 of dtype int64 for 10 examples"):
        make_batches(encoded, np.arange(9), 16, 16, shuffle=False)


def test_too_long_example():
    with pytest.raises(KdError, match=r"1\.\.17 tokens, batching needs 1\.\.16"):
        make_batches([([1] * 17, [0] * 17), ([1], [0])], [0, 1], 4, 16, shuffle=False)
    with pytest.raises(KdError, match=r"0\.\.1 tokens"):
        make_batches([([], []), ([1], [0])], [0, 1], 4, 16, shuffle=False)
    assert make_batches([], [], 4, 16, shuffle=True, shard=(1, 2)) == []


def test_pad_id_and_to():
    (b,) = make_batches([([5, 6], [0, 0])], [1], 2, 8, shuffle=False, pad_id=99)
    assert b.input_ids.tolist() == [[5, 6] + [99] * 6] * 2  # the filler row repeats the only example
    assert b.valid.tolist() == [True, False]
    moved = b.to("cpu")
    assert isinstance(moved, Batch) and torch.equal(moved.input_ids, b.input_ids)
