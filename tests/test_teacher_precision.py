"""One teacher precision whichever path gives the distillation targets (README, "Reproducibility":
"Both paths run the teacher at one precision").

run.py caches the teacher's outputs on the training set once, or, with --attk-weight or beyond
--teacher-cache-gb, runs the teacher live at every step, inside the training step's autocast.
Both go through kd_ref.teacher.teacher_forward, so a flag cannot change the targets.
"""
import torch

from kd_ref.bert import Bert, BertConfig
from kd_ref.data.batching import make_batches
from kd_ref.teacher import TeacherCache, live_view

G = [0, 2, 4]  # a 2-layer student's map onto the 4-layer teacher


def test_cached_and_live_teacher_give_the_same_targets():
    """In bf16 (run.py's precision on CUDA; the CPU's autocast here) the two paths must agree to
    storage precision: one bf16 step in the hidden states, fp32 rounding in the logits, on the
    training batches, which group the rows otherwise than the cache's batches. (Before, the
    cache ran an fp32 forward and the live path a bf16 one: their states differed by several
    bf16 steps.)"""
    teacher = Bert(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                              intermediate_size=64, num_labels=3)).eval()
    lengths = torch.randint(3, 60, (40,)).tolist()  # both buckets of max_len 64, and a partial batch in each
    encoded = [(torch.randint(5, 50, (n,)).tolist(), [0] * n) for n in lengths]
    cache = TeacherCache(teacher, make_batches(encoded, None, 8, 64, shuffle=False), len(encoded), G,
                         torch.device("cpu"), torch.bfloat16)
    for b in make_batches(encoded, None, 8, 64, shuffle=True, seed=3):
        cached = cache.view(b)
        with torch.autocast("cpu", torch.bfloat16):  # where train_student calls the live teacher on CUDA
            live = live_view(teacher, b, G, attention=False, dtype=torch.bfloat16)
        real = b.attention_mask.bool() & b.valid[:, None]
        assert live.logits.dtype == cached.logits.dtype == torch.float32
        torch.testing.assert_close(live.logits[b.valid], cached.logits[b.valid], rtol=1e-5, atol=1e-6)
        for h_live, h_cached in zip(live.hidden, cached.hidden):
            assert h_live.dtype == h_cached.dtype == torch.bfloat16
            # to one bf16 step
            torch.testing.assert_close(h_live[real].float(), h_cached[real].float(), rtol=2 ** -7, atol=0)
