"""kd-ref: distil a BERT student from a BERT teacher on a GLUE task, with the
actor-critic knowledge selection module of Wang et al. (EMNLP 2022 Findings) or
one of the baselines it is compared against.

    python run.py --task rte --teacher weights/bert-base            # KSM (ksm-soft)
    python run.py --task rte --teacher weights/bert-base --method kd,pkd --seeds 1,2,3
    python run.py --demo                                            # no downloads, ~1 minute on CPU

Output folder (--out, default runs/<task>): teacher/ (fine-tuned teacher, reused),
<method>-s<seed>/ per run (config.json, metrics.json, log.jsonl, student/,
dev and test predictions, report.svg), summary.json and summary.md over runs.
Flags marked [ours] are our reconstruction of details the paper does not give
(see ../shared/docs/method.md and README.md).
"""
import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kd_ref.agent import AgentConfig
from kd_ref.bert import Bert
from kd_ref.checkpoint import load_bert, load_config, save_bert
from kd_ref.compiled import compile_model, default_compile, use_tf32
from kd_ref.data import encode_split, reward_split
from kd_ref.demo import write_demo_task
from kd_ref.distill import DistillConfig, check_config, distill
from kd_ref.errors import KdError
from kd_ref.evaluate import evaluate, predict_logits, predictions
from kd_ref.glue import get_task, resolve_data_dir, write_predictions
from kd_ref.metrics import task_metrics
from kd_ref.outputs import JsonlLog, summarise, versions, write_json
from kd_ref.report import write_report
from kd_ref.selectors import METHODS, SelectorConfig, make_selector
from kd_ref.student import build_student, layer_map, layer_map_table, make_projections
from kd_ref.teacher import TeacherCache, estimate_cache_bytes, finetune, live_view
from kd_ref.tokenizer import BertTokenizer


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--task", help="GLUE task: cola sst2 mrpc stsb qqp mnli qnli rte wnli")
    a("--teacher", help="teacher folder in the Hugging Face layout (config.json, model.safetensors, vocab)")
    a("--data-dir", help="GLUE folder (default: $KD_GLUE_DIR, else ../shared/data/glue)")
    a("--out", help="output folder (default: runs/<task>)")
    a("--method", default="ksm-soft", help="one or more of " + ",".join(METHODS) + ", comma-separated")
    a("--seed", type=int, default=1, help="fixes a run: data order, dropout, initialisation, agent")
    a("--seeds", help="comma-separated seeds, one run each, plus a mean/std summary (overrides --seed)")
    a("--demo", action="store_true", help="whole pipeline on an embedded synthetic task, tiny BERT, no downloads")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    a("--overwrite", action="store_true", help="replace finished runs in the output folder")
    a("--debug", action="store_true", help="show tracebacks for input errors")
    g = p.add_argument_group("student")
    g.add_argument("--student-layers", type=int, help="default: half the teacher's layers")
    g.add_argument("--student-hidden", type=int, help="default: the teacher's width")
    g.add_argument("--student-init", default="teacher",
                   help="'teacher' (embeddings and mapped layers), 'random', or a checkpoint folder")
    g = p.add_argument_group("teacher fine-tuning (when --teacher has no classifier for the task)")
    g.add_argument("--teacher-epochs", type=int, default=3)
    g.add_argument("--teacher-lr", type=float, default=2e-5)
    g.add_argument("--teacher-batch-size", type=int, default=32)
    g.add_argument("--teacher-seed", type=int, default=42)
    g.add_argument("--teacher-cache-gb", type=float, default=8.0,
                   help="cache teacher outputs when they fit in this many GB, else run the teacher live")
    g = p.add_argument_group("distillation")
    add_fields(g, DistillConfig, skip=("compile",))
    g.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile the models and the fused loss (default: on CUDA, off on CPU, where "
                        "it does not pay: BENCHMARKS.md)")
    g = p.add_argument_group("selectors and the knowledge selection module (KSM)")
    g.add_argument("--alpha", type=float, default=SelectorConfig.alpha, help="kd: weight of ResK")
    g.add_argument("--beta", type=float, default=SelectorConfig.beta, help="pkd: weight of FeaK(cls) [ours]")
    add_fields(g, AgentConfig, skip=("hard",))  # ksm-hard / ksm-soft set `hard`
    g.add_argument("--reward-split", default="train", choices=["train", "dev"],
                   help="'train': a held-out part of the training set [ours]; 'dev': the paper's choice, "
                        "marks the results as tuned on dev")
    g.add_argument("--reward-fraction", type=float, default=0.1, help="size of the held-out reward split")
    return p.parse_args(argv)


def add_fields(group, config_class, skip=()):
    """One flag per field of a config dataclass, with the field's default: the dataclass is the
    single place where a default is written down."""
    for f in dataclasses.fields(config_class):
        if f.name not in skip:
            group.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KdError(f"--device {name}: no CUDA device is available")
    return torch.device(name)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def prepare_teacher(args, task, train, dev, out: Path, device):
    """Load the teacher; fine-tune it first (once, saved under out/teacher) if it has no
    classifier for the task. Returns (teacher, dev metrics, seconds spent fine-tuning)."""
    saved = out / "teacher"
    torch.manual_seed(args.teacher_seed)  # a fresh classifier head is drawn while loading
    if args.demo:
        teacher, ready = Bert(dataclasses.replace(load_config(args.teacher), num_labels=task.num_labels)), False
    else:
        teacher, ready = load_bert(args.teacher, num_labels=task.num_labels)
    seconds = 0.0
    if not ready and (saved / "model.safetensors").is_file():
        print(f"teacher: reusing the fine-tuned teacher in {saved}")
        teacher, ready = load_bert(saved, num_labels=task.num_labels)
    teacher.to(device)
    if not ready:
        print(f"teacher: {args.teacher} has no classifier for {task.name}: fine-tuning it "
              f"({args.teacher_epochs} epochs, lr {args.teacher_lr}, batch {args.teacher_batch_size})")
        t0 = time.perf_counter()
        finetune(teacher, train, epochs=args.teacher_epochs, lr=args.teacher_lr,
                 batch_size=args.teacher_batch_size, max_len=args.max_len, weight_decay=args.weight_decay,
                 warmup=args.warmup, seed=args.teacher_seed, device=device)
        seconds = time.perf_counter() - t0
        teacher.config.id2label = dict(enumerate(task.labels or ["score"]))
        save_bert(teacher.cpu(), saved, tokenizer_dir=args.teacher)
        teacher.to(device)
    teacher.eval()
    dev_batches = [b.to(device) for b in dev.batches(args.batch_size, args.max_len, shuffle=False)]
    metrics, _ = evaluate(teacher, task, dev_batches, dev.labels)
    print("teacher dev:", json.dumps(metrics))
    chance = chance_score(task, dev.labels)
    if metrics[task.main_metric] < chance + 0.02:
        print(f"WARNING: the teacher's dev {task.main_metric} {metrics[task.main_metric]:.4f} is near chance "
              f"({chance:.4f}): distilling from it will not mean much", file=sys.stderr)
    return teacher, metrics, seconds


def chance_score(task, labels) -> float:
    """The main metric of always predicting the majority class (0 for correlations and MCC)."""
    if task.labels is None or task.main_metric == "mcc":
        return 0.0
    majority = np.full_like(labels, np.bincount(labels).argmax())
    return task_metrics(task, majority, labels)[task.main_metric]


def run_one(args, method, seed, task, data, teacher, teacher_view, g, device, out: Path, teacher_dev):
    train, dev, test = data
    run_dir = out / f"{method}-s{seed}"
    if (run_dir / "metrics.json").is_file() and not args.overwrite:
        raise KdError(f"{run_dir} already holds a finished run: pass --overwrite to replace it")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    write_json(run_dir / "config.json", {"args": vars(args), "method": method, "seed": seed,
                                         "layer_map": g, "reward_split_is_dev": args.reward_split == "dev",
                                         "versions": versions()})
    torch.manual_seed(seed)
    student = build_student(teacher, args.student_layers, args.student_hidden, args.student_init, g).to(device)
    if args.compile:
        compile_model(student)
    projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, len(g)).to(device)
    selector = make_selector(method, student.config.hidden_size, teacher.config.hidden_size,
                             SelectorConfig(alpha=args.alpha, beta=args.beta,
                                            agent=config_from(args, AgentConfig, hard=method == "ksm-hard")),
                             seed=seed)
    cfg = config_from(args, DistillConfig)
    if args.reward_split == "dev":
        episode_train, reward_rows = train, dev
    else:
        keep, held = reward_split(train.labels, args.reward_fraction, seed, task.labels is None)
        episode_train, reward_rows = train.subset(keep), train.subset(held)
    on_device = lambda batches: [b.to(device) for b in batches]
    reward_batches = on_device(reward_rows.batches(args.batch_size, args.max_len, shuffle=False))
    dev_batches = on_device(dev.batches(args.batch_size, args.max_len, shuffle=False))
    log = JsonlLog(run_dir / "log.jsonl")
    try:
        times = distill(student, projections, selector, teacher_view, train, cfg, g=g, seed=seed, device=device,
                        log=log, episode_train=episode_train, reward_batches=reward_batches,
                        dev=(task, dev_batches, dev.labels))
    finally:
        log.close()
    t0 = time.perf_counter()
    dev_metrics, dev_preds = evaluate(student, task, dev_batches, dev.labels)
    write_predictions(run_dir / "dev_predictions.tsv", task, dev_preds)
    if test is not None:
        test_logits = predict_logits(student, on_device(test.batches(args.batch_size, args.max_len, shuffle=False)),
                                     len(test))
        write_predictions(run_dir / f"{task.folder}.tsv", task, predictions(task, test_logits))
    times["eval_s"] = time.perf_counter() - t0
    student.config.id2label = dict(enumerate(task.labels or ["score"]))
    save_bert(student.cpu(), run_dir / "student", tokenizer_dir=args.teacher)
    metrics = {"task": task.name, "method": method, "seed": seed, "dev": dev_metrics, "teacher_dev": teacher_dev,
               "main_metric": task.main_metric, "reward_split": reward_note(args),
               "params": {"teacher": count(teacher), "student": count(student), "projections": count(projections)},
               "wall_s": times}
    write_json(run_dir / "metrics.json", metrics)
    write_report(run_dir / "log.jsonl", run_dir / "report.svg", title=f"{task.name} {method} seed {seed}",
                 metric=task.main_metric, teacher_score=teacher_dev[task.main_metric])
    print(f"{method} seed {seed}: dev {json.dumps(dev_metrics)} -> {run_dir}")
    return {"method": method, "seed": seed, "dev": dev_metrics, "wall_s": sum(times.values())}


def config_from(args, config_class, **overrides):
    """A config dataclass filled from the flags add_fields made for it."""
    names = [f.name for f in dataclasses.fields(config_class) if f.name not in overrides]
    return config_class(**{n: getattr(args, n) for n in names}, **overrides)


def reward_note(args) -> str:
    if args.reward_split == "dev":
        return "dev (the paper's choice): the reported dev metrics are NOT held out from the KSM's reward"
    return f"held-out {args.reward_fraction:.0%} of train, stratified (never the reported dev set)"


def main(argv=None):
    args = parse_args(argv)
    if args.demo:
        demo_dir = Path(args.out or "runs/demo")
        write_demo_task(demo_dir / "data", seed=0)
        args.task, args.data_dir, args.teacher, args.out = "rte", str(demo_dir / "data"), str(demo_dir / "data" / "model"), str(demo_dir)
        # a tiny BERT from random init needs a large learning rate and ~600 steps (see kd_ref/demo.py)
        args.max_len, args.batch_size, args.lr, args.teacher_lr, args.teacher_epochs = 32, 32, 5e-4, 5e-4, 10
        args.epochs, args.episodes = 3, 2
    if not args.task or not args.teacher:
        raise KdError("--task and --teacher are required (or --demo)")
    methods = [m.strip() for m in args.method.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    check_config(config_from(args, DistillConfig))
    task = get_task(args.task)
    out = Path(args.out or f"runs/{task.name}")
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(args.device)
    if args.compile is None:
        args.compile = default_compile(device)
    if device.type == "cuda":
        use_tf32()
    data_dir = resolve_data_dir(args.data_dir)
    tokenizer = BertTokenizer.from_dir(args.teacher, max_len=args.max_len)
    train, dev = encode_split(data_dir, task, "train", tokenizer), encode_split(data_dir, task, task.dev_splits[0], tokenizer)
    test_file = data_dir / task.folder / f"{task.test_splits[0]}.tsv"
    test = encode_split(data_dir, task, task.test_splits[0], tokenizer) if test_file.is_file() else None
    teacher, teacher_dev, teacher_s = prepare_teacher(args, task, train, dev, out, device)
    if args.student_layers is None:
        args.student_layers = max(1, teacher.config.num_hidden_layers // 2)
    g = layer_map(teacher.config.num_hidden_layers, args.student_layers)
    print(layer_map_table(g))
    if args.compile:
        compile_model(teacher)
    teacher_view = make_teacher_view(args, teacher, train, g, device)
    results = [run_one(args, m, s, task, (train, dev, test), teacher, teacher_view, g, device, out, teacher_dev)
               for m in methods for s in seeds]
    summary, table = summarise(results, teacher_dev)
    summary["teacher_finetune_s"] = teacher_s
    write_json(out / "summary.json", summary)
    (out / "summary.md").write_text(table)
    print(table)


def make_teacher_view(args, teacher, train, g, device):
    """Cached teacher outputs when they fit in --teacher-cache-gb (and AttK is off), else live."""
    tokens = sum(len(ids) for ids, _ in train.pairs)
    itemsize = 2 if device.type == "cuda" else 4
    need = estimate_cache_bytes(len(train), tokens, teacher.config.num_labels, teacher.config.hidden_size,
                                len(g), itemsize)
    if args.attk_weight or need > args.teacher_cache_gb * 2 ** 30:
        print(f"teacher outputs: run live each step (cache would need {need / 2 ** 30:.2f} GB)")
        return lambda b: live_view(teacher, b, g, attention=bool(args.attk_weight))
    t0 = time.perf_counter()
    batches = train.batches(args.batch_size, args.max_len, shuffle=False)
    cache = TeacherCache(teacher, batches, len(train), g, device,
                         torch.bfloat16 if device.type == "cuda" else torch.float32)
    print(f"teacher outputs: cached logits and layers {g} for {len(train)} rows, "
          f"{cache.nbytes / 2 ** 20:.1f} MiB, {time.perf_counter() - t0:.1f} s")
    return cache.view


if __name__ == "__main__":
    debug = "--debug" in sys.argv
    try:
        main()
    except KdError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
