"""The tiny end-to-end setting several test files share: demo-generated data and a tiny
random teacher (32 wide, 4 layers), saved in the Hugging Face layout."""
from pathlib import Path

import torch

from kd_ref.bert import Bert
from kd_ref.data.demo import write_demo_task
from kd_ref.plumbing.checkpoint import load_config, save_bert


def write_tiny_task(d: Path, *, n_train: int, n_dev: int, n_test: int, num_labels: int,
                    dropout: bool = True) -> None:
    """d/data: GLUE-style RTE files from kd_ref.data.demo; d/teacher: the teacher, with a head of
    num_labels classes (not 2: run.py fine-tunes it first for RTE)."""
    write_demo_task(d / "data", seed=0, n_train=n_train, n_dev=n_dev, n_test=n_test)
    cfg = load_config(d / "data" / "model")
    cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size, cfg.num_hidden_layers = 32, 2, 64, 4
    cfg.num_labels = num_labels
    if not dropout:
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
    torch.manual_seed(0)
    save_bert(Bert(cfg), d / "teacher", tokenizer_dir=d / "data" / "model")
