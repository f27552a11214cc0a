"""run.py's teacher stage: load the teacher, or fine-tune it once and keep it under
the output folder (reused while its recipe is unchanged); report its dev score; and
compute its outputs on the training set once, kept on disk beside it (method.md
"Episodes": teacher outputs are the same in every episode: cache them)."""
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from kd_ref.bert import Bert
from kd_ref.data.metrics import task_metrics
from kd_ref.evaluate import evaluate
from kd_ref.plumbing import distributed
from kd_ref.plumbing.checkpoint import load_bert, load_config, save_bert
from kd_ref.plumbing.errors import KdError
from kd_ref.plumbing.outputs import first_change, write_atomically
from kd_ref.plumbing.resume import Checkpoints
from kd_ref.plumbing.teacher_labels import match_labels
from kd_ref.teacher import TeacherCache, estimate_cache_bytes, finetune, live_view


# What a fine-tuned teacher depends on, kept in out/teacher/finetune.json to be checked on reuse.
TEACHER_FLAGS = ("teacher_seed", "teacher_epochs", "teacher_lr", "teacher_batch_size", "max_len", "weight_decay",
                 "warmup", "holdout")
OLD_DEFAULTS = {"holdout": 0.0, "data": None}  # flags added since some finetune.json files were written, at their old behaviour


def prepare_teacher(args, task, train, dev, out: Path, device):
    """Load the teacher; fine-tune it first (once, saved under out/teacher) if it has no
    classifier for the task, keeping checkpoints in out/teacher-checkpoint that a rerun resumes
    from (kd_ref/plumbing/resume.py) until the teacher is saved. Returns (teacher, dev metrics, seconds
    spent fine-tuning, over resumes too, the folder its weights are in)."""
    saved = out / "teacher"
    torch.manual_seed(args.teacher_seed)  # a fresh classifier head is drawn while loading
    if args.demo:
        teacher, ready = Bert(dataclasses.replace(load_config(args.teacher), num_labels=task.num_labels)), False
    else:
        teacher, ready = load_bert(args.teacher, num_labels=task.num_labels)
    seconds, source = 0.0, Path(args.teacher) if ready else saved
    if ready and args.holdout:
        saw_holdout(Path(args.teacher), args.holdout)
    recipe = {"teacher": str(Path(args.teacher).resolve()), "task": task.name,
              **{flag: getattr(args, flag) for flag in TEACHER_FLAGS},
              **({"data": task.describe()} if task.files else {})}  # your own data: its files, columns, labels
    if not ready and (saved / "model.safetensors").is_file():
        same_recipe(saved, recipe)
        print(f"teacher: reusing the fine-tuned teacher in {saved}")
        teacher, ready = load_bert(saved, num_labels=task.num_labels)
    if ready:
        match_labels(teacher, task, source)
    teacher.to(device)
    if not ready:
        checkpoints = Checkpoints(out, args.teacher_checkpoints_per_epoch, name="teacher-checkpoint", log=False)
        resume = checkpoints.load()
        if resume:
            refuse_change(resume["meta"]["recipe"], recipe,
                          f"{checkpoints.complete()} holds a fine-tuning started with",
                          "rerun with the same flags, or remove that folder to fine-tune from the start")
            before = resume["meta"]["seconds"]
            print(f"teacher: resuming its fine-tuning from {checkpoints.complete()} (step {resume['meta']['step']})")
        else:
            before = 0.0
            print(f"teacher: {args.teacher} has no classifier for {task.name}: fine-tuning it "
                  f"({args.teacher_epochs} epochs, lr {args.teacher_lr}, batch {args.teacher_batch_size})")
        t0 = time.perf_counter()
        finetune(teacher, train, epochs=args.teacher_epochs, lr=args.teacher_lr,
                 batch_size=args.teacher_batch_size, max_len=args.max_len, weight_decay=args.weight_decay,
                 warmup=args.warmup, seed=args.teacher_seed, device=device, checkpoints=checkpoints,
                 per_epoch=args.teacher_checkpoints_per_epoch, resume=resume,
                 meta=lambda: {"recipe": recipe, "seconds": before + time.perf_counter() - t0})
        seconds = before + time.perf_counter() - t0
        teacher.config.id2label = dict(enumerate(task.labels or ["score"]))
        distributed.barrier()  # every rank has read its checkpoint (resumed at the last step, no step synced them)
        if distributed.is_main():
            save_bert(teacher.cpu(), saved, tokenizer_dir=args.teacher,
                      extra={"finetune.json": json.dumps(recipe, indent=2) + "\n"})
            teacher.to(device)
            checkpoints.remove()  # the saved teacher replaces it
        distributed.barrier()
    teacher.eval()
    dev_batches = [b.to(device) for b in dev.batches(args.batch_size, args.max_len, shuffle=False,
                                                     shard=distributed.shard())]
    metrics, _ = evaluate(teacher, task, dev_batches, dev.labels)
    print("teacher dev:", json.dumps(metrics))
    chance = chance_score(task, dev.labels)
    if metrics[task.main_metric] < chance + 0.02 and distributed.is_main():
        print(f"WARNING: the teacher's dev {task.main_metric} {metrics[task.main_metric]:.4f} is near chance "
              f"({chance:.4f}): distilling from it will not mean much", file=sys.stderr)
    return teacher, metrics, seconds, source


def same_recipe(saved: Path, recipe: dict) -> None:
    """A teacher fine-tuned earlier is reused only if it was made from the same checkpoint and flags."""
    before = read_recipe(saved)
    if before is None:
        raise KdError(f"{saved} holds a teacher without a readable finetune.json (how it was fine-tuned): "
                      "remove the folder to fine-tune again")
    refuse_change(before, recipe, f"{saved} was fine-tuned with",
                  "use another --out, or remove that folder to fine-tune again")


def read_recipe(folder: Path) -> dict | None:
    """The finetune.json run.py left beside a teacher it fine-tuned; None when there is none readable."""
    try:
        return json.loads((folder / "finetune.json").read_text())
    except (OSError, ValueError):
        return None


def refuse_change(before: dict, recipe: dict, what: str, remedy: str) -> None:
    """A KdError naming the first flag (or the checkpoint or task) in which two recipes differ."""
    change = first_change(before, recipe, defaults=OLD_DEFAULTS)
    if change:
        key, old, now = change
        name = f"--{key.replace('_', '-')}" if key in TEACHER_FLAGS else key
        raise KdError(f"{what} {name} {old} (now {now}): {remedy}")


def saw_holdout(teacher: Path, holdout: float) -> None:
    """A fine-tuned teacher must not have trained on the rows --holdout keeps out of training: its
    knowledge of them would leak into every student's held-out score. Refused when its finetune.json
    (run.py fine-tuned it) says so; a note when there is none (its training data is unknown)."""
    before = read_recipe(teacher)
    if before is None:
        print(f"note: {teacher} has no finetune.json: whether its fine-tuning saw the --holdout rows is unknown",
              file=sys.stderr)
        return
    theirs = before.get("holdout", OLD_DEFAULTS["holdout"])
    if theirs != holdout:
        raise KdError(f"{teacher} was fine-tuned with --holdout {theirs} (now {holdout}): it "
                      "trained on rows this run holds out; fine-tune a teacher with the same --holdout")


def chance_score(task, labels) -> float:
    """The main metric of always predicting the majority class (0 for correlations and MCC)."""
    if task.labels is None or task.main_metric == "mcc":
        return 0.0
    majority = np.full_like(labels, np.bincount(labels).argmax())
    return task_metrics(task, majority, labels)[task.main_metric]


def make_teacher_view(args, teacher, teacher_dir: Path, train, g, device, out: Path):
    """Cached teacher outputs when they fit in --teacher-cache-gb (and AttK is off), else live.
    The cache is kept in out/teacher-cache.safetensors and reused while its key (teacher weights,
    training rows, layers, teacher precision) matches, e.g. after a resume; so is the cache beside
    a teacher that another output folder fine-tuned (--teacher OTHER/teacher: OTHER's cache, read
    only). Both paths run the teacher at one precision (kd_ref.teacher.teacher_forward): bf16 on
    CUDA, fp32 on the CPU."""
    tokens = sum(len(ids) for ids, _ in train.pairs)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    need = estimate_cache_bytes(len(train), tokens, teacher.config.num_labels, teacher.config.hidden_size,
                                len(g), dtype.itemsize)
    if args.attk_weight or need > args.teacher_cache_gb * 2 ** 30:
        print(f"teacher outputs: run live each step (cache would need {need / 2 ** 30:.2f} GB)")
        return lambda b: live_view(teacher, b, g, attention=bool(args.attk_weight), dtype=dtype)
    weights = teacher_dir / "model.safetensors"
    key = {"teacher": str(weights.resolve()), "teacher_bytes": str(weights.stat().st_size),
           "teacher_mtime_ns": str(weights.stat().st_mtime_ns), "rows": str(len(train)), "tokens": str(tokens),
           "token_sum": str(sum(sum(ids) for ids, _ in train.pairs)), "layers": str(g), "dtype": str(dtype),
           "forward": "bf16 autocast" if dtype == torch.bfloat16 else "fp32",  # older caches lack it: recomputed
           **({"class_order": str(teacher.class_order)} if hasattr(teacher, "class_order") else {})}
    path = out / "teacher-cache.safetensors"
    # a teacher fine-tuned in another output folder (--teacher OTHER/teacher) left its outputs beside it
    found = next((p for p in (path, teacher_dir.parent / "teacher-cache.safetensors") if stored_key(p) == key), None)
    t0 = time.perf_counter()
    if found:
        with safe_open(found, "pt") as f:
            cache = TeacherCache.from_tensors({k: f.get_tensor(k) for k in f.keys()}, g, device)
        what = f"reused {found}"
    else:
        batches = train.batches(args.batch_size, args.max_len, shuffle=False, shard=distributed.shard())
        cache = TeacherCache(teacher, batches, len(train), g, device, dtype)
        if distributed.is_main():
            tensors = {k: v.cpu().contiguous() for k, v in cache.tensors().items()}
            write_atomically(path, lambda tmp: save_file(tensors, tmp, metadata=key))
        what = f"computed, kept in {path}"
    distributed.barrier()
    print(f"teacher outputs: cached logits and layers {g} for {len(train)} rows, "
          f"{cache.nbytes / 2 ** 20:.1f} MiB, {what}, {time.perf_counter() - t0:.1f} s")
    return cache.view


def stored_key(path: Path) -> dict | None:
    """The key a saved teacher cache was made with; None when there is none or it is unreadable
    (a crash cannot leave half a file, but a user can): it is then recomputed."""
    try:
        with safe_open(path, "pt") as f:
            return f.metadata()
    except Exception:
        return None
