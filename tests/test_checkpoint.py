"""kd_ref.plumbing.checkpoint: HF folders in (name variants, errors) and out (transformers reads them back)."""
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers

from kd_ref.bert import Bert, BertConfig
from kd_ref.plumbing import checkpoint
from kd_ref.plumbing.checkpoint import convert_bin_to_safetensors, load_bert, load_config, save_bert
from kd_ref.plumbing.errors import KdError

ROOT = Path(__file__).resolve().parents[1]
SIZES = dict(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=24)


def hf_config(**kw):
    return transformers.BertConfig(**SIZES, attn_implementation="eager", **kw)


def write_ckpt(d: Path, tensors: dict, config: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(json.dumps(config))
    safetensors.torch.save_file(tensors, d / "model.safetensors")
    return d


@pytest.fixture
def hf_ckpt(tmp_path):
    """(HF tensors, HF config dict, HF model) of a random BertForSequenceClassification with 3 labels."""
    hf = transformers.BertForSequenceClassification(hf_config(num_labels=3)).eval()
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    tensors = safetensors.torch.load_file(tmp_path / "hf" / "model.safetensors")
    return tensors, json.loads((tmp_path / "hf" / "config.json").read_text()), hf


def inputs():
    """The same padded batch every call."""
    ids = torch.randint(1, SIZES["vocab_size"], (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[1] * 9, [1] * 5 + [0] * 4])
    return ids * mask, mask


def hidden(model: Bert):
    model.eval()
    with torch.no_grad():
        return model(*inputs(), output_hidden_states=True).hidden_states


def same_encoder(a: Bert, b: Bert):
    return all(torch.equal(x, y) for x, y in zip(hidden(a), hidden(b)))


def test_name_variants_load_the_same_model(tmp_path, hf_ckpt):
    tensors, config, _ = hf_ckpt
    reference, has_classifier = load_bert(tmp_path / "hf")
    assert has_classifier and reference.classifier.out_features == 3
    no_prefix = {k.removeprefix("bert."): v for k, v in tensors.items()}
    gamma_beta = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
                  for k, v in no_prefix.items()}
    with_buffer = tensors | {"bert.embeddings.position_ids": torch.arange(24)[None]}
    for name, variant in [("no_prefix", no_prefix), ("gamma_beta", gamma_beta), ("buffer", with_buffer)]:
        model, has_classifier = load_bert(write_ckpt(tmp_path / name, variant, config))
        assert has_classifier, name
        assert same_encoder(model, reference), name
        assert torch.equal(model.classifier.weight, reference.classifier.weight), name


def test_pretraining_heads_ignored(tmp_path, capsys):
    hf = transformers.BertForPreTraining(hf_config()).eval()
    hf.save_pretrained(tmp_path, safe_serialization=True)
    n_heads = sum(k.startswith("cls.") for k in safetensors.torch.load_file(tmp_path / "model.safetensors"))
    model, has_classifier = load_bert(tmp_path)
    assert n_heads > 0 and f"ignored {n_heads} " in capsys.readouterr().out
    assert not has_classifier  # pooler loaded, classifier fresh
    assert torch.equal(model.pooler.weight, hf.bert.pooler.dense.weight)
    ids, mask = inputs()
    with torch.no_grad():
        ref = hf.bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    for ours, theirs in zip(hidden(model), ref):
        assert (ours - theirs).abs().max() < 1e-5


def test_missing_pooler_and_classifier(tmp_path):
    transformers.BertModel(hf_config(), add_pooling_layer=False).save_pretrained(tmp_path, safe_serialization=True)
    model, has_classifier = load_bert(tmp_path, num_labels=4)
    assert not has_classifier and model.classifier.out_features == 4
    assert model.pooler.bias.abs().sum() == 0 and model.pooler.weight.std() > 0  # freshly initialised


def test_num_labels_override(tmp_path, hf_ckpt):
    _, has_classifier = load_bert(tmp_path / "hf", num_labels=3)
    assert has_classifier
    model, has_classifier = load_bert(tmp_path / "hf", num_labels=2)
    assert not has_classifier and model.classifier.out_features == 2 and model.config.id2label is None


@pytest.mark.parametrize("case", ["missing", "unexpected", "shape", "layers"])
def test_tensor_errors_name_the_tensor(tmp_path, hf_ckpt, case):
    tensors, config, _ = hf_ckpt
    name = "bert.encoder.layer.1.attention.self.key.bias"
    if case == "missing":
        del tensors[name]
    elif case == "unexpected":
        name = "bert.encoder.layer.0.attention.self.rotary.weight"
        tensors[name] = torch.zeros(3)
    elif case == "shape":
        tensors[name] = torch.zeros(31)
    else:  # config says 3 layers, the file has 2
        config["num_hidden_layers"] = 3
        name = "bert.encoder.layer.2."
    d = write_ckpt(tmp_path / case, tensors, config)
    with pytest.raises(KdError, match=re.escape(str(d / "model.safetensors")) + ".*" + re.escape(name)):
        load_bert(d)


def test_file_errors_name_the_file(tmp_path, hf_ckpt):
    with pytest.raises(KdError, match=re.escape(str(tmp_path / "none" / "config.json"))):
        load_bert(tmp_path / "none")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(KdError, match=re.escape(str(tmp_path / "bad" / "config.json"))):
        load_config(tmp_path / "bad")
    (tmp_path / "bad" / "config.json").write_text(json.dumps({"hidden_act": "relu"}))
    with pytest.raises(KdError, match="config.json: hidden_act"):
        load_config(tmp_path / "bad")
    st = tmp_path / "hf" / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])
    with pytest.raises(KdError, match=re.escape(str(st))):
        load_bert(tmp_path / "hf")
    st.unlink()
    with pytest.raises(KdError, match=re.escape(str(st))):
        load_bert(tmp_path / "hf")


def test_save_round_trip_through_transformers(tmp_path):
    model = Bert(BertConfig(**SIZES, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.txt").write_text("[PAD]\n[UNK]\n")
    save_bert(model, tmp_path / "out", tokenizer_dir=tmp_path / "tok")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors", "vocab.txt"]

    log = io.StringIO()  # transformers reports missing/unexpected weights through its logger
    handler = logging.StreamHandler(log)
    logging.getLogger("transformers").addHandler(handler)
    try:
        hf, info = transformers.BertForSequenceClassification.from_pretrained(
            tmp_path / "out", attn_implementation="eager", output_loading_info=True)
        report = log.getvalue()
        # control: the capture does see a report when weights are missing
        transformers.BertModel(hf_config(), add_pooling_layer=False).save_pretrained(tmp_path / "bare")
        transformers.BertForSequenceClassification.from_pretrained(tmp_path / "bare")
        assert "MISSING" in log.getvalue()
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert "MISSING" not in report and "UNEXPECTED" not in report and "MISMATCH" not in report
    assert not any(info.values()), info
    assert hf.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    ids, mask = inputs()
    hf.eval(), model.eval()
    with torch.no_grad():
        assert (hf(input_ids=ids, attention_mask=mask).logits - model(ids, mask).logits).abs().max() < 1e-5
    again, has_classifier = load_bert(tmp_path / "out")
    assert has_classifier and same_encoder(again, model) and again.config == model.config


def test_save_is_atomic(tmp_path, monkeypatch):
    old = Bert(BertConfig(**SIZES))
    save_bert(old, tmp_path / "out")
    before = (tmp_path / "out" / "model.safetensors").read_bytes()

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(checkpoint.safetensors.torch, "save_file", crash)
    with pytest.raises(RuntimeError):
        save_bert(Bert(BertConfig(**SIZES)), tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folders left behind
    monkeypatch.undo()
    save_bert(Bert(BertConfig(**SIZES)), tmp_path / "out")  # replaces an existing checkpoint
    assert (tmp_path / "out" / "model.safetensors").read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(KdError, match="not a checkpoint folder"):
        save_bert(old, tmp_path / "notes")


def test_saved_files_take_the_umask_like_any_other_file(tmp_path):
    """Teachers, students, checkpoints and caches are readable by whoever the umask lets read: a
    sweep's shared output folder (safetensors writes 0600, mkdtemp makes 0700 by itself)."""
    from kd_ref.plumbing.outputs import write_atomically
    from kd_ref.plumbing.resume import Checkpoints
    umask = os.umask(0o022)
    try:
        save_bert(Bert(BertConfig(**SIZES)), tmp_path / "teacher")
        (tmp_path / "run").mkdir()
        Checkpoints(tmp_path / "run", every=1, log=False).save({}, {"m": torch.nn.Linear(2, 2)}, {}, {})
        write_atomically(tmp_path / "cache.safetensors",
                         lambda p: safetensors.torch.save_file({"x": torch.zeros(2)}, p))
    finally:
        os.umask(umask)
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in tmp_path.rglob("*")}
    assert modes["teacher"] == modes["run/checkpoint"] == "0o755", modes
    assert {m for name, m in modes.items() if not (tmp_path / name).is_dir()} == {"0o644"}, modes


def test_convert_bin(tmp_path):
    hf = transformers.BertForPreTraining(hf_config())  # tied MLM decoder: shared storage in the .bin
    state = hf.state_dict()
    assert state["cls.predictions.decoder.weight"].data_ptr() == state["bert.embeddings.word_embeddings.weight"].data_ptr()
    hf.config.to_json_file(tmp_path / "config.json")
    torch.save(state, tmp_path / "pytorch_model.bin")
    assert convert_bin_to_safetensors(tmp_path) == tmp_path / "model.safetensors"
    tensors = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert tensors.keys() == state.keys() and all(torch.equal(tensors[k], state[k]) for k in state)
    model, _ = load_bert(tmp_path)
    assert torch.equal(model.layers[1].qkv.weight[32:64], hf.bert.encoder.layer[1].attention.self.key.weight)

    (tmp_path / "model.safetensors").unlink()
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "kd_ref.plumbing.checkpoint", "convert", str(tmp_path)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0 and (tmp_path / "model.safetensors").is_file(), run.stderr
    (tmp_path / "pytorch_model.bin").write_bytes(b"garbage")
    with pytest.raises(KdError, match="pytorch_model.bin"):
        convert_bin_to_safetensors(tmp_path)
