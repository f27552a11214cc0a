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

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from kd_ref import losses
from kd_ref.agent import KnowledgeSelectionAgent, N_KNOWLEDGE
from kd_ref.corrupt import CORRUPTIBLE, corrupt_targets
from kd_ref.evaluate import evaluate, evaluate_with_loss, gold_loss
from kd_ref.fused import make_fused_loss
from kd_ref.optim import make_optimizer
from kd_ref.plumbing import distributed
from kd_ref.plumbing.compiled import compile_mode
from kd_ref.plumbing.errors import NonFinite, check_flags, one_of
from kd_ref.plumbing.progress import Progress

KNOWLEDGE = ("fink", "resk", "feak", "relk", "attk")  # attk: the extension, when --attk-weight > 0
# the values of DistillConfig's string fields (run.py lists them in --help)
CHOICES = {"loss_norm": ("auto", "ema", "none"), "action_norm": ("sum", "none"), "episode_data": ("same", "fresh"),
           "corrupt": CORRUPTIBLE}


@dataclass
class DistillConfig:
    epochs: int = 3
    batch_size: int = 32
    max_len: int = 128
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1
    max_grad_norm: float = 1.0      # the student's and projections' gradient is clipped to this global L2 norm [ours]
    phases_per_epoch: int = 4       # [ours]
    episodes: int = 4               # E [ours]
    # [ours] the refinement that eases the computation (method.md "Multi-phase training"): each KSM
    # episode trains on this fraction of its training rows (a fixed random subset), same epochs and
    # phases, so an episode costs about this fraction of the final run
    episode_fraction: float = 0.15
    # [ours] 'same': every episode sees the same batches and dropout masks, so two episodes' rewards
    # at one phase differ by what the actions did (common random numbers); 'fresh': a new order each
    episode_data: str = "same"
    temperature: float = 1.0        # ResK temperature [ours]
    # [ours] 'ema': divide each loss by a detached running mean of itself; 'auto': ema for the
    # selectors that choose weights (random-*, ksm-*, the searches), so that a weight means the same for
    # every knowledge whatever its raw scale, none for the fixed ones (finetune, kd, pkd, all, subset-*)
    loss_norm: str = "auto"
    # [ours] 'sum': the weights a selector chooses (random-*, ksm-*) are scaled to sum to 4 before use,
    # so that only their ratios act (a common scale acts through Adam's memory and clipping as a
    # learning-rate change, not as a choice of knowledge); 'none': used as chosen
    action_norm: str = "sum"
    # diagnostic [ours]: train against deliberately wrong knowledge of one kind (kd_ref/corrupt.py),
    # to check that a selector turns it down: 'none', 'resk', 'feak' or 'relk'
    corrupt: str = "none"
    attk_weight: float = 0.0        # AttK extension, a fixed weight outside the selector [ours]
    # [ours, method.md "Multi-phase training"]: the selector acts again at every step of a phase on
    # that step's state; the phase's transition then holds the mean of the weights it applied
    act_every_step: bool = False
    compile: bool = False           # torch.compile the loss (run.py compiles the models too)
    cuda_graphs: bool = False       # with compile, on CUDA: CUDA graphs (kd_ref.plumbing.compiled.compile_mode)


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

    def state_dict(self) -> dict:
        return {"mean": self.mean}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"]


def applied_weights(action, selector, cfg: DistillConfig):
    """The loss weights an action stands for: with --action-norm sum, a chosen action (random-*, ksm-*)
    scaled to sum to 4, the sum of `all`'s weights, so that only its ratios act [ours]."""
    if cfg.action_norm == "sum" and selector.chooses:
        return action * (N_KNOWLEDGE / action.sum().clamp(min=1e-6))
    return action


def episode_size(rows: int, fraction: float) -> int:
    """How many of `rows` an episode of `fraction` trains on [ours]."""
    return rows if fraction >= 1 else max(1, math.ceil(fraction * rows))


def episode_rows(episode_train, fraction: float, seed: int):
    """The fixed random subset of `fraction` of the rows every KSM episode trains on [ours]."""
    if fraction >= 1:
        return episode_train
    n = episode_size(len(episode_train), fraction)
    return episode_train.subset(np.sort(np.random.default_rng(seed).permutation(len(episode_train))[:n]))


def phase_bounds(total_steps: int, n_phases: int) -> list[int]:
    """Step at which each phase starts, plus total_steps at the end."""
    return [k * total_steps // n_phases for k in range(n_phases + 1)]


class Trainee(nn.Module):
    """Student and projections W_i as one module: what the optimizer trains, and what
    DistributedDataParallel wraps so that all their gradients are summed over ranks."""

    def __init__(self, student, projections):
        super().__init__()
        self.student, self.projections = student, projections

    def forward(self, b, attention_layers):
        """(student output, projected hidden states W_i h_i^S for i = 0..M)."""
        out = self.student(b.input_ids, b.attention_mask, b.token_type_ids,
                           output_hidden_states=True, attention_layers=attention_layers)
        return out, [w(out.hidden_states[i]) for i, w in enumerate(self.projections)]


def global_cls_mean(hidden, valid) -> torch.Tensor:
    """[D] mean of the [CLS] vectors of hidden [B, L, D] over the valid rows of the global batch."""
    total = torch.cat([hidden[:, 0].float()[valid].sum(0), valid.sum()[None].float()])
    distributed.sum_(total)
    return total[:-1] / total[-1]


def train_student(model, selector, teacher_view, train, cfg: DistillConfig, *, g, seed: int, device, log,
                  run: str, episode: int = 0, learn: bool = False, reward_batches=None, dev=None,
                  holdout=None, curve_every: int = 1, checkpoints=None, resume=None, clock=dict, episodes: int = 0,
                  after: int = 0) -> None:
    """One distillation run of model (a Trainee, maybe DDP-wrapped), in place.

    learn=True is a KSM episode: noisy actions, a reward per phase, agent updates.
    learn=False is a final run: the selector's noise-free actions; with `dev` =
    (task, batches, labels) the dev metric is logged at the end of every curve_every phases and of the
    run (0: none), and with `holdout` (the same for run.py's --holdout rows) their metric and gold loss
    there too: how a truncated run would have ranked. Neither changes the training.
    checkpoints (kd_ref.plumbing.resume) saves the training state at phase ends; resume is a
    checkpoint of this run to continue from; clock() gives the wall times so far. For the progress
    line: episodes, how many the run has; after, the steps of the runs still to come after this one.
    """
    trainee = model.module if isinstance(model, DistributedDataParallel) else model
    student = trainee.student
    first = train.batches(cfg.batch_size, cfg.max_len, shuffle=True, seed=seed * 1000, shard=distributed.shard())
    total = cfg.epochs * len(first)
    bounds = phase_bounds(total, cfg.epochs * min(cfg.phases_per_epoch, len(first)))
    params = list(trainee.parameters())
    opt, sched = make_optimizer(params, cfg.lr, cfg.weight_decay, total, cfg.warmup)
    norm = LossNorm("ema" if cfg.loss_norm == "ema" or (cfg.loss_norm == "auto" and selector.normalised) else "none")
    modules = {"student": student, "projections": trainee.projections}
    stateful = {"optimizer": opt, "scheduler": sched, "selector": selector, "loss_norm": norm}
    attention = range(1, len(g)) if cfg.attk_weight else ()
    loss_fn = make_fused_loss(cfg.compile, mode=compile_mode(cfg.cuda_graphs))
    temperature = torch.tensor(cfg.temperature, device=device)
    attk_weight = torch.tensor(cfg.attk_weight, device=device) if cfg.attk_weight else None
    regression = student.config.num_labels == 1
    label_range = (float(train.labels.min()), float(train.labels.max())) if regression else None  # --corrupt resk
    autocast = torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda")
    if resume is None:
        step, phase, pending = 0, -1, None
        gold_before = gold_loss(student, reward_batches) if reward_batches is not None else None
    else:
        loop = checkpoints.restore(resume, modules, stateful)
        step, phase, pending, gold_before = loop["step"], loop["phase"], loop["pending"], loop["gold_before"]
    model.train()

    def close_phase(next_state, done):
        state, action, record = pending
        if "reward_task" in record and distributed.is_main():  # the agent lives on rank 0
            if learn:
                record.update(selector.feedback(state, action, record.pop("reward_task"), next_state, done,
                                                record["phase"]))
            else:
                record.update(selector.judge(state, action, record["reward_task"]))
        log(record)

    desc = f"{run} run" if not learn else f"episode {episode + 1}" + (f" of {episodes}" if episodes else "")
    with Progress(total - step, desc, after=after) as bar:
        for epoch in range(cfg.epochs):
            if (epoch + 1) * len(first) <= step:
                continue  # done before the checkpoint we resumed from
            batches = first if epoch == 0 else train.batches(cfg.batch_size, cfg.max_len, shuffle=True,
                                                             seed=seed * 1000 + epoch, shard=distributed.shard())
            for b in batches[step - epoch * len(first):]:
                if cfg.cuda_graphs:  # a new step: its replays may overwrite the last step's outputs, all read by now
                    torch.compiler.cudagraph_mark_step_begin()
                b = b.to(device)
                with autocast:
                    s_out, hs = model(b, attention)
                    t = teacher_view(b)
                    new_phase = step == bounds[phase + 1]
                    if new_phase or cfg.act_every_step:
                        s_cls = global_cls_mean(s_out.hidden_states[-1], b.valid)
                        t_cls = global_cls_mean(t.hidden[-1], b.valid)
                        state = KnowledgeSelectionAgent.raw_state(s_cls[None], t_cls[None], step / total)
                        if new_phase:
                            phase += 1
                            if pending:
                                close_phase(state, done=False)
                            phase_state, applied, sums = state, [], 0
                        action = selector.act(state, explore=learn) if distributed.is_main() else torch.zeros(4)
                        action_t = distributed.from_main(action.to(device, torch.float32))
                        applied.append(action_t.cpu())
                        weights = applied_weights(action_t, selector, cfg)
                    logits_t, ht_feak, ht_relk = corrupt_targets(t, cfg.corrupt, label_range)
                    # L_t = a1 FinK + a2 ResK + a3 FeaK + a4 RelK (method.md), all in one fused graph
                    loss, raw = loss_fn(s_out.logits, logits_t, b.labels, b.valid, b.attention_mask, hs, ht_feak,
                                        weights / norm.scale(), temperature, feak_mode=selector.feak_mode,
                                        regression=regression, scores_s=[s_out.scores[i] for i in attention],
                                        scores_t=t.scores, attk_weight=attk_weight, ht_relk=ht_relk,
                                        counts=distributed.sum_(losses.counts(b.valid, b.attention_mask)),
                                        gold=b.gold)
                # each rank's losses are its share of the global batch's (global counts, kd_ref/plumbing/distributed.py):
                # summed over ranks, the global values for the log, --loss-norm and the progress bar
                global_loss, raw = distributed.sum_(torch.cat([loss.detach()[None], raw.detach()])).split([1, len(raw)])
                if not (torch.isfinite(global_loss) and torch.isfinite(raw).all()):  # every rank stops together
                    raise NonFinite(f"{run} run, episode {episode}, step {step}: loss is {global_loss.item()} "
                                    f"({parts(raw)}); lower --lr or check the inputs")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                norm.update(raw)
                sums = sums + raw
                step += 1
                bar.update(loss=global_loss.item(), phase=f"{phase + 1}/{len(bounds) - 1}",
                           milestone=step == bounds[phase + 1])
                if step == bounds[phase + 1]:
                    n = bounds[phase + 1] - bounds[phase]
                    action = selector.phase_action(applied)  # the phase's one action, or what its actions were
                    record = {"event": "phase", "run": run, "episode": episode, "phase": phase, "step": step,
                              "action": [float(a) for a in action],
                              "losses": dict(zip(KNOWLEDGE, (sums / n).tolist())),
                              "lr": sched.get_last_lr()[0]}
                    if reward_batches is not None:
                        gold_after = gold_loss(student, reward_batches)
                        record["reward_task"] = gold_before - gold_after
                        gold_before = gold_after
                    curve = curve_every > 0 and ((phase + 1) % curve_every == 0 or step == total)
                    if dev is not None and curve:
                        record["dev"] = evaluate(student, dev[0], dev[1], dev[2])[0]
                    if holdout is not None and curve:
                        record["holdout"] = evaluate_with_loss(student, *holdout)
                    pending = (phase_state, action, record)
                    if checkpoints and checkpoints.due(phase, step == total):
                        if not all(torch.isfinite(p).all() for p in params):
                            raise NonFinite(f"{run} run, episode {episode}, step {step}: non-finite weights "
                                            f"after the phase ({parts(sums / n)})")
                        if distributed.is_main() and (step == total or checkpoints.waited()):
                            checkpoints.save({"run": run, "episode": episode, "phase": phase, "step": step,
                                              "times": clock()}, modules, stateful,
                                             {"step": step, "phase": phase, "pending": pending,
                                              "gold_before": gold_before})
        close_phase(pending[0], done=True)


def parts(raw) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in zip(KNOWLEDGE, raw.tolist()))


def distill(student, projections, selector, teacher_view, train, cfg: DistillConfig, *, g, seed: int,
            device, log, episode_train=None, reward_batches=None, reward_score=None, dev=None, holdout=None,
            curve_every: int = 1, checkpoints=None, resume=None, final=True) -> dict:
    """KSM episodes (when the selector learns), then the final run (final=False: none, a search's proxies
    only, for knockout-pool). Returns wall times in seconds.
    A search (selectors.SEARCHES: halving, knockout, episode-ac) runs its proxy runs as the episodes, each scored by
    reward_score(student) on the reward split.

    Every episode and the final run start from the same student and projections.
    checkpoints (kd_ref.plumbing.resume.Checkpoints) saves the training state as it goes; with `resume`,
    one of its checkpoints, the run continues from there: earlier episodes are skipped (their
    effect on the agent is in the checkpoint) and the one it was taken in resumes.
    """
    start = {k: v.clone() for k, v in student.state_dict().items()}
    start_proj = {k: v.clone() for k, v in projections.state_dict().items()}
    model = distributed.wrap(Trainee(student, projections))
    at = resume["meta"] if resume else {"run": "episode", "episode": 0, "times": {}}
    times = {"episodes_s": 0.0, **{k: v for k, v in at["times"].items() if k != "cpu_s"}}
    # CPU seconds spent here, the processes' before a resumption included: checkpoints carry them beside the
    # wall times, so a resumed run's cost (run.py's metrics.json cpu_s) is the whole run's
    cpu0 = time.process_time() - at["times"].get("cpu_s", 0.0)

    def timed_run(key, saves=checkpoints, **kw):
        """train_student, its wall time added to times[key]; checkpoints save the times so far."""
        t0 = time.perf_counter()
        clock = lambda: {**times, key: times.get(key, 0.0) + time.perf_counter() - t0,
                         "cpu_s": time.process_time() - cpu0}
        train_student(model, selector, teacher_view, cfg=cfg, g=g, device=device, log=log,
                      checkpoints=saves, clock=clock, **kw)
        times[key] = times.get(key, 0.0) + time.perf_counter() - t0

    if selector.learns and at["run"] == "episode":
        n_episodes = selector.episodes(cfg)
        # the progress line's whole-run ETA: an episode's steps taken as the final run's in proportion to
        # its rows (length buckets aside)
        final_steps = cfg.epochs * len(train.batches(cfg.batch_size, cfg.max_len, shuffle=False,
                                                      shard=distributed.shard()))
        sizes = [episode_size(len(episode_train), selector.episode_fraction(e, cfg)) for e in range(n_episodes)]
        for e in range(at["episode"], n_episodes):
            resumed = resume if e == at["episode"] else None
            e_seed = seed * 100 + (e if cfg.episode_data == "fresh" else 0)
            if resumed is None:
                torch.manual_seed(e_seed)
            # a search's proxy run is scored once, at its end: no phase rewards (on MRPC they cost halving's
            # first rung more than its training did: 12 evaluations of the reward split for 15 steps)
            timed_run("episodes_s", train=episode_rows(episode_train, selector.episode_fraction(e, cfg), seed),
                      seed=e_seed, run="episode", episode=e, learn=True,
                      reward_batches=None if selector.scores_episodes else reward_batches,
                      resume=resumed, saves=checkpoints.at_run_ends() if checkpoints and selector.scores_episodes
                      else checkpoints, episodes=n_episodes,
                      after=final_steps + sum(math.ceil(final_steps * n / len(train)) for n in sizes[e + 1:]))
            if selector.scores_episodes:  # a search: the episode's score on the reward split decides
                t0 = time.perf_counter()
                log(selector.end_episode(reward_score(student)))
                times["episodes_s"] += time.perf_counter() - t0
            else:
                selector.end_episode()
            student.load_state_dict(start)
            projections.load_state_dict(start_proj)
    if not final:
        return times
    resumed = resume if at["run"] == "final" else None
    if resumed is None:
        torch.manual_seed(seed)
    timed_run("final_s", train=train, seed=seed, run="final", dev=dev, holdout=holdout, curve_every=curve_every,
              resume=resumed, reward_batches=reward_batches)
    return times


def check_config(cfg: DistillConfig) -> None:
    """Out-of-range flags are user errors, caught before any work starts."""
    at_least_1 = (lambda v: v >= 1, "at least 1")
    check_flags(cfg, {"epochs": at_least_1, "batch_size": at_least_1, "max_len": at_least_1,
                      "phases_per_epoch": at_least_1, "episodes": at_least_1,
                      "lr": (lambda v: 0 < v < math.inf, "a positive number"),
                      "weight_decay": (lambda v: v >= 0, "0 or more"),
                      "warmup": (lambda v: 0 <= v < 1, "a fraction of the steps in [0, 1)"),
                      "max_grad_norm": (lambda v: v > 0, "a positive number (inf: no clipping)"),
                      "temperature": (lambda v: 0 < v < math.inf, "a positive number"),
                      "episode_fraction": (lambda v: 0 < v <= 1, "in (0, 1]"),
                      "attk_weight": (lambda v: v >= 0, "0 or more"), **one_of(CHOICES)})
