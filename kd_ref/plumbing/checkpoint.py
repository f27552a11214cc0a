"""Hugging Face checkpoint folders in and out: config.json + model.safetensors.

Tensor names follow HF BertForSequenceClassification ('bert.' prefix, separate
query/key/value); our Bert fuses q, k, v into one `qkv` Linear, so loading
concatenates them along the output dim and saving splits them again. Loading
accepts checkpoints as found in the wild: names with or without 'bert.',
LayerNorm 'gamma'/'beta' (original bert-base-uncased), with or without pooler,
classifier or MLM/NSP heads ('cls.*', ignored). Anything else that does not fit
the config is a KdError naming the tensor and the file.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError

from kd_ref.bert import Bert, BertConfig
from kd_ref.plumbing.disk import disk_full_error
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import default_mode, fsync

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# our module name inside a layer -> HF module name inside bert.encoder.layer.{i}
LAYER_NAMES = {
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
    "ffn_norm": "output.LayerNorm",
}
HEAD_NAMES = {"pooler": "bert.pooler.dense", "classifier": "classifier"}  # optional on load


def hf_names(num_layers: int) -> dict[str, list[str]]:
    """Our parameter name -> the HF tensors it is made of (several = concatenated along dim 0)."""
    names = {
        "embeddings.word.weight": ["bert.embeddings.word_embeddings.weight"],
        "embeddings.position.weight": ["bert.embeddings.position_embeddings.weight"],
        "embeddings.token_type.weight": ["bert.embeddings.token_type_embeddings.weight"],
    }
    for p in ("weight", "bias"):
        names[f"embeddings.norm.{p}"] = [f"bert.embeddings.LayerNorm.{p}"]
        for i in range(num_layers):
            hf = f"bert.encoder.layer.{i}."
            names[f"layers.{i}.qkv.{p}"] = [f"{hf}attention.self.{qkv}.{p}" for qkv in ("query", "key", "value")]
            names.update({f"layers.{i}.{ours}.{p}": [f"{hf}{theirs}.{p}"] for ours, theirs in LAYER_NAMES.items()})
        names.update({f"{ours}.{p}": [f"{theirs}.{p}"] for ours, theirs in HEAD_NAMES.items()})
    return names


def load_config(model_dir) -> BertConfig:
    path = Path(model_dir) / "config.json"
    try:
        config = BertConfig.from_hf_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise KdError(f"{path}: cannot read a BERT config ({type(e).__name__}: {e})") from None
    except KdError as e:
        raise KdError(f"{path}: {e}") from None
    _check_values(config, path)
    return config


def _check_values(c: BertConfig, path: Path) -> None:
    """config.json values a Bert can be built from: a string, null or 0 where a size belongs
    would otherwise surface as a TypeError or ZeroDivisionError deep inside torch."""
    def wrong(name: str, want: str):
        raise KdError(f"{path}: {name}={getattr(c, name)!r}, expected {want}")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)  # JSON true is a Python int

    def is_number(v) -> bool:
        return (is_int(v) or isinstance(v, float)) and math.isfinite(v)

    for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size", "num_labels"):
        if not (is_int(getattr(c, name)) and getattr(c, name) >= 1):
            wrong(name, "a positive integer")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if not (is_number(getattr(c, name)) and 0 <= getattr(c, name) < 1):
            wrong(name, "a probability in [0, 1)")
    for name in ("layer_norm_eps", "initializer_range"):
        if not (is_number(getattr(c, name)) and getattr(c, name) > 0):
            wrong(name, "a positive number")
    if c.pad_token_id is not None and not (is_int(c.pad_token_id) and 0 <= c.pad_token_id < c.vocab_size):
        wrong("pad_token_id", f"null or a token id in [0, vocab_size={c.vocab_size})")
    if c.hidden_size % c.num_attention_heads:
        wrong("hidden_size", f"a multiple of num_attention_heads={c.num_attention_heads}")


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, names normalised to HF BertForSequenceClassification's."""
    try:
        raw = safetensors.torch.load_file(path)
    except (OSError, SafetensorError) as e:
        raise KdError(f"{path}: cannot read safetensors file ({e})") from None
    heads = [k for k in raw if k.startswith("cls.")]
    if heads:
        print(f"{path}: ignored {len(heads)} MLM/NSP head tensors (cls.*)")
    tensors = {}
    for name, t in raw.items():
        if name.startswith("cls.") or name.endswith("position_ids"):  # pretraining heads; a constant buffer
            continue
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if not name.startswith(("bert.", "classifier.")):
            name = "bert." + name
        tensors[name] = t
    return tensors


def load_bert(model_dir, num_labels: int | None = None) -> tuple[Bert, bool]:
    """Bert from an HF folder; returns (model, has_classifier).

    num_labels overrides the config's. A classifier with another label count, or
    none at all, is freshly initialised (so is a missing pooler) and
    has_classifier is False: the model needs fine-tuning before its logits mean anything.
    """
    config = load_config(model_dir)
    if num_labels is not None and num_labels != config.num_labels:
        config = dataclasses.replace(config, num_labels=num_labels, id2label=None)
    path = Path(model_dir) / "model.safetensors"
    if not path.is_file():
        raise KdError(f"{path}: not found (for pytorch_model.bin run: python -m kd_ref.plumbing.checkpoint convert {model_dir})")
    tensors = _read_tensors(path)
    classifier = tensors.get("classifier.weight")
    if classifier is not None and classifier.shape[0] != config.num_labels:  # another task's head: start fresh
        for key in ("classifier.weight", "classifier.bias"):
            tensors.pop(key, None)
    model = Bert(config)
    params = dict(model.named_parameters())
    names = hf_names(config.num_hidden_layers)
    known = {hf for parts in names.values() for hf in parts}
    for hf in tensors:
        if hf not in known:
            raise KdError(f"{path}: unexpected tensor {hf} (not part of the {config.num_hidden_layers}-layer BERT in config.json)")
    state = {}
    for ours, parts in names.items():
        present = [hf for hf in parts if hf in tensors]
        optional = ours.split(".")[0] in HEAD_NAMES
        if not present and optional:
            continue  # keep the fresh init
        if len(present) < len(parts):
            missing = next(hf for hf in parts if hf not in tensors)
            raise KdError(f"{path}: missing tensor {missing}")
        want = params[ours].shape
        want = (want[0] // len(parts), *want[1:])  # shape of one of q, k, v
        for hf in parts:
            if not tensors[hf].is_floating_point():  # load_state_dict would silently cast integers
                raise KdError(f"{path}: tensor {hf} has dtype {tensors[hf].dtype}, expected floating point")
            if tensors[hf].shape != want:
                raise KdError(f"{path}: tensor {hf} has shape {list(tensors[hf].shape)}, config wants {list(want)}")
        state[ours] = torch.cat([tensors[hf] for hf in parts])
    model.load_state_dict(state, strict=False)
    has_classifier = all(f"{head}.{p}" in state for head in HEAD_NAMES for p in ("weight", "bias"))
    return model, has_classifier


def _to_hf(model: Bert) -> dict[str, torch.Tensor]:
    """Our state dict under HF names, q/k/v split apart again."""
    params = dict(model.named_parameters())
    tensors = {}
    for ours, parts in hf_names(model.config.num_hidden_layers).items():
        # safetensors wants contiguous tensors that share no storage
        tensors.update(zip(parts, (t.detach().cpu().clone() for t in params[ours].chunk(len(parts)))))
    return tensors


def save_bert(model: Bert, out_dir, tokenizer_dir=None, extra: dict[str, str] | None = None) -> None:
    """Write an HF folder (config.json, model.safetensors, tokenizer files found in tokenizer_dir,
    and `extra`: more text files, name -> content).

    out_dir is replaced as a whole and atomically: everything is written into a
    sibling temp folder first, so a crash never leaves a half-written folder or file.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / "config.json").exists():
        raise KdError(f"{out}: exists and is not a checkpoint folder; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    writes = {"config.json": lambda p: p.write_text(json.dumps(model.config.to_hf_dict(), indent=2) + "\n"),
              "model.safetensors": lambda p: safetensors.torch.save_file(_to_hf(model), p, metadata={"format": "pt"})}
    for name in TOKENIZER_FILES:
        if tokenizer_dir is not None and (Path(tokenizer_dir) / name).is_file():
            writes[name] = lambda p, src=Path(tokenizer_dir) / name: shutil.copyfile(src, p)
    for name, text in (extra or {}).items():
        writes[name] = lambda p, text=text: p.write_text(text)
    with disk_full_error(out):
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        default_mode(tmp)
        for name, write in writes.items():
            with disk_full_error(out / name):  # a full disk: one line naming the file (kd_ref/plumbing/disk.py)
                write(tmp / name)
                default_mode(tmp / name)
                fsync(tmp / name)
        if out.exists():  # a directory cannot be renamed onto a non-empty one: move the old one aside
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def convert_bin_to_safetensors(model_dir) -> Path:
    """model_dir/pytorch_model.bin -> model_dir/model.safetensors (names kept as they are)."""
    src, dst = Path(model_dir) / "pytorch_model.bin", Path(model_dir) / "model.safetensors"
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load raises many types for a missing, corrupt or unsafe file
        raise KdError(f"{src}: cannot load ({type(e).__name__}: {e})") from None
    # tied weights (MLM decoder = word embeddings) share storage, which safetensors refuses
    tensors = {k: v.clone().contiguous() for k, v in state.items() if isinstance(v, torch.Tensor)}
    tmp = dst.with_name(dst.name + ".tmp")
    safetensors.torch.save_file(tensors, tmp, metadata={"format": "pt"})
    default_mode(tmp)
    os.replace(tmp, dst)
    return dst


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m kd_ref.plumbing.checkpoint", description="HF BERT checkpoint tools")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("convert", help="pytorch_model.bin -> model.safetensors in DIR").add_argument("dir")
    args = parser.parse_args()
    try:
        print(convert_bin_to_safetensors(args.dir))
    except KdError as e:
        sys.exit(f"error: {e}")
