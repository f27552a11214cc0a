"""Distilling one student: the multi-phase loop, the KSM episodes and the final run.

method.md "Multi-phase training": a run is cut into phases; the selector acts at
the start of a phase, the action holds for the phase, the reward (decrease of the
student's gold loss on the reward split) is measured at its end and the agent
learns then. method.md "Episodes": the KSM learns over E episodes, each a fresh
distillation of the same initial student on the training set minus the reward
split; the final run distils on the whole training set with the actor frozen
and noise-free.
"""
import math
import time
from dataclasses import dataclass

import torch

from .agent import KnowledgeSelectionAgent
from .errors import KdError
from .evaluate import evaluate, gold_loss
from .fused import make_fused_loss
from .optim import make_optimizer
from .progress import Progress

KNOWLEDGE = ("fink", "resk", "feak", "relk", "attk")  # attk: the extension, when --attk-weight > 0


@dataclass
class DistillConfig:
    epochs: int = 3
    batch_size: int = 32
    max_len: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    phases_per_epoch: int = 4       # [ours]
    episodes: int = 3               # E [ours]
    temperature: float = 1.0        # ResK temperature [ours]
    loss_norm: str = "none"         # 'ema': divide each loss by a detached running mean of itself [ours]
    attk_weight: float = 0.0        # AttK extension, a fixed weight outside the selector [ours]
    compile: bool = False           # torch.compile the loss (run.py compiles the models too)


class LossNorm:
    """--loss-norm ema: raw losses differ by orders of magnitude, so each of FinK..RelK is divided
    by a detached running mean (decay 0.99) of its values at the previous steps [ours]."""

    def __init__(self, mode: str, decay: float = 0.99):
        self.mode, self.decay, self.mean = mode, decay, None

    def scale(self):
        return 1.0 if self.mean is None else self.mean.clamp(min=1e-12)

    def update(self, raw) -> None:
        if self.mode == "ema":
            self.mean = raw[:4] if self.mean is None else self.decay * self.mean + (1 - self.decay) * raw[:4]


def phase_bounds(total_steps: int, n_phases: int) -> list[int]:
    """Step at which each phase starts, plus total_steps at the end."""
    return [k * total_steps // n_phases for k in range(n_phases + 1)]


def train_student(student, projections, selector, teacher_view, train, cfg: DistillConfig, *,
                  g, seed: int, device, log, run: str, episode: int = 0,
                  learn: bool = False, reward_batches=None, dev=None) -> None:
    """One distillation run of `student` (in place).

    learn=True is a KSM episode: noisy actions, a reward per phase, agent updates.
    learn=False is a final run: the selector's noise-free actions; with `dev` =
    (task, batches, labels) the dev metric is logged at each phase end.
    """
    first = train.batches(cfg.batch_size, cfg.max_len, shuffle=True, seed=seed * 1000)
    total = cfg.epochs * len(first)
    bounds = phase_bounds(total, cfg.epochs * min(cfg.phases_per_epoch, len(first)))
    params = list(student.parameters()) + list(projections.parameters())
    opt, sched = make_optimizer(params, cfg.lr, cfg.weight_decay, total, cfg.warmup)
    norm = LossNorm(cfg.loss_norm)
    attention = range(1, len(g)) if cfg.attk_weight else ()
    loss_fn = make_fused_loss(cfg.compile)
    temperature = torch.tensor(cfg.temperature, device=device)
    attk_weight = torch.tensor(cfg.attk_weight, device=device) if cfg.attk_weight else None
    regression = student.config.num_labels == 1
    gold_before = gold_loss(student, reward_batches) if learn else None
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    student.train()
    phase, step, pending, sums = -1, 0, None, 0

    def close_phase(next_state, done):
        state, action, record = pending
        if learn:
            record.update(selector.feedback(state, action, record.pop("reward_task"), next_state, done))
        log(record)

    with Progress(total, f"{run} {episode}" if learn else run) as bar:
        for epoch in range(cfg.epochs):
            batches = first if epoch == 0 else train.batches(cfg.batch_size, cfg.max_len, shuffle=True,
                                                             seed=seed * 1000 + epoch)
            for b in batches:
                b = b.to(device)
                with autocast:
                    s_out = student(b.input_ids, b.attention_mask, b.token_type_ids,
                                    output_hidden_states=True, attention_layers=attention)
                    t = teacher_view(b)
                    if step == bounds[phase + 1]:
                        phase += 1
                        state = KnowledgeSelectionAgent.raw_state(
                            s_out.hidden_states[-1][b.valid, 0], t.hidden[-1][b.valid, 0], step / total)
                        if pending:
                            close_phase(state, done=False)
                        action = selector.act(state, explore=learn)
                        action_t = torch.as_tensor(action, dtype=torch.float32).to(device)
                        sums = 0
                    # L_t = a1 FinK + a2 ResK + a3 FeaK + a4 RelK (method.md), all in one fused graph
                    hs = [w(s_out.hidden_states[i]) for i, w in enumerate(projections)]
                    loss, raw = loss_fn(s_out.logits, t.logits, b.labels, b.valid, b.attention_mask, hs, t.hidden,
                                        action_t / norm.scale(), temperature, feak_mode=selector.feak_mode,
                                        regression=regression, scores_s=[s_out.scores[i] for i in attention],
                                        scores_t=t.scores, attk_weight=attk_weight)
                if not torch.isfinite(loss):
                    parts = ", ".join(f"{k} {v:.4g}" for k, v in zip(KNOWLEDGE, raw.tolist()))
                    raise KdError(f"{run} run, episode {episode}, step {step}: loss is {loss.item()} "
                                  f"({parts}); lower --lr or check the inputs")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                norm.update(raw)
                sums = sums + raw
                step += 1
                bar.update(loss=loss.item())
                if step == bounds[phase + 1]:
                    n = bounds[phase + 1] - bounds[phase]
                    record = {"event": "phase", "run": run, "episode": episode, "phase": phase, "step": step,
                              "action": [float(a) for a in action],
                              "losses": dict(zip(KNOWLEDGE, (sums / n).tolist())),
                              "lr": sched.get_last_lr()[0]}
                    if learn:
                        gold_after = gold_loss(student, reward_batches)
                        record["reward_task"] = gold_before - gold_after
                        gold_before = gold_after
                    if dev is not None:
                        record["dev"] = evaluate(student, dev[0], dev[1], dev[2])[0]
                    pending = (state, action, record)
        close_phase(pending[0], done=True)


def distill(student, projections, selector, teacher_view, train, cfg: DistillConfig, *, g, seed: int,
            device, log, episode_train=None, reward_batches=None, dev=None) -> dict:
    """KSM episodes (when the selector learns), then the final run. Returns wall times in seconds.

    Every episode and the final run start from the same student and projections."""
    start = {k: v.clone() for k, v in student.state_dict().items()}
    start_proj = {k: v.clone() for k, v in projections.state_dict().items()}
    times = {"episodes_s": 0.0}
    if selector.learns:
        t0 = time.perf_counter()
        for e in range(cfg.episodes):
            torch.manual_seed(seed * 100 + e)
            train_student(student, projections, selector, teacher_view, episode_train, cfg, g=g,
                          seed=seed * 100 + e, device=device, log=log, run="episode", episode=e,
                          learn=True, reward_batches=reward_batches)
            selector.end_episode()
            student.load_state_dict(start)
            projections.load_state_dict(start_proj)
        times["episodes_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    train_student(student, projections, selector, teacher_view, train, cfg, g=g, seed=seed,
                  device=device, log=log, run="final", dev=dev)
    times["final_s"] = time.perf_counter() - t0
    return times


def check_config(cfg: DistillConfig) -> None:
    """Out-of-range flags are user errors, caught before any work starts."""
    for name in ("epochs", "batch_size", "max_len", "phases_per_epoch", "episodes"):
        if getattr(cfg, name) < 1:
            raise KdError(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be at least 1")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise KdError(f"--lr {cfg.lr}: must be a positive number")
    if cfg.temperature <= 0:
        raise KdError(f"--temperature {cfg.temperature}: must be positive")
    if cfg.loss_norm not in ("none", "ema"):
        raise KdError(f"--loss-norm {cfg.loss_norm}: must be 'none' or 'ema'")
