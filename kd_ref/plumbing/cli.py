"""run.py's argument parser: every flag with a help text, its default shown once and its
choices listed; a bad value is one line (KdError), like every other user error."""
import argparse
import dataclasses

from kd_ref.plumbing.errors import KdError

# The help of the flags run.py makes from DistillConfig and AgentConfig fields (their defaults live in
# the dataclasses, their values in each module's CHOICES). [ours]: our reconstruction (README.md).
FIELD_HELP = {
    "epochs": "student training epochs (each KSM episode too)",
    "batch_size": "student batch size (under torchrun: the global batch)",
    "max_len": "tokens per example, longer pairs truncated",
    "lr": "student peak learning rate (AdamW; 3-layer students of MiniLM learnt best at 2e-4: "
          "experiments/RESULTS-kd.md)",
    "weight_decay": "student AdamW weight decay",
    "warmup": "share of the steps the learning rate warms up over [ours]",
    "max_grad_norm": "clip the global L2 norm of the student's and projections' gradient to this [ours]",
    "phases_per_epoch": "phases per epoch; a selector's action holds for a phase [ours]",
    "episodes": "KSM episodes before the final run [ours]",
    "episode_fraction": "share of the training rows each KSM episode trains on [ours]",
    "episode_data": "'same': every episode sees the same batches and dropout masks; 'fresh': new ones [ours]",
    "temperature": "ResK softmax temperature [ours]",
    "loss_norm": "divide each loss by a running mean of itself: 'auto' for the selectors that choose "
                 "weights (random-*, ksm-*) [ours]",
    "action_norm": "'sum': chosen weights scaled to sum to 4, so that only their ratios act [ours]",
    "corrupt": "diagnostic: plant harm in one kind of knowledge (kd_ref/corrupt.py) [ours]",
    "attk_weight": "weight of the attention-score extension AttK, outside the selector; 0: off [ours]",
    "act_every_step": "the selector acts at every step, not once a phase [ours]",
    "cuda_graphs": "with --compile on CUDA, one process: the teacher, the student and the fused loss run as CUDA "
                   "graphs (torch.compile mode reduce-overhead), one launch per graph; the compiled step was bound "
                   "by the host's launches (speed/BENCHMARKS.md); off by default until measured in a whole run",
    "hidden": "KSM: width of every MLP [ours]",
    "gamma": "KSM: discount of the TD target [ours]",
    "tau": "KSM: soft update rate of the target networks [ours]",
    "lr_actor": "KSM: actor learning rate (Adam) [ours]",
    "lr_critic": "KSM: critic and state encoders learning rate (Adam) [ours]",
    "critic_weight_decay": "KSM: L2 on the critic and state encoders [ours]",
    "noise_sigma": "KSM: std of the Gaussian action noise in the first episode [ours]",
    "noise_decay": "KSM: the noise std is multiplied by this after every episode [ours]",
    "explore_weight": "KSM: weight of the exploration reward [ours]",
    "reward_baseline": "KSM: 'phase': learn from the task reward less its mean at the same phase, "
                       "scaled; 'none': from the raw reward [ours]",
    "threshold": "ksm-hard: a knowledge is on when its actor output plus noise exceeds this [ours]",
    "replay_batch": "KSM: replay minibatch [ours]",
    "updates_per_phase": "KSM: agent updates per phase [ours]",
    "buffer_size": "KSM: replay buffer capacity [ours]",
}


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one KdError line (`--lr: expected a number, got 'x'`),
    not argparse's usage block."""

    def error(self, message):
        raise KdError(message.removeprefix("argument "))


class HelpFormatter(argparse.HelpFormatter):
    """Each flag's default once, after its help; none where there is nothing to show (no default, a
    switch that is off) or the help already says it."""

    def _get_help_string(self, action):
        text = (action.help or "").replace(" (default: %(default)s)", "")  # BooleanOptionalAction adds one
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


def number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


TYPES = {float: number, int: integer, str: str}


def add_fields(group, config_class, choices=None, skip=()):
    """One flag per field of a config dataclass, with the field's default: the dataclass is the
    single place where a default is written down; `choices` (field -> values) lists the values of
    its string fields."""
    for f in dataclasses.fields(config_class):
        if f.name in skip:
            continue
        flag, help = "--" + f.name.replace("_", "-"), FIELD_HELP[f.name]
        if isinstance(f.default, bool):  # --x / --no-x: argparse's type=bool would take "False" as true
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help)
        else:
            group.add_argument(flag, type=TYPES[type(f.default)], default=f.default, help=help,
                               choices=(choices or {}).get(f.name))
