"""The tiny end-to-end setting several test files share: demo-generated data and a tiny
random teacher (32 wide, 4 layers), saved in the Hugging Face layout."""
import json
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


def write_stsb(data: Path) -> None:
    """An STS-B-format regression task from the demo pairs: score 4 for entailed pairs, else 1."""
    (data / "STS-B").mkdir()
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    for split in ("train", "dev", "test"):
        rows = (data / "RTE" / f"{split}.tsv").read_text().splitlines()[1:]
        lines = [head + ("\tscore" if split != "test" else "")]
        for i, row in enumerate(rows):
            cols = row.split("\t")
            line = f"{i}\tmain\tdemo\t2024\t{i:04d}\tnone\tnone\t{cols[1]}\t{cols[2]}"
            if split != "test":
                line += f"\t{4.0 if cols[3] == 'entailment' else 1.0:.3f}"
            lines.append(line)
        (data / "STS-B" / f"{split}.tsv").write_text("\n".join(lines) + "\n")


def run_args(tiny: Path, out: Path, *extra: str) -> list[str]:
    """run.py's flags for a quick run on the tiny task of `tiny` (write_tiny_task): one epoch, one episode."""
    return ["--data-dir", str(tiny / "data"), "--teacher", str(tiny / "teacher"), "--out", str(out),
            "--max-len", "32", "--batch-size", "16", "--teacher-epochs", "1", "--epochs", "1",
            "--episodes", "1", "--phases-per-epoch", "2", "--lr", "5e-4", "--teacher-lr", "5e-4", *extra]


def log_lines(run_dir: Path) -> list[dict]:
    """A run's log.jsonl, a dict a line."""
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
