"""kd_ref.bert against transformers (random weights, loaded through kd_ref.plumbing.checkpoint)."""
import pytest
import torch
import transformers

from kd_ref import losses
from kd_ref.bert import Bert, BertConfig, dropout
from kd_ref.plumbing.checkpoint import load_bert
from kd_ref.plumbing.errors import KdError

TOL = 1e-5
CONFIGS = {
    "odd": dict(num_hidden_layers=5, hidden_size=96, num_attention_heads=3, intermediate_size=200, num_labels=3),
    "regression": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128, num_labels=1),
}


def hf_model(tmp_path, **kw):
    """A random HF BertForSequenceClassification (dropout off, eager attention), saved and
    loaded back as ours. Every parameter is perturbed so biases and LayerNorms are not trivial."""
    config = transformers.BertConfig(
        vocab_size=100, max_position_embeddings=40, type_vocab_size=2, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, attn_implementation="eager", **kw)
    hf = transformers.BertForSequenceClassification(config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.save_pretrained(tmp_path, safe_serialization=True)
    ours, has_classifier = load_bert(tmp_path)
    assert has_classifier
    return hf, ours


def batch(vocab=100):
    """Three sequences of lengths 11, 7 and 4 (right-padded), two segments each."""
    lengths = [11, 7, 4]
    ids = torch.randint(1, vocab, (3, 11))
    mask = (torch.arange(11) < torch.tensor(lengths)[:, None]).long()
    types = (torch.arange(11) >= torch.tensor([6, 4, 2])[:, None]).long() * mask
    return ids * mask, mask, types


def max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("train", [False, True])
def test_parity_with_transformers(tmp_path, name, train):
    hf, ours = hf_model(tmp_path, **CONFIGS[name])
    hf.train(train), ours.train(train)
    ids, mask, types = batch()
    n = hf.config.num_hidden_layers
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True, output_attentions=True)
        out = ours(ids, mask, types, output_hidden_states=True, attention_layers=range(1, n + 1))
        fused = ours(ids, mask, types, output_hidden_states=True)  # every layer on the SDPA path
    assert out.logits.shape == (3, CONFIGS[name]["num_labels"])
    assert max_diff(out.logits, ref.logits) < TOL
    assert len(out.hidden_states) == len(ref.hidden_states) == n + 1
    for ho, hr, hf_ in zip(out.hidden_states, ref.hidden_states, fused.hidden_states):
        assert max_diff(ho, hr) < TOL
        assert max_diff(hf_, hr) < TOL
    assert max_diff(fused.logits, ref.logits) < TOL
    assert fused.attentions == {} and fused.scores == {}
    assert sorted(out.attentions) == sorted(out.scores) == list(range(1, n + 1))
    pad = ~mask.bool()[:, None, None, :]
    for l in range(1, n + 1):
        assert max_diff(out.attentions[l], ref.attentions[l - 1]) < TOL
        # scores come without the padding mask: finite at padded keys, and masking them reproduces HF
        scores = out.scores[l]
        assert scores.abs().max() < 100
        assert max_diff(scores.masked_fill(pad, float("-inf")).softmax(-1), ref.attentions[l - 1]) < TOL


def test_cpu_training_path_matches_transformers(tmp_path):
    """In training on the CPU, attention dropout moves every layer to the explicit path
    (kd_ref.bert.dropout, not SDPA's fallback). With a probability too small to drop anything
    (round(p * 2^16) = 0) it must give HF's dropout-free values, and maps only where asked."""
    hf, ours = hf_model(tmp_path, **CONFIGS["odd"])
    for m in ours.modules():
        for name in ("p_drop", "p_drop_attn"):
            if hasattr(m, name):
                setattr(m, name, 1e-9)
    hf.train(), ours.train()
    ids, mask, types = batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, token_type_ids=types, output_hidden_states=True)
        out = ours(ids, mask, types, output_hidden_states=True, attention_layers=[2])
    assert max_diff(out.logits, ref.logits) < TOL
    assert all(max_diff(a, b) < TOL for a, b in zip(out.hidden_states, ref.hidden_states))
    assert list(out.attentions) == list(out.scores) == [2]


def test_cpu_dropout_mask():
    """kd_ref.bert.dropout: drop rate q = round(p 2^16) / 2^16 in every one of the four 16-bit
    lanes of a 64-bit draw (a lane short of random bits would drop too little or too much),
    kept values scaled by 1 / (1 - q), the same mask in the gradient, seeded by manual_seed."""
    n, p = 1 << 20, 0.1
    q = round(p * 2 ** 16) / 2 ** 16
    x = torch.ones(n, requires_grad=True)
    torch.manual_seed(0)
    y = dropout(x, p, True)
    dropped = y == 0
    for lane in range(4):
        rate = dropped[lane::4].float().mean().item()
        assert abs(rate - q) < 5 * (q * (1 - q) / (n / 4)) ** 0.5, (lane, rate)
    assert torch.equal(y[~dropped], torch.full_like(y[~dropped], 1 / (1 - q)))
    g = torch.randn(n)
    y.backward(g)
    assert torch.equal(x.grad, g * y.detach())
    torch.manual_seed(0)
    assert torch.equal(dropout(x, p, True), y)
    assert not torch.equal(dropout(x, p, True), y)
    odd = torch.randn(3, 5, 7)
    assert dropout(odd, p, True).shape == odd.shape
    assert dropout(odd, p, False) is odd and torch.equal(dropout(odd, 0.0, True), odd)
    assert (dropout(odd, 1.0, True) == 0).all()


def test_bool_mask_and_default_token_types(tmp_path):
    hf, ours = hf_model(tmp_path, **CONFIGS["regression"])
    hf.eval(), ours.eval()
    ids, mask, _ = batch()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).logits
        assert max_diff(ours(ids, mask.bool()).logits, ref) < TOL


def test_gradients_flow(tmp_path):
    _, ours = hf_model(tmp_path, **CONFIGS["odd"])
    ours.train()
    ids, mask, types = batch()
    out = ours(ids, mask, types, output_hidden_states=True, attention_layers=[2])
    loss = out.logits.square().sum() + out.hidden_states[3].square().mean() + out.scores[2].square().mean()
    loss.backward()
    for name, p in ours.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert ours.embeddings.word.weight.grad[0].abs().sum() == 0  # padding_idx row stays fixed, as in HF


def test_dropout_active_in_training():
    model = Bert(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    ids, mask, types = batch()
    model.train()
    a, b = model(ids, mask, types, attention_layers=[1]).logits, model(ids, mask, types, attention_layers=[1]).logits
    assert max_diff(a, b) > 1e-6
    model.eval()
    assert max_diff(model(ids, mask, types).logits, model(ids, mask, types).logits) == 0


def test_fresh_init_like_hf():
    model = Bert(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    assert abs(model.layers[0].qkv.weight.std().item() - 0.02) < 0.002
    assert model.layers[0].qkv.bias.abs().sum() == 0 and model.classifier.bias.abs().sum() == 0
    assert (model.layers[1].ffn_norm.weight == 1).all() and (model.embeddings.norm.bias == 0).all()
    assert model.embeddings.word.weight[0].abs().sum() == 0


def test_compiles_without_graph_breaks():
    model = Bert(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    ids, mask, types = batch()
    compiled = torch.compile(model, backend="eager", fullgraph=True)  # fullgraph: any graph break raises
    for train in (True, False):  # dropout on and off
        model.train(train)
        out = compiled(ids, mask, types, output_hidden_states=True, attention_layers=(2,))
        assert len(out.hidden_states) == 3 and list(out.scores) == [2]
    ref = model(ids, mask, types, output_hidden_states=True, attention_layers=(2,))
    assert max_diff(out.scores[2], ref.scores[2]) < 1e-6 and max_diff(out.logits, ref.logits) < 1e-6


@pytest.mark.parametrize("num_labels", [3, 1])
def test_autocast_keeps_the_logits_at_full_precision(num_labels):
    """Under bf16 autocast (run.py on CUDA; the CPU's here) the head must not round the logits to
    bf16 (2^-9 of a few units): near convergence the losses measure logit differences not much
    larger. From the autocast forward's own [CLS] state the logits must be the fp32 head's up to
    fp32 rounding, and ResK against a teacher 0.05 away within 1e-3 of the fp32 path's value
    (bf16 logits: 0.8% to 12% off on these weights; at a gap of 0.01 fp32's own ResK is only
    good to ~1e-3). Compiled (fullgraph) it must give the same."""
    model = Bert(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, num_labels=num_labels)).eval()
    with torch.no_grad():
        model.classifier.weight.normal_(0, 1.0)  # logits of a trained head, a few units, not init's ~0.05
    ids, mask, types = batch()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.autocast("cpu", torch.bfloat16):
        out = model(ids, mask, types, output_hidden_states=True)
        compiled_logits = compiled(ids, mask, types).logits
    assert out.logits.dtype == compiled_logits.dtype == torch.float32
    assert torch.equal(compiled_logits, out.logits)
    with torch.no_grad():
        fp32 = model.classifier(torch.tanh(model.pooler(out.hidden_states[-1][:, 0].float())))
    assert max_diff(out.logits, fp32) < 1e-6
    teacher = fp32 + 0.05 * torch.randn_like(fp32)
    valid = torch.ones(len(ids), dtype=torch.bool)
    assert losses.resk(out.logits, teacher, valid).item() == pytest.approx(losses.resk(fp32, teacher, valid).item(),
                                                                          rel=1e-3)


def test_config_hf_dict():
    c = BertConfig(num_hidden_layers=3, num_labels=3, id2label={0: "a", 1: "b", 2: "c"})
    d = c.to_hf_dict()
    assert d["id2label"] == {"0": "a", "1": "b", "2": "c"} and d["label2id"] == {"a": 0, "b": 1, "c": 2}
    assert d["problem_type"] == "single_label_classification" and d["hidden_act"] == "gelu"
    assert BertConfig.from_hf_dict(d | {"some_new_hf_key": 1}) == c
    hf = transformers.BertConfig(**BertConfig(num_labels=1).to_hf_dict())
    assert hf.num_labels == 1 and hf.problem_type == "regression"
    assert BertConfig.from_hf_dict(hf.to_dict()).num_labels == 1
    with pytest.raises(KdError, match="hidden_act"):
        BertConfig.from_hf_dict({"hidden_act": "relu"})
    with pytest.raises(KdError, match="position_embedding_type"):
        BertConfig.from_hf_dict({"position_embedding_type": "relative_key"})


def test_attention_layers_out_of_range():
    model = Bert(BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64))
    ids, mask, types = batch()
    with pytest.raises(KdError, match="attention_layers"):
        model(ids, mask, types, attention_layers=[0])
    with pytest.raises(KdError, match="attention_layers"):
        model(ids, mask, types, attention_layers=[3])
