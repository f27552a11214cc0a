"""Every knowledge selector behind one flag: method.md "Selectors".

A selector gives, once per phase, the weights a = (a1, a2, a3, a4) of the
losses (FinK, ResK, FeaK, RelK) in L = a1 FinK + a2 ResK + a3 FeaK + a4 RelK,
and hears back the phase's task reward. Only the ksm-* selectors learn from it,
in their episodes (`feedback`); in a final run every selector only reports it
(`judge`), so every method's final run logs the same reward columns.
"""
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from kd_ref.agent import AgentConfig, KnowledgeSelectionAgent, N_KNOWLEDGE, force_fink
from kd_ref.plumbing.errors import KdError

METHODS = ("finetune", "kd", "pkd", "all", "random-soft", "random-hard", "ksm-soft", "ksm-hard")
# [ours] subset-XXXX: a fixed subset, one 0/1 digit per knowledge in FinK, ResK, FeaK, RelK order
# (subset-1111 is all). Not the paper's: it asks what one fixed choice achieves, the most a selector
# that settles on that choice could.
SUBSET = "subset-"


def subset_weights(method: str) -> tuple[int, ...] | None:
    """The weights of a subset-XXXX method; None for any other name."""
    digits = method.removeprefix(SUBSET)
    if not method.startswith(SUBSET) or len(digits) != 4 or set(digits) - {"0", "1"}:
        return None
    return tuple(int(d) for d in digits)


def check_method(method: str) -> None:
    """A method run.py and make_selector accept, or a one-line error naming it and the choices."""
    weights = subset_weights(method)
    if method not in METHODS and weights is None:
        raise KdError(f"--method {method}: unknown; expected one of {', '.join(METHODS)}, or {SUBSET}XXXX "
                      "(one 0/1 digit each for FinK, ResK, FeaK, RelK)")
    if weights is not None and not (weights[0] or weights[1]):
        raise KdError(f"--method {method}: keeps neither FinK nor ResK, so nothing trains the classifier")


@dataclass
class SelectorConfig:
    alpha: float = 0.5  # kd: L = (1 - alpha) FinK + alpha ResK [paper]
    # pkd: weight of FeaK(cls) [ours]. Unit [CLS] vectors make its per-entry MSE at most
    # 4/D (about 0.01 for D = 384), negligible beside the cross-entropy without a large weight.
    beta: float = 100.0
    agent: AgentConfig = field(default_factory=AgentConfig)  # ksm-*: `hard` is set from the method


class Selector:
    """The interface, and what the selectors that do not learn share."""

    learns = False  # True: needs KSM episodes before the final run
    chooses = False  # True: the weights are chosen per phase (random-*, ksm-*), so --loss-norm auto normalises them
    hard = False  # True: actions are binary
    feak_mode = "tokens"  # which FeaK the loop computes: 'tokens' (losses.feak) or 'cls' (losses.feak_cls)

    def __init__(self, method: str):
        self.method = method

    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        """[4] weights (a1..a4) for (FinK, ResK, FeaK, RelK) for the coming phase."""
        raise NotImplementedError

    def judge(self, raw_state: Tensor, action: Tensor, task_reward: float) -> dict:
        """A phase of a run that does not learn (every method's final run): its reward parts, with no
        exploration reward, and Q(s, a) where there is a critic. The task reward is measured the
        same way for every method, so it is the yardstick they are compared on."""
        return {"reward_explore": 0.0, "reward": task_reward}

    def phase_action(self, applied: list[Tensor]) -> Tensor:
        """The one action a phase stands for when the selector acted at every step (--act-every-step):
        the mean weights applied, or for binary actions each knowledge's majority (ties on), so
        that the action stays binary and the hard exploration reward can count repeats."""
        mean = torch.stack(applied).mean(0)
        return force_fink((mean >= 0.5).float()) if self.hard else mean

    def end_episode(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class FixedSelector(Selector):
    """finetune, kd, pkd, all, subset-XXXX: the same weights every phase."""

    def __init__(self, method: str, weights: tuple, feak_mode: str = "tokens"):
        super().__init__(method)
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.feak_mode = feak_mode

    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        return self.weights.clone()


class RandomSelector(Selector):
    """random-soft: a ~ U[0,1]^4; random-hard: a_i ~ Bernoulli(0.5), FinK forced on if all are off.

    Drawn afresh every phase, also in the final run (it is the baseline for
    selection itself), from its own generator.
    """

    chooses = True

    def __init__(self, method: str, hard: bool, seed: int):
        super().__init__(method)
        self.hard = hard
        self.generator = torch.Generator().manual_seed(seed)

    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        a = torch.rand(N_KNOWLEDGE, generator=self.generator)
        return force_fink((a < 0.5).float()) if self.hard else a

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class KsmSelector(Selector):
    """ksm-soft, ksm-hard: the knowledge selection module (kd_ref.agent)."""

    learns = chooses = True

    def __init__(self, method: str, agent: KnowledgeSelectionAgent):
        super().__init__(method)
        self.agent = agent
        self.hard = agent.config.hard

    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        return self.agent.act(raw_state, explore)

    def feedback(self, raw_state: Tensor, action: Tensor, task_reward: float, next_raw_state: Tensor,
                 done: bool, phase: int) -> dict:
        """A KSM episode's phase: the agent learns from it (kd_ref.agent: exploration reward, phase
        baseline); returns the reward parts and what learning gave."""
        return self.agent.observe(raw_state, action, task_reward, next_raw_state, done, phase)

    def judge(self, raw_state: Tensor, action: Tensor, task_reward: float) -> dict:
        return {**super().judge(raw_state, action, task_reward), "q": self.agent.q_value(raw_state, action)}

    def end_episode(self) -> None:
        self.agent.end_episode()

    def state_dict(self) -> dict:
        return self.agent.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state)


def make_selector(method: str, student_dim: int, teacher_dim: int, config: SelectorConfig, seed: int) -> Selector:
    """The selector for `method` (one of METHODS); dims are the [CLS] widths the KSM state reads."""
    check_method(method)
    if not 0 <= config.alpha <= 1:
        raise KdError(f"selectors.py: kd alpha must lie in [0, 1], got {config.alpha}")
    fixed = {"finetune": (1, 0, 0, 0), "kd": (1 - config.alpha, config.alpha, 0, 0),
             "pkd": (1, 1, config.beta, 0), "all": (1, 1, 1, 1)}
    weights = fixed.get(method) or subset_weights(method)
    if weights:
        return FixedSelector(method, weights, feak_mode="cls" if method == "pkd" else "tokens")
    hard = method.endswith("-hard")
    if method.startswith("random-"):
        return RandomSelector(method, hard, seed)
    agent = KnowledgeSelectionAgent(student_dim, teacher_dim, replace(config.agent, hard=hard), seed)
    return KsmSelector(method, agent)
