"""Does one phase's reward show the action when nothing else changes? A probe of the KSM's reward.

    python experiments/phase_probe.py experiments/logs/probe/mrpc-s1.jsonl --task mrpc --teacher runs/study/mrpc/teacher \
        --student-layers 3 --lr 2e-4 --seed 1
    python experiments/phase_probe.py --summary experiments/logs/probe/mrpc-s*.jsonl

The flags after the output file are run.py's; the teacher must already have a classifier for the
task (a fine-tuned teacher folder such as runs/study/TASK/teacher). It trains one KSM episode's
student (seed's episode rows, batches and dropout, kd_ref.distill.train_student itself) with the
reference action (all four knowledges at 1) as the trunk, and at the start of every phase continues
from the trunk's exact state (weights, Adam, schedule, loss-norm means, RNG) for one phase with:
  ref        the reference action again: the trunk's own reward for the phase ('trunk'), bit for bit,
             or the continuation does not start where the trunk was,
  ref_again  the reference action once more: equal to ref bit for bit, or the pairing is broken,
  -fink .. -relk   one knowledge turned off (with --action-norm sum the others then weigh 4/3),
  ref_other  the reference action on other batches and dropout (another batch order, another RNG):
             how much a reward varies by what the action does not decide.
Each continuation's reward is the KSM's (the phase's decrease of the gold loss on the held-out
reward split). One JSON line per phase. The summary gives, per knowledge, the paired effect of
having it (ref - without it) over phases: mean, sd, t and how often it was positive, beside the
spread an unpaired reward has (sd of ref - ref_other, over sqrt 2).
"""
import copy
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import run  # noqa: E402
from kd_ref.data.glue import get_task, resolve_data_dir  # noqa: E402
from kd_ref.data.splits import encode_split, stratified_split  # noqa: E402
from kd_ref.data.tokenizer import BertTokenizer  # noqa: E402
from kd_ref.distill import DistillConfig, Trainee, episode_rows, train_student  # noqa: E402
from kd_ref.plumbing.checkpoint import load_bert  # noqa: E402
from kd_ref.plumbing.errors import KdError  # noqa: E402
from kd_ref.plumbing.resume import Checkpoints, rng_state  # noqa: E402
from kd_ref.plumbing.teacher_setup import make_teacher_view  # noqa: E402
from kd_ref.selectors import Selector  # noqa: E402
from kd_ref.student import build_student, default_layers, layer_map, make_projections  # noqa: E402

KNOWLEDGE = ("fink", "resk", "feak", "relk")
REFERENCE = (1.0, 1.0, 1.0, 1.0)
ACTIONS = {"ref": REFERENCE, "ref_again": REFERENCE,
           **{f"-{k}": tuple(0.0 if j == i else 1.0 for j in range(4)) for i, k in enumerate(KNOWLEDGE)}}


class Scripted(Selector):
    """One fixed action, normalised like the selectors that choose (--loss-norm auto, --action-norm sum)."""

    chooses = True

    def __init__(self, action):
        super().__init__("probe")
        self.action = torch.tensor(action, dtype=torch.float32)

    def act(self, raw_state, explore):
        return self.action.clone()


class Snapshots(Checkpoints):
    """train_student's checkpoints kept in memory: every phase end's whole state when `keep` (the
    trunk), none otherwise (a continuation)."""

    def __init__(self, keep: bool):
        self.keep, self.saved = keep, []

    def due(self, phase: int, last: bool) -> bool:
        return self.keep

    def waited(self) -> bool:  # in memory: every phase end, however short
        return True

    def save(self, meta, modules, stateful, loop) -> None:
        weights = {f"{name}.{k}": v for name, module in modules.items() for k, v in module.state_dict().items()}
        state = {name: obj.state_dict() for name, obj in stateful.items()}
        self.saved.append(copy.deepcopy({"meta": meta, "weights": weights,
                                         "state": {**state, "loop": loop, "rng": rng_state()}}))

    def restore(self, ckpt, modules, stateful) -> dict:
        # from a copy: Optimizer.load_state_dict keeps the very tensors it is given, which the fused
        # AdamW then updates in place, and a snapshot is restored once per action
        return super().restore(copy.deepcopy(ckpt), modules, stateful)


class Reached(Exception):
    """Raised from the log when the probed phase's record arrives: the continuation stops there."""


def probe(out_path: Path, argv: list[str]) -> None:
    args = run.parse_args(argv)
    if not args.task or not args.teacher:
        raise KdError("phase_probe.py: --task and --teacher are required")
    device = torch.device("cpu")
    task = get_task(args.task)
    tokenizer = BertTokenizer.from_dir(args.teacher, max_len=args.max_len)
    data_dir = resolve_data_dir(args.data_dir)
    train = encode_split(data_dir, task, "train", tokenizer)
    torch.manual_seed(args.teacher_seed)
    teacher, ready = load_bert(args.teacher, num_labels=task.num_labels)
    if not ready:
        raise KdError(f"{args.teacher}: no classifier for {task.name}; fine-tune it first (run.py --teacher-only)")
    teacher.eval()
    layers = args.student_layers or default_layers(teacher.config.num_hidden_layers)
    g = layer_map(teacher.config.num_hidden_layers, layers)
    with tempfile.TemporaryDirectory() as scratch:  # a teacher cache not found beside the teacher goes here
        view = make_teacher_view(args, teacher, Path(args.teacher), train, g, device, Path(scratch))
    torch.manual_seed(args.seed)  # as run.py: the student's projections are drawn from the run's seed
    student = build_student(teacher, layers, args.student_hidden, args.student_init, g)
    projections = make_projections(student.config.hidden_size, teacher.config.hidden_size, len(g))
    model = Trainee(student, projections)
    start = copy.deepcopy(model.state_dict())
    keep, held = stratified_split(train.labels, args.reward_fraction, args.seed, task.labels is None)
    rows = episode_rows(train.subset(keep), args.episode_fraction, args.seed)
    reward_batches = train.subset(held).batches(args.batch_size, args.max_len, shuffle=False)
    cfg = run.config_from(args, DistillConfig)
    seed = args.seed * 100  # an episode's seed (kd_ref.distill.distill)

    def episode(action, log, snapshots, resume=None, batch_seed=seed):
        if resume is None:  # from the start of the episode, as distill() starts one
            model.load_state_dict(start)
            torch.manual_seed(batch_seed)
        train_student(model, Scripted(action), view, rows, cfg, g=g, seed=batch_seed, device=device, log=log,
                      run="episode", reward_batches=reward_batches, checkpoints=snapshots, resume=resume)

    def reward(phase, action, resume, other=False):
        """The reward of `phase`, continued from `resume` (None: the episode's start) with `action`;
        other: another batch order and another RNG state."""
        def log(record):
            if record["phase"] == phase:
                raise Reached(record["reward_task"])
        if other and resume is not None:
            rng = {**resume["state"]["rng"], "torch": torch.Generator().manual_seed(seed + 1).get_state()}
            resume = {**resume, "state": {**resume["state"], "rng": rng}}
        try:
            episode(action, log, Snapshots(keep=False), resume, batch_seed=seed + 1 if other else seed)
        except Reached as r:
            return r.args[0]
        raise AssertionError(f"phase {phase} never ended")

    trunk, trunk_rewards = Snapshots(keep=True), {}
    episode(REFERENCE, lambda record: trunk_rewards.update({record["phase"]: record["reward_task"]}), trunk)
    starts = [None] + trunk.saved[:-1]  # the state at the start of each phase
    with open(out_path, "a") as out:
        for phase, resume in enumerate(starts):
            rewards = {name: reward(phase, action, resume) for name, action in ACTIONS.items()}
            record = {"task": task.name, "seed": args.seed, "phase": phase, "trunk": trunk_rewards[phase],
                      "rewards": rewards,
                      "ref_other": reward(phase, REFERENCE, resume, other=True)}
            out.write(json.dumps(record) + "\n")
            out.flush()
            print(json.dumps(record), flush=True)


def summary(records: list[dict]) -> list[str]:
    """Per knowledge, the paired effect of having it over the probed phases, and the unpaired spread."""
    def stats(values):
        mean, sd = statistics.mean(values), statistics.stdev(values)
        return mean, sd, mean / (sd / len(values) ** 0.5) if sd > 0 else float("nan")
    pairing = max(abs(r["rewards"]["ref_again"] - r["rewards"]["ref"]) for r in records)
    unpaired = statistics.stdev(r["rewards"]["ref"] - r["ref_other"] for r in records) / 2 ** 0.5
    runs = sorted({(r["task"], r["seed"]) for r in records})
    out = [f"{len(records)} phases of {', '.join(f'{t} s{s}' for t, s in runs)}; ref_again - ref at most "
           f"{pairing:.3g}; spread of an unpaired reward {unpaired:.4f}; sd of the reward over phases "
           f"{statistics.stdev(r['rewards']['ref'] for r in records):.4f}", "",
           "| knowledge | effect of having it, mean | sd | t | phases positive |", "|---|---|---|---|---|"]
    for k in KNOWLEDGE:
        effects = [r["rewards"]["ref"] - r["rewards"][f"-{k}"] for r in records]
        mean, sd, t = stats(effects)
        out.append(f"| {k} | {mean:+.4f} | {sd:.4f} | {t:+.2f} | {sum(e > 0 for e in effects)}/{len(effects)} |")
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--summary"]:
        print("\n".join(summary([json.loads(line) for f in sys.argv[2:] for line in open(f)])))
    else:
        probe(Path(sys.argv[1]), sys.argv[2:])
