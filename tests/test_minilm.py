"""The real all-MiniLM-L6-v2 checkpoint: our Bert against transformers on real GLUE sentence pairs."""
import csv

import torch
import transformers

from kd_ref.plumbing.checkpoint import load_bert

# Compared at real tokens, fp32 on CPU; observed at most 2.5e-5 on an AMD EPYC and 7.4e-6 on an
# Intel Xeon. Padded positions, which nothing reads, differed by up to 2.1e-4 on the Xeon (HF's own
# eager and SDPA paths by 9.3e-5 there): their queries see only real keys, but differ in rounding.
TOL = 1e-4


def sentence_pairs(glue_dir, n_each=16):
    """The first n_each dev pairs of RTE (sentence1, sentence2) and MRPC (#1 String, #2 String)."""
    pairs = []
    for task, a, b in [("RTE", "sentence1", "sentence2"), ("MRPC", "#1 String", "#2 String")]:
        with open(glue_dir / task / "dev.tsv", encoding="utf-8-sig", newline="") as f:
            rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            pairs += [(row[a], row[b]) for _, row in zip(range(n_each), rows)]
    return pairs


def test_minilm_matches_transformers(minilm_dir, glue_dir):
    ours, has_classifier = load_bert(minilm_dir)
    assert not has_classifier  # a sentence-embedding model: no classifier head
    ref = transformers.BertModel.from_pretrained(minilm_dir, attn_implementation="eager")
    ours.eval(), ref.eval()
    tokenizer = transformers.BertTokenizerFast.from_pretrained(minilm_dir)
    first, second = zip(*sentence_pairs(glue_dir))
    enc = tokenizer(list(first), list(second), padding=True, truncation=True, max_length=64, return_tensors="pt")
    mask = enc["attention_mask"]
    assert len(mask) == 32 and (mask == 0).any() and (enc["token_type_ids"] == 1).any()  # padded, two segments
    with torch.no_grad():
        theirs = ref(**enc, output_hidden_states=True).hidden_states
        explicit = ours(enc["input_ids"], mask, enc["token_type_ids"], output_hidden_states=True,
                        attention_layers=range(1, 7)).hidden_states
        fused = ours(enc["input_ids"], mask, enc["token_type_ids"], output_hidden_states=True).hidden_states
    assert len(theirs) == len(explicit) == len(fused) == 7
    real = mask.bool()[..., None]
    for l, (h_ref, h_exp, h_sdpa) in enumerate(zip(theirs, explicit, fused)):
        assert torch.isfinite(h_exp).all() and torch.isfinite(h_sdpa).all(), l
        assert ((h_exp - h_ref).abs() * real).max() < TOL, l
        assert ((h_sdpa - h_ref).abs() * real).max() < TOL, l
