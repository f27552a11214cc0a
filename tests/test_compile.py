"""kd_ref.plumbing.compiled: compiled teacher, student and fused loss, and no recompiles after warm-up.

A short KD run on a tiny BERT with three length buckets, the way the training
loop drives it: teacher under no_grad in eval mode, student in train mode, new
loss weights every step, an evaluation pass of the student every few steps.
Backend eager: dynamo captures and guards exactly as with inductor, so the
recompiles are the same, without the minutes of kernel generation on 2 cores
(tests/test_fused.py runs inductor).
"""
import subprocess
import sys

import torch

from kd_ref.bert import Bert, BertConfig
from kd_ref.data.batching import make_batches
from kd_ref.fused import make_fused_loss
from kd_ref.optim import make_optimizer
from kd_ref.plumbing.compiled import compile_counts, compile_model, default_compile
from kd_ref.student import build_student, layer_map

BACKEND = "eager"
BATCH, MAX_LEN = 4, 128  # buckets 32, 64, 128: 9 graphs for teacher and student, above dynamo's default limit of 8


def tiny_models():
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=MAX_LEN)
    teacher = Bert(cfg).eval()
    g = layer_map(2, 1)
    student = build_student(teacher, 1, None, "teacher", g).train()
    return teacher, student, g


def examples(n, seed):
    rng = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, MAX_LEN + 1, (n,), generator=rng).tolist()
    encoded = [(torch.randint(1, 100, (k,), generator=rng).tolist(), [0] * k) for k in lengths]
    return encoded, torch.randint(0, 2, (n,), generator=rng).tolist()


def test_no_recompiles_after_warmup():
    teacher, student, g = tiny_models()
    compile_model(teacher, backend=BACKEND)
    compile_model(student, backend=BACKEND)
    loss_fn = make_fused_loss(compile=True, backend=BACKEND)
    opt, sched = make_optimizer(student.parameters(), 1e-4, 0.01, 100, 0.1)
    encoded, labels = examples(24, seed=0)
    temperature = torch.tensor(1.0)

    def step(b, weights):
        with torch.no_grad():
            t = teacher(b.input_ids, b.attention_mask, b.token_type_ids, output_hidden_states=True)
        s = student(b.input_ids, b.attention_mask, b.token_type_ids, output_hidden_states=True)
        total, raw = loss_fn(s.logits, t.logits, b.labels, b.valid, b.attention_mask, s.hidden_states,
                             [t.hidden_states[i] for i in g], weights, temperature,
                             feak_mode="tokens", regression=False)
        total.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        return raw

    def evaluate(batches):  # what gold_loss and evaluate do at a phase end
        student.eval()
        with torch.no_grad():
            logits = [student(b.input_ids, b.attention_mask, b.token_type_ids).logits for b in batches]
        student.train()
        return logits

    def epoch(seed):
        batches = make_batches(encoded, labels, BATCH, MAX_LEN, shuffle=True, seed=seed)
        assert {b.input_ids.shape[1] for b in batches} == {32, 64, 128}
        for i, b in enumerate(batches):
            weights = torch.rand(4)  # a new action every step: the worst case
            assert torch.isfinite(step(b, weights)).all()
            if i % 3 == 2:
                evaluate(batches)
        return batches

    epoch(seed=0)  # warm-up: every bucket in every mode
    warm = compile_counts()
    batches = epoch(seed=1)
    assert compile_counts() == warm, "recompiled after warm-up"
    assert warm["eager_fallbacks"] == 0, "dynamo gave up and ran eager"

    # the compiled student computes what the eager one does (dropout off in eval mode)
    student.eval()
    with torch.no_grad():
        b = batches[0]
        eager = student.forward(b.input_ids, b.attention_mask, b.token_type_ids).logits
    torch.testing.assert_close(evaluate(batches[:1])[0], eager, rtol=1e-5, atol=1e-6)

    # positive control: a length outside the buckets does compile, so the count above can fail
    with torch.no_grad():
        student(b.input_ids[:, :48], b.attention_mask[:, :48], b.token_type_ids[:, :48])
    assert compile_counts()["graphs"] > warm["graphs"]


KEEP_FREED_PROBE = """
import ctypes, sys, torch
from kd_ref.plumbing.compiled import keep_freed_memory
class MallInfo2(ctypes.Structure):  # glibc >= 2.33
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena ordblks smblks hblks hblkhd usmblks "
                                                     "fsmblks uordblks fordblks keepcost").split()]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = torch.empty(1 << 24).fill_(1.0)  # 64 MiB: above glibc's largest mmap threshold
mapped = mallinfo2().hblkhd  # bytes in blocks mapped from the OS on their own
del x
print(mapped, mallinfo2().fordblks)  # free bytes malloc kept
"""


def test_keep_freed_memory_keeps_freed_blocks():
    """glibc's default maps a 64 MiB tensor from the OS on its own and unmaps it on free, so its
    next allocation starts on fresh pages (page faults); after keep_freed_memory it comes from
    malloc's heap and stays there when freed, for the next allocation to reuse. Read from
    mallinfo2 in a subprocess, because the setting holds for the rest of the process."""
    def probe(mode):
        done = subprocess.run([sys.executable, "-c", KEEP_FREED_PROBE, mode], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return [int(v) for v in done.stdout.split()]
    mib64 = 1 << 26
    mapped, kept = probe("default")
    assert mapped >= mib64 and kept < mib64
    mapped, kept = probe("keep")
    assert mapped < mib64 and kept >= mib64


def test_default_compile_follows_the_benchmark():
    assert default_compile("cuda") and default_compile("cuda:1")
    assert not default_compile("cpu")
