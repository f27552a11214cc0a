"""A synthetic GLUE-style task and a tiny teacher config, so a demo run needs no downloads.

The task, written in GLUE RTE format, is "does sentence 2 give the colour of the
object of sentence 1?":

    sentence1: "anna has a red ball."
    sentence2: "the ball is red."       -> entailment
    sentence2: "the ball looks green."  -> not_entailment

Sentence 1 is drawn the same way for both labels, and the (object, colour) pair of
sentence 2 is uniform over all pairs for both labels, so neither sentence alone says
anything about the label: a model has to compare the two colours across the
sentences. That comparison is what a tiny BERT trained from random init must
discover. With AdamW at lr 5e-4 (10% warmup, then constant; batch 32) it usually
goes from chance to >85% dev accuracy between steps 400 and 600, then >95%; the
loss first sits on a plateau whose length depends on the init seed, and some seeds
need longer. At lr 2e-4 it is still at 58-80% after 600 steps.

The teacher folder holds vocab.txt, tokenizer_config.json and config.json of a
tiny BERT but no weights: training starts that teacher from random init.
"""

import json
import random
import re
import string
from pathlib import Path

from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import write_atomically

COLOURS = ["red", "blue", "green", "yellow", "black", "white", "pink", "purple", "brown", "grey"]
OBJECTS = ["ball", "box", "cup", "hat", "car", "book", "chair", "lamp", "kite", "shoe"]
NAMES = ["anna", "ben", "carla", "david", "emma", "frank"]
PLACES = ["table", "shelf", "floor", "desk", "bed"]

# every sentence-1 template names one coloured object (and maybe an uncoloured distractor)
SENTENCE1_TEMPLATES = [
    "the {colour} {obj} is on the {place}.",
    "{name} has a {colour} {obj}.",
    "there is a {colour} {obj} next to the {other}.",
]
# every sentence-2 template states the colour of the object of sentence 1
SENTENCE2_TEMPLATES = [
    "the {obj} is {colour}.",
    "the colour of the {obj} is {colour}.",
    "the {obj} looks {colour}.",
]
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# a tiny BERT: trains in minutes on a CPU (HF config.json keys, as our loaders read them)
TEACHER_CONFIG = {
    "architectures": ["BertModel"],
    "model_type": "bert",
    "hidden_size": 64,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "max_position_embeddings": 128,
    "type_vocab_size": 2,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "pad_token_id": 0,
    "position_embedding_type": "absolute",
}


def vocabulary() -> list[str]:
    """BERT vocab.txt lines: the special tokens, every word the generator can write, all ASCII punctuation."""
    template_text = " ".join(SENTENCE1_TEMPLATES + SENTENCE2_TEMPLATES)
    template_words = re.findall(r"[a-z]+", re.sub(r"\{\w+\}", " ", template_text))
    words = sorted(set(template_words + COLOURS + OBJECTS + NAMES + PLACES))
    return SPECIAL_TOKENS + words + list(string.punctuation)


def _example(rng: random.Random, entailed: bool) -> tuple[str, str]:
    """One (sentence1, sentence2) pair with the given label."""
    colour = rng.choice(COLOURS)
    obj, other = rng.sample(OBJECTS, 2)
    sentence1 = rng.choice(SENTENCE1_TEMPLATES).format(
        colour=colour, obj=obj, other=other, name=rng.choice(NAMES), place=rng.choice(PLACES))
    if not entailed:
        # uniform over the other colours: the colour of sentence 2 is then uniform
        # over COLOURS for both labels, so sentence 2 alone carries no signal
        colour = rng.choice([c for c in COLOURS if c != colour])
    return sentence1, rng.choice(SENTENCE2_TEMPLATES).format(obj=obj, colour=colour)


def _write_split(path: Path, rows: list[tuple[str, str, bool]], with_label: bool) -> None:
    header = ["index", "sentence1", "sentence2"] + (["label"] if with_label else [])
    lines = ["\t".join(header)]
    for i, (s1, s2, entailed) in enumerate(rows):
        label = ["entailment" if entailed else "not_entailment"] if with_label else []
        lines.append("\t".join([str(i), s1, s2] + label))
    write_atomically(path, lambda tmp: tmp.write_text("\n".join(lines) + "\n", encoding="utf-8"))


def write_demo_task(out_dir, seed: int = 0, n_train: int = 2000, n_dev: int = 300,
                    n_test: int = 300) -> Path:
    """Write out_dir/RTE/{train,dev,test}.tsv and the teacher folder out_dir/model; return out_dir.

    Each split is balanced (equal halves, one extra not_entailment when odd), no
    (sentence1, sentence2) pair occurs twice across the splits, and the same seed
    writes the same files. test.tsv has no label column, as in GLUE. Each file appears
    atomically: demo sweeps sharing a folder rewrite it while another one may be reading it.
    """
    sizes = {"train": n_train, "dev": n_dev, "test": n_test}
    for split, n in sizes.items():
        if n < 2:
            raise KdError(f"demo task: n_{split} = {n}, need at least 2 examples per split")
    out_dir = Path(out_dir)
    task_dir, model_dir = out_dir / "RTE", out_dir / "model"
    task_dir.mkdir(parents=True, exist_ok=True)
    model_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(seed)
    seen = set()
    for split, n in sizes.items():
        labels = [True] * (n // 2) + [False] * (n - n // 2)
        rng.shuffle(labels)
        rows = []
        for entailed in labels:
            for _ in range(100):  # ~6000 distinct entailed pairs: retries are rare at default sizes
                pair = _example(rng, entailed)
                if pair not in seen:
                    break
            else:
                raise KdError(f"demo task: n_{split} = {n} is too many, "
                              "the generator runs out of distinct sentence pairs")
            seen.add(pair)
            rows.append((*pair, entailed))
        _write_split(task_dir / f"{split}.tsv", rows, with_label=split != "test")

    vocab = vocabulary()
    write_atomically(model_dir / "vocab.txt", lambda tmp: tmp.write_text("\n".join(vocab) + "\n", encoding="utf-8"))
    tokenizer_config = {"do_lower_case": True, "tokenizer_class": "BertTokenizer",
                        "model_max_length": TEACHER_CONFIG["max_position_embeddings"],
                        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                        "cls_token": "[CLS]", "mask_token": "[MASK]"}
    write_atomically(model_dir / "tokenizer_config.json",
                     lambda tmp: tmp.write_text(json.dumps(tokenizer_config, indent=2) + "\n"))
    config = dict(TEACHER_CONFIG, vocab_size=len(vocab))
    write_atomically(model_dir / "config.json", lambda tmp: tmp.write_text(json.dumps(config, indent=2) + "\n"))
    return out_dir
