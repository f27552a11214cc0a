import json
import shutil

import pytest
from transformers import BertTokenizerFast

from kd_ref.data.batching import make_batches
from kd_ref.data.glue import Example, get_task, read_split
from kd_ref.data.tokenizer import BertTokenizer
from kd_ref.plumbing.errors import KdError

TASKS = ["rte", "mrpc", "sst2", "cola", "stsb"]


@pytest.fixture(scope="module")
def dev_sets(glue_dir):
    return {name: read_split(glue_dir, get_task(name), "dev") for name in TASKS}


def vocab_only(minilm_dir, folder, lowercase=None):
    """vocab.txt + tokenizer_config.json without tokenizer.json: the vocab.txt path of from_dir."""
    folder.mkdir()
    shutil.copyfile(minilm_dir / "vocab.txt", folder / "vocab.txt")
    config = json.loads((minilm_dir / "tokenizer_config.json").read_text())
    if lowercase is not None:
        config["do_lower_case"] = lowercase
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def assert_same_as_hf(folder, dev_sets, max_len):
    ours = BertTokenizer.from_dir(folder, max_len=max_len)
    hf = BertTokenizerFast.from_pretrained(str(folder))
    assert ours.pad_id == hf.pad_token_id and ours.vocab_size == len(hf)
    lengths = []
    for name, examples in dev_sets.items():
        encoded = ours.encode(examples)
        pairs = examples[0].text_b is not None
        ref = hf([e.text_a for e in examples], [e.text_b for e in examples] if pairs else None,
                 truncation=True, max_length=max_len)
        assert [ids for ids, _ in encoded] == ref["input_ids"], name
        assert [types for _, types in encoded] == ref["token_type_ids"], name
        assert [[1] * len(ids) for ids, _ in encoded] == ref["attention_mask"], name
        lengths += [len(ids) for ids, _ in encoded]
    assert max(lengths) == max_len  # truncation happened
    assert min(lengths) < max_len  # no padding, though MiniLM's tokenizer.json asks for Fixed(128)


@pytest.mark.parametrize("max_len", [128, 16])
def test_same_as_hf_from_tokenizer_json(minilm_dir, dev_sets, max_len):
    assert (minilm_dir / "tokenizer.json").is_file()
    assert_same_as_hf(minilm_dir, dev_sets, max_len)


@pytest.mark.parametrize("max_len", [128, 16])
def test_same_as_hf_from_vocab_txt(minilm_dir, dev_sets, tmp_path, max_len):
    assert_same_as_hf(vocab_only(minilm_dir, tmp_path / "vocab"), dev_sets, max_len)


def test_do_lower_case_false(minilm_dir, dev_sets, tmp_path):
    folder = vocab_only(minilm_dir, tmp_path / "cased", lowercase=False)
    assert_same_as_hf(folder, {"rte": dev_sets["rte"]}, 128)
    cased, uncased = BertTokenizer.from_dir(folder), BertTokenizer.from_dir(minilm_dir)
    text = [Example("x", "Hello World", None, None)]
    assert cased.encode(text) != uncased.encode(text)


def test_special_cases_same_as_hf(minilm_dir, tmp_path):
    texts = ["a literal [SEP] and [MASK] stay one token", "Café naïve ÉCOLE", "汉字 mixed with latin",
             "control\x00chars\u200b and \ttabs", "", "supercalifragilisticexpialidocious" * 5]
    for folder in [minilm_dir, vocab_only(minilm_dir, tmp_path / "vocab")]:
        ours, hf = BertTokenizer.from_dir(folder), BertTokenizerFast.from_pretrained(str(folder))
        encoded = ours.encode([Example("x", t, texts[0], None) for t in texts])
        ref = hf(texts, [texts[0]] * len(texts), truncation=True, max_length=128)
        assert [ids for ids, _ in encoded] == ref["input_ids"]
        assert [types for _, types in encoded] == ref["token_type_ids"]


def test_longest_first_truncation(minilm_dir):
    tok = BertTokenizer.from_dir(minilm_dir, max_len=16)
    long, short = "one two three four five six seven eight nine ten eleven twelve", "a b c"
    (ids, types), = tok.encode([Example("x", long, short, None)])
    # the longer text gives up tokens; the short one keeps all 3 and [SEP]
    assert len(ids) == 16 and types == [0] * 12 + [1] * 4
    (ids2, types2), = tok.encode([Example("x", short, long, None)])
    assert len(ids2) == 16 and types2 == [0] * 5 + [1] * 11


def test_encode_then_batch_equals_hf_padding(minilm_dir, dev_sets):
    # batches pad with pad_id to the bucket length: rows equal HF's padding='max_length' to that length
    tok = BertTokenizer.from_dir(minilm_dir, max_len=128)
    hf = BertTokenizerFast.from_pretrained(str(minilm_dir))
    examples = dev_sets["rte"]
    batches = make_batches(tok.encode(examples), [e.label for e in examples], 8, 128, shuffle=False, pad_id=tok.pad_id)
    for b in batches:
        length = b.input_ids.shape[1]
        for row, i in enumerate(b.index.tolist()):
            # each example sits in a bucket that holds it whole, so HF's max_length=length cuts nothing
            ref = hf(examples[i].text_a, examples[i].text_b, truncation=True, max_length=length, padding="max_length")
            assert b.input_ids[row].tolist() == ref["input_ids"]
            assert b.token_type_ids[row].tolist() == ref["token_type_ids"]
            assert b.attention_mask[row].tolist() == ref["attention_mask"]


def test_errors(tmp_path, minilm_dir):
    with pytest.raises(KdError, match=f"{tmp_path}: no tokenizer.json or vocab.txt"):
        BertTokenizer.from_dir(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\nhello\n")
    with pytest.raises(KdError, match=r"vocab.txt: special tokens \['\[CLS\]', '\[SEP\]', '\[MASK\]'\] missing"):
        BertTokenizer.from_dir(tmp_path)
    with pytest.raises(KdError, match="--max-len 3 is too short"):
        BertTokenizer.from_dir(minilm_dir, max_len=3)
