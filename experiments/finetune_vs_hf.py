"""Benchmark (not a test): fine-tune all-MiniLM-L6-v2 on GLUE with kd_ref and with a
plain `transformers` loop on the same recipe; dev scores and wall time side by side.

    python experiments/finetune_vs_hf.py [--tasks rte,mrpc] [--seeds 1,2,3] [--limit N] [--runs runs.jsonl]
                                   [--device cpu]

Prints one JSON line per run and rewrites experiments/RESULTS-finetune.md after each run.
Both sides read the same TSV rows (kd_ref.data.glue) and score with kd_ref.data.metrics, so
only the model, tokenizer call, batching and training loop differ. Known recipe
differences that are part of each implementation: kd_ref batches by length bucket
(kd_ref.data.batching) where the reference pads each random batch to its longest row,
and kd_ref's first step already uses lr / warm-up steps where HF's uses 0.
"""
import argparse
import datetime
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils.data import DataLoader
from transformers import (BertForSequenceClassification, BertTokenizerFast, DataCollatorWithPadding,
                          get_linear_schedule_with_warmup)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, kd_ref need not be installed
from kd_ref.data.glue import get_task, read_split, resolve_data_dir  # noqa: E402
from kd_ref.data.metrics import task_metrics  # noqa: E402
from kd_ref.data.splits import encode_split  # noqa: E402
from kd_ref.data.tokenizer import BertTokenizer  # noqa: E402
from kd_ref.evaluate import evaluate, predictions  # noqa: E402
from kd_ref.plumbing.checkpoint import load_bert  # noqa: E402
from kd_ref.teacher import finetune  # noqa: E402

CHECKPOINT = ROOT / "weights" / "minilm-l6"
RECIPE = dict(epochs=3, lr=2e-5, batch_size=32, max_len=128, weight_decay=0.01, warmup=0.1)  # clip 1.0 in both
RESULTS = ROOT / "experiments" / "RESULTS-finetune.md"


def run_ours(task, data_dir, seed: int, limit: int | None, device: str):
    """(dev metrics, train seconds, dev seconds) of kd_ref.teacher.finetune."""
    tokenizer = BertTokenizer.from_dir(CHECKPOINT, RECIPE["max_len"])
    train, dev = (encode_split(data_dir, task, split, tokenizer) for split in ("train", "dev"))
    if limit:
        train, dev = (s.subset(np.arange(min(limit, len(s)))) for s in (train, dev))
    torch.manual_seed(seed)  # the fresh classifier's init
    model = load_bert(CHECKPOINT, task.num_labels)[0].to(device)
    start = time.perf_counter()
    finetune(model, train, seed=seed, device=device, **RECIPE)
    middle = time.perf_counter()
    batches = [b.to(device) for b in dev.batches(RECIPE["batch_size"], RECIPE["max_len"], shuffle=False)]
    metrics, _ = evaluate(model, task, batches, dev.labels)
    return metrics, middle - start, time.perf_counter() - middle


def run_reference(task, data_dir, seed: int, limit: int | None, device: str):
    """The same recipe as a textbook transformers fine-tuning loop."""
    tokenizer = BertTokenizerFast.from_pretrained(CHECKPOINT)

    def features(split):
        examples = read_split(data_dir, task, split)[:limit]
        texts = [e.text_a for e in examples], None if task.text_b is None else [e.text_b for e in examples]
        enc = tokenizer(*texts, truncation=True, max_length=RECIPE["max_len"])
        return [{**{k: v[i] for k, v in enc.items()}, "labels": e.label} for i, e in enumerate(examples)]

    train, dev = features("train"), features("dev")
    collate = DataCollatorWithPadding(tokenizer)  # dynamic padding to the longest row of each batch
    torch.manual_seed(seed)
    model = BertForSequenceClassification.from_pretrained(CHECKPOINT, num_labels=task.num_labels,
                                                          attn_implementation="sdpa").to(device)
    no_decay = ("bias", "LayerNorm.weight")
    named = list(model.named_parameters())
    opt = torch.optim.AdamW([
        {"params": [p for n, p in named if not n.endswith(no_decay)], "weight_decay": RECIPE["weight_decay"]},
        {"params": [p for n, p in named if n.endswith(no_decay)], "weight_decay": 0.0},
    ], lr=RECIPE["lr"])
    loader = DataLoader(train, batch_size=RECIPE["batch_size"], shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(seed))
    steps = RECIPE["epochs"] * len(loader)
    sched = get_linear_schedule_with_warmup(opt, int(RECIPE["warmup"] * steps), steps)
    start = time.perf_counter()
    model.train()
    for _ in range(RECIPE["epochs"]):
        for batch in loader:
            model(**batch.to(device)).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
    middle = time.perf_counter()
    model.eval()
    with torch.no_grad():
        batches = DataLoader(dev, batch_size=RECIPE["batch_size"], collate_fn=collate)
        logits = torch.cat([model(**b.to(device)).logits.cpu() for b in batches])
    labels = np.array([f["labels"] for f in dev])
    metrics = task_metrics(task, predictions(task, logits.float().numpy()), labels)
    return metrics, middle - start, time.perf_counter() - middle


def mean_std(values, digits: int = 4) -> str:
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values) if len(values) > 1 else 0:.{digits}f}"


def write_results(runs, command: str, started: str, device: str, planned: int) -> None:
    cpu = next(line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name"))
    status = "complete" if len(runs) >= planned else f"incomplete, {len(runs)} of {planned} runs so far"
    out = ["# Fine-tuning all-MiniLM-L6-v2: kd_ref vs transformers", "", f"**Status: {status}.** "
           "Rerunning the command resumes: runs already in its `--runs` file are skipped.", "",
           f"- Command: `{command}`", f"- Date: {started}",
           f"- Machine: {cpu}, {torch.get_num_threads()} torch threads, {len(os.sched_getaffinity(0))} of {os.cpu_count()} cores "
           "usable by this process"
           f"{'' if device == 'cpu' else ', ' + torch.cuda.get_device_name(device)}; "
           f"Python {platform.python_version()}, "
           f"torch {torch.__version__}, transformers {transformers.__version__}",
           f"- Recipe (both): {RECIPE}, grad clip 1.0, AdamW without decay on biases/LayerNorm, "
           "linear warm-up then linear decay, dev scored with kd_ref.data.metrics.",
           "- What differs by design: kd_ref batches rows of similar length together (kd_ref.data.batching) where the "
           "reference pads random batches to their longest row, and kd_ref's first step trains at lr / warm-up "
           "steps where transformers' has lr 0. With the same batches, the steps themselves agree: "
           "tests/test_optim.py runs five AdamW steps of both on the same weights (parameters equal to 1e-4) "
           "and checks the schedule against get_linear_schedule_with_warmup.", "",
           "## Mean ± std over seeds", "",
           "Δ = mean(ours) − mean(ref); SE = sqrt((std_ours² + std_ref²) / n); "
           "|Δ| < 2 SE counts as within noise.", "",
           "| task | metric | ours | transformers | Δ | 2 SE | ours train s | ref train s |",
           "|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in runs):
        by_impl = {impl: [r for r in runs if r["task"] == task and r["impl"] == impl] for impl in ("ours", "ref")}
        if not all(by_impl.values()):
            continue
        n = min(len(v) for v in by_impl.values())
        times = {impl: mean_std([r["train_s"] for r in v], 0) for impl, v in by_impl.items()}
        for metric in get_task(task).metrics:
            ours, ref = ([r[metric] for r in by_impl[impl]] for impl in ("ours", "ref"))
            spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in (ours, ref)]
            se = (sum(s * s for s in spread) / n) ** 0.5
            out.append(f"| {task} | {metric} | {mean_std(ours)} | {mean_std(ref)} | "
                       f"{statistics.mean(ours) - statistics.mean(ref):+.4f} | {2 * se:.4f} | "
                       f"{times['ours']} | {times['ref']} |")
    out += ["", "## Every run", "", "load: 1-minute load average when the run ended.", "",
            "| task | seed | impl | metrics | train s | dev s | load |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        scores = ", ".join(f"{m} {r[m]:.4f}" for m in get_task(r["task"]).metrics)
        out.append(f"| {r['task']} | {r['seed']} | {r['impl']} | {scores} | "
                   f"{r['train_s']:.1f} | {r['dev_s']:.1f} | {r['load']} |")
    RESULTS.write_text("\n".join(out) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", default="rte,mrpc")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--limit", type=int, default=None, help="first N train and dev rows only (smoke runs)")
    parser.add_argument("--data-dir", default=None, help="GLUE root (default $KD_GLUE_DIR)")
    parser.add_argument("--device", default="cpu", help="torch device of both implementations, e.g. cuda")
    parser.add_argument("--runs", type=Path, default=None,
                        help="JSONL file each run is appended to; runs already in it are not redone (resume)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (pin with taskset to share a machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # the 'newly initialized classifier' warning, every run
    transformers.logging.disable_progress_bar()
    data_dir = resolve_data_dir(args.data_dir)
    command = shlex.join(["python", "experiments/finetune_vs_hf.py", *sys.argv[1:]])
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    runs = [json.loads(line) for line in args.runs.read_text().splitlines()] if args.runs and args.runs.exists() else []
    done = {(r["task"], r["impl"], r["seed"]) for r in runs}
    # seeds outermost: a run cut short still holds matched pairs on every task
    for seed in map(int, args.seeds.split(",")):
        for task in map(get_task, args.tasks.split(",")):
            for impl, run in (("ours", run_ours), ("ref", run_reference)):
                if (task.name, impl, seed) in done:
                    continue
                metrics, train_s, dev_s = run(task, data_dir, seed, args.limit, args.device)
                runs.append({"task": task.name, "impl": impl, "seed": seed, **metrics,
                             "train_s": round(train_s, 2), "dev_s": round(dev_s, 2),
                             "load": round(os.getloadavg()[0], 1)})  # the cores are shared: times vary with it
                print(json.dumps(runs[-1]), flush=True)
                if args.runs:
                    with args.runs.open("a") as f:
                        f.write(json.dumps(runs[-1]) + "\n")
                write_results(runs, command, started, args.device,
                              len(args.seeds.split(",")) * len(args.tasks.split(",")) * 2)


if __name__ == "__main__":
    main()
