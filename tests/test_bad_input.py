"""Bad user input ends in one KdError line naming the file and line, tensor or flag.

Cases already covered elsewhere are not repeated here: test_glue.py (TSV column
count, unknown label, empty, header only, missing header, non-UTF-8, NUL bytes,
CRLF/BOM, quotes, missing file/split/folder, unknown task, random bytes),
test_checkpoint.py (missing or non-JSON config.json, truncated or missing
model.safetensors, missing/unexpected/misshapen tensors, more layers in config.json),
test_tokenizer.py (folder without vocab, vocab without special tokens, --max-len)
test_run.py (--task nope through run.py) and test_own_data.py (your own CSV and JSON Lines files,
task.json, --augment).
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer, models

from kd_ref.bert import Bert, BertConfig
from kd_ref.data.glue import get_task, read_split
from kd_ref.data.tokenizer import BertTokenizer
from kd_ref.plumbing.checkpoint import load_bert, load_config, save_bert
from kd_ref.plumbing.errors import KdError

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=32)
RTE_HEADER = "index\tsentence1\tsentence2\tlabel\n"
# hypothesis runs many examples in one tmp_path; each example rewrites the files it reads
FAST = settings(max_examples=200, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def one_line_error(call, *names) -> str:
    """The KdError message of call(); asserts it is one line and contains every name."""
    with pytest.raises(KdError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    for name in names:
        assert str(name) in message, (name, message)
    return message


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer, 16-wide random BERT with MiniLM's tokenizer files."""
    d = tmp_path_factory.mktemp("ckpt") / "tiny"
    torch.manual_seed(0)
    save_bert(Bert(BertConfig(**TINY)), d, tokenizer_dir=minilm_dir)
    return d


def variant(src: Path, dst: Path, config: dict | None = None, files: dict[str, bytes | None] | None = None) -> Path:
    """A copy of checkpoint folder src with config.json keys changed and files replaced (None: removed)."""
    shutil.copytree(src, dst)
    if config is not None:
        d = json.loads((dst / "config.json").read_text())
        (dst / "config.json").write_text(json.dumps(d | config))
    for name, content in (files or {}).items():
        if content is None:
            (dst / name).unlink()
        else:
            (dst / name).write_bytes(content)
    return dst


# ---- TSV files ----------------------------------------------------------------------------------

def test_unreadable_tsv(tmp_path, monkeypatch):
    path = tmp_path / "RTE" / "dev.tsv"
    path.parent.mkdir()
    path.write_text(RTE_HEADER + "0\ta\tb\tentailment\n")

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)  # we run as root, where chmod 000 does not stop reads
    message = one_line_error(lambda: read_split(tmp_path, get_task("rte"), "dev"), path)
    assert message.endswith("cannot read (Permission denied)")


# any text but the separators the format reserves, with quote characters made frequent
field_text = st.text(st.one_of(st.sampled_from("\"'"),
                               st.characters(exclude_characters="\t\n\r\0", exclude_categories=("Cs",))),
                     max_size=12)


@FAST
@given(rows=st.lists(st.tuples(field_text, field_text,
                               st.one_of(st.sampled_from(["entailment", "not_entailment"]), field_text)),
                     min_size=1, max_size=6),
       newline=st.sampled_from(["\n", "\r\n"]))
def test_rows_with_any_labels_parse_or_name_the_first_bad_line(tmp_path, rows, newline):
    rte = get_task("rte")
    path = tmp_path / "RTE" / "dev.tsv"
    path.parent.mkdir(exist_ok=True)
    lines = [RTE_HEADER.rstrip("\n")] + [f"{i}\t{a}\t{b}\t{y}" for i, (a, b, y) in enumerate(rows)]
    path.write_bytes(newline.join(lines).encode() + newline.encode())
    bad = [i for i, (_, _, y) in enumerate(rows) if y not in rte.labels]
    if bad:
        line = bad[0] + 2  # 1-based, after the header
        one_line_error(lambda: read_split(tmp_path, rte, "dev"), f"{path}:{line}: unknown rte label {rows[bad[0]][2]!r}")
    else:
        examples = read_split(tmp_path, rte, "dev")
        assert [(e.text_a, e.text_b, rte.labels[e.label]) for e in examples] == rows


# ---- checkpoints --------------------------------------------------------------------------------

@pytest.mark.parametrize("change,key", [
    ({"num_hidden_layers": "2"}, "num_hidden_layers"),      # a string
    ({"num_hidden_layers": 2.0}, "num_hidden_layers"),      # a float
    ({"num_hidden_layers": True}, "num_hidden_layers"),     # JSON true, an int to Python
    ({"num_hidden_layers": 0}, "num_hidden_layers"),
    ({"hidden_size": None}, "hidden_size"),
    ({"hidden_size": 15}, "hidden_size"),                   # not a multiple of the 2 heads
    ({"num_attention_heads": 0}, "num_attention_heads"),
    ({"vocab_size": -1}, "vocab_size"),
    ({"id2label": {}, "num_labels": 0}, "num_labels"),
    ({"hidden_dropout_prob": 1.5}, "hidden_dropout_prob"),
    ({"attention_probs_dropout_prob": "0.1"}, "attention_probs_dropout_prob"),
    ({"layer_norm_eps": "x"}, "layer_norm_eps"),
    ({"pad_token_id": 40}, "pad_token_id"),                 # outside the 40-token vocabulary
])
def test_config_values_name_the_key(tiny_ckpt, tmp_path, change, key):
    d = variant(tiny_ckpt, tmp_path / "ckpt", config=change)
    message = one_line_error(lambda: load_bert(d), d / "config.json", f"{key}=")
    assert "expected" in message


@settings(max_examples=100, deadline=None, database=None)
@given(change=st.dictionaries(
    st.sampled_from(["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                     "max_position_embeddings", "type_vocab_size", "pad_token_id", "layer_norm_eps",
                     "hidden_dropout_prob", "initializer_range", "num_labels"]),
    st.one_of(st.integers(-2, 6), st.floats(-1, 2) | st.just(float("nan")), st.booleans(), st.none(),
              st.text(max_size=3), st.lists(st.integers(), max_size=2)),
    max_size=4))
def test_any_config_values_build_a_model_or_raise_kderror(tmp_path_factory, change):
    """Whatever values config.json holds, load_config either rejects them or a Bert builds and runs."""
    d = tmp_path_factory.mktemp("cfg")
    (d / "config.json").write_text(json.dumps(BertConfig(**TINY).to_hf_dict() | change | {"id2label": None}))
    try:
        config = load_config(d)
    except KdError as e:
        assert str(d / "config.json") in str(e) and "\n" not in str(e)
        return
    model = Bert(config).eval()
    length = min(4, config.max_position_embeddings)
    with torch.no_grad():
        logits = model(torch.zeros(1, length, dtype=torch.long), torch.ones(1, length, dtype=torch.long)).logits
    assert logits.shape == (1, config.num_labels)


@pytest.mark.parametrize("change,tensor", [
    ({"hidden_size": 32}, "tensor bert.embeddings.word_embeddings.weight has shape [40, 16], config wants [40, 32]"),
    ({"vocab_size": 41}, "tensor bert.embeddings.word_embeddings.weight has shape [40, 16], config wants [41, 16]"),
    ({"intermediate_size": 30}, "tensor bert.encoder.layer.0.intermediate.dense.weight has shape [24, 16]"),
    ({"num_hidden_layers": 1}, "unexpected tensor bert.encoder.layer.1."),  # more layers: test_checkpoint.py
])
def test_config_that_does_not_match_the_tensors(tiny_ckpt, tmp_path, change, tensor):
    d = variant(tiny_ckpt, tmp_path / "ckpt", config=change)
    one_line_error(lambda: load_bert(d), f"{d / 'model.safetensors'}: {tensor}")


def test_integer_tensors(tiny_ckpt, tmp_path):
    d = variant(tiny_ckpt, tmp_path / "ckpt")
    tensors = safetensors.torch.load_file(d / "model.safetensors")
    name = "bert.encoder.layer.1.output.dense.bias"
    tensors[name] = tensors[name].to(torch.int64)
    safetensors.torch.save_file(tensors, d / "model.safetensors")
    one_line_error(lambda: load_bert(d), d / "model.safetensors", f"tensor {name} has dtype torch.int64")


@FAST
@given(data=st.data())
def test_corrupt_safetensors(tiny_ckpt, tmp_path, data):
    """Random bytes, a cut-off file, or a header length followed by garbage: a KdError naming the file."""
    whole = (tiny_ckpt / "model.safetensors").read_bytes()
    garbage = data.draw(st.binary(max_size=300))
    content = data.draw(st.sampled_from([
        garbage,
        whole[: data.draw(st.integers(0, len(whole) - 1))],
        len(garbage).to_bytes(8, "little") + garbage,
    ]))
    d = tmp_path / "ckpt"
    if not d.exists():
        shutil.copytree(tiny_ckpt, d)
    (d / "model.safetensors").write_bytes(content)
    one_line_error(lambda: load_bert(d), d / "model.safetensors")


# ---- tokenizer files ----------------------------------------------------------------------------

def not_bert_tokenizer_json() -> bytes:
    """A valid tokenizer.json whose vocabulary has none of BERT's special tokens."""
    tok = Tokenizer(models.WordLevel({"hello": 0, "<unk>": 1, "<pad>": 2}, unk_token="<unk>"))
    return tok.to_str().encode()


VOCAB_ONLY = {"tokenizer.json": None}  # from_dir reads vocab.txt only when tokenizer.json is absent


@pytest.mark.parametrize("files,culprit,message", [
    ({"tokenizer.json": b"{not json"}, "tokenizer.json", "cannot read"),
    ({"tokenizer.json": b"\xff\xfe\x00\x01binary"}, "tokenizer.json", "cannot read"),
    ({"tokenizer.json": not_bert_tokenizer_json()}, "tokenizer.json", "special tokens ['[PAD]', '[UNK]'"),
    (VOCAB_ONLY | {"vocab.txt": b"[PAD]\n[UNK]\ncaf\xe9\n"}, "vocab.txt", "cannot read"),  # Latin-1, not UTF-8
    (VOCAB_ONLY | {"tokenizer_config.json": b"{not json"}, "tokenizer_config.json", "cannot read"),
    (VOCAB_ONLY | {"tokenizer_config.json": b'{"do_lower_case": "no"}'}, "tokenizer_config.json",
     "do_lower_case='no', expected true or false"),
])
def test_bad_tokenizer_files(tiny_ckpt, tmp_path, files, culprit, message):
    d = variant(tiny_ckpt, tmp_path / "ckpt", files=files)
    one_line_error(lambda: BertTokenizer.from_dir(d), f"{d / culprit}: {message}")


def test_missing_checkpoint_folder(tmp_path):
    one_line_error(lambda: BertTokenizer.from_dir(tmp_path / "nowhere"), f"{tmp_path / 'nowhere'}: no such folder")


# ---- through the command line -------------------------------------------------------------------

@pytest.fixture(scope="module")
def glue(tmp_path_factory) -> Path:
    """GLUE-like folders: good/RTE is well formed, bad/RTE/train.tsv has an unknown label on line 3."""
    root = tmp_path_factory.mktemp("glue")
    good = RTE_HEADER + "0\tA man sleeps.\tA man rests.\tentailment\n1\tIt rains.\tIt is dry.\tnot_entailment\n"
    for name, train in [("good", good), ("bad", good.replace("\tnot_entailment\n", "\tmaybe\n"))]:
        (root / name / "RTE").mkdir(parents=True)
        (root / name / "RTE" / "train.tsv").write_text(train)
        (root / name / "RTE" / "dev.tsv").write_text(good)
    return root


def run_py(tmp_path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "run.py"), "--task", "rte", "--out", str(tmp_path / "out"),
                           *argv], capture_output=True, text=True, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("case", ["bad_tsv", "missing_teacher", "flag_out_of_range"])
def test_run_py_prints_one_error_line(glue, minilm_dir, tmp_path, case):
    argv, names = {
        "bad_tsv": (["--data-dir", glue / "bad", "--teacher", minilm_dir],
                    [f"{glue / 'bad' / 'RTE' / 'train.tsv'}:3: unknown rte label 'maybe'"]),
        "missing_teacher": (["--data-dir", glue / "good", "--teacher", tmp_path / "nowhere"],
                            [f"{tmp_path / 'nowhere'}: no such folder"]),
        "flag_out_of_range": (["--data-dir", glue / "good", "--teacher", minilm_dir, "--epochs", "0"],
                              ["--epochs 0: must be at least 1"]),
    }[case]
    proc = run_py(tmp_path, *map(str, argv))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for name in names:
        assert name in proc.stderr
    assert not (tmp_path / "out" / "teacher").exists()  # failed before any training


def test_run_py_debug_shows_the_traceback(glue, minilm_dir, tmp_path):
    proc = run_py(tmp_path, "--data-dir", str(glue / "bad"), "--teacher", str(minilm_dir), "--debug")
    assert proc.returncode not in (0, 2)  # an uncaught exception, not the clean exit
    assert "Traceback (most recent call last)" in proc.stderr
    assert re.search(r"KdError: .*train\.tsv:3: unknown rte label 'maybe'", proc.stderr)
