"""The embedded demo task: GLUE RTE layout, balanced, deterministic, fully in vocab, and
decidable only from both sentences together."""

import csv
import json
import re

import numpy as np
import pytest

from kd_ref.data.demo import COLOURS, write_demo_task
from kd_ref.plumbing.errors import KdError


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def words(text):
    """Word pieces as BERT's basic tokenizer splits them (lower case, punctuation apart)."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return write_demo_task(tmp_path_factory.mktemp("demo"), seed=0)


def test_layout_and_counts(demo):
    header = {"train": "index\tsentence1\tsentence2\tlabel", "dev": "index\tsentence1\tsentence2\tlabel",
              "test": "index\tsentence1\tsentence2"}
    for split, n in [("train", 2000), ("dev", 300), ("test", 300)]:
        path = demo / "RTE" / f"{split}.tsv"
        assert path.read_text().splitlines()[0] == header[split]
        rows = read_tsv(path)
        assert len(rows) == n
        assert [r["index"] for r in rows] == [str(i) for i in range(n)]
        assert all(len(r) == len(header[split].split("\t")) for r in rows)
    assert not (demo / "model" / "model.safetensors").exists()


def test_labels_balanced_and_pairs_distinct(demo):
    pairs = []
    for split in ["train", "dev"]:
        rows = read_tsv(demo / "RTE" / f"{split}.tsv")
        labels = [r["label"] for r in rows]
        assert set(labels) == {"entailment", "not_entailment"}
        assert labels.count("entailment") == len(rows) // 2
        pairs += [(r["sentence1"], r["sentence2"]) for r in rows]
    pairs += [(r["sentence1"], r["sentence2"]) for r in read_tsv(demo / "RTE" / "test.tsv")]
    assert len(set(pairs)) == len(pairs)


def test_deterministic_for_a_seed(tmp_path):
    a = write_demo_task(tmp_path / "a", seed=3, n_train=50, n_dev=11, n_test=10)
    b = write_demo_task(tmp_path / "b", seed=3, n_train=50, n_dev=11, n_test=10)
    c = write_demo_task(tmp_path / "c", seed=4, n_train=50, n_dev=11, n_test=10)
    for split in ["train", "dev", "test"]:
        assert (a / "RTE" / f"{split}.tsv").read_text() == (b / "RTE" / f"{split}.tsv").read_text()
    assert (a / "RTE" / "train.tsv").read_text() != (c / "RTE" / "train.tsv").read_text()
    dev = [r["label"] for r in read_tsv(a / "RTE" / "dev.tsv")]
    assert dev.count("not_entailment") == 6  # odd size: the extra example is a negative


def test_too_small_split_is_rejected(tmp_path):
    with pytest.raises(KdError, match="n_dev"):
        write_demo_task(tmp_path, n_dev=1)


def test_teacher_folder(demo):
    vocab = (demo / "model" / "vocab.txt").read_text().splitlines()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(set(vocab)) == len(vocab)
    config = json.loads((demo / "model" / "config.json").read_text())
    assert config["vocab_size"] == len(vocab)
    assert config["model_type"] == "bert"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"], config["max_position_embeddings"]) == (64, 4, 4, 128, 128)
    assert json.loads((demo / "model" / "tokenizer_config.json").read_text())["do_lower_case"] is True

    in_vocab = set(vocab)
    for split in ["train", "dev", "test"]:
        for r in read_tsv(demo / "RTE" / f"{split}.tsv"):
            pieces = words(r["sentence1"]) + words(r["sentence2"])
            assert set(pieces) <= in_vocab, r
            assert len(pieces) + 3 < 32  # [CLS] s1 [SEP] s2 [SEP]


def test_wordpiece_tokenizer_reads_the_vocab(demo):
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(str(demo / "model" / "vocab.txt"), lowercase=True)
    for r in read_tsv(demo / "RTE" / "dev.tsv"):
        enc = tok.encode(r["sentence1"], r["sentence2"])
        assert "[UNK]" not in enc.tokens
        assert enc.tokens == ["[CLS]"] + words(r["sentence1"]) + ["[SEP]"] + words(r["sentence2"]) + ["[SEP]"]


def colour_of(sentence):
    (colour,) = [w for w in words(sentence) if w in COLOURS]
    return colour


def bag_of_words(sentences, vocab):
    x = np.zeros((len(sentences), len(vocab)))
    for i, s in enumerate(sentences):
        for w in words(s):
            x[i, vocab[w]] = 1.0
    return x


def logistic_regression_accuracy(x_train, y_train, x_dev, y_dev, steps=500, lr=0.5):
    """Full-batch gradient descent on the mean log loss (bias as an extra column)."""
    x_train = np.hstack([x_train, np.ones((len(x_train), 1))])
    x_dev = np.hstack([x_dev, np.ones((len(x_dev), 1))])
    w = np.zeros(x_train.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-x_train @ w))
        w -= lr * x_train.T @ (p - y_train) / len(y_train)
    return float((((x_dev @ w) > 0) == y_dev).mean()), float((((x_train @ w) > 0) == y_train).mean())


def test_label_needs_both_sentences(demo):
    train, dev = read_tsv(demo / "RTE" / "train.tsv"), read_tsv(demo / "RTE" / "dev.tsv")
    y_train = np.array([r["label"] == "entailment" for r in train], dtype=float)
    y_dev = np.array([r["label"] == "entailment" for r in dev], dtype=float)

    # the rule: sentence 2 gives the colour of sentence 1's object
    for r in train + dev:
        assert (colour_of(r["sentence1"]) == colour_of(r["sentence2"])) == (r["label"] == "entailment")

    vocab = {w: i for i, w in enumerate(sorted({w for r in train + dev for k in ["sentence1", "sentence2"]
                                                   for w in words(r[k])}))}
    for key in ["sentence1", "sentence2"]:  # one sentence alone: a unigram model is near chance
        dev_acc, _ = logistic_regression_accuracy(bag_of_words([r[key] for r in train], vocab), y_train,
                                                  bag_of_words([r[key] for r in dev], vocab), y_dev)
        assert 0.4 < dev_acc < 0.6, (key, dev_acc)

    # the same model with both sentences' cross features (colour in s1 x colour in s2) learns the rule
    def cross(rows):
        x = np.zeros((len(rows), len(COLOURS) ** 2))
        for i, r in enumerate(rows):
            c1, c2 = COLOURS.index(colour_of(r["sentence1"])), COLOURS.index(colour_of(r["sentence2"]))
            x[i, c1 * len(COLOURS) + c2] = 1.0
        return x

    dev_acc, train_acc = logistic_regression_accuracy(cross(train), y_train, cross(dev), y_dev,
                                                      steps=2000, lr=2.0)
    assert dev_acc > 0.95 and train_acc > 0.95
