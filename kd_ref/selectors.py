"""Every knowledge selector behind one flag: method.md "Selectors".

A selector gives, once per phase, the weights a = (a1, a2, a3, a4) of the
losses (FinK, ResK, FeaK, RelK) in L = a1 FinK + a2 ResK + a3 FeaK + a4 RelK,
and hears back the phase's task reward. Only the ksm-* selectors learn from it,
in their episodes (`feedback`); in a final run every selector only reports it
(`judge`), so every method's final run logs the same reward columns.
"""
import itertools
import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from kd_ref.agent import AgentConfig, KnowledgeSelectionAgent, N_KNOWLEDGE, force_fink
from kd_ref.plumbing.errors import KdError

METHODS = ("finetune", "kd", "pkd", "all", "random-soft", "random-hard", "ksm-soft", "ksm-hard", "halving", "knockout")
SEARCHES = ("halving", "knockout")  # selectors.SubsetSearch
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
    # halving, knockout [ours]: the proxy runs cost this many final runs in all (so a search run costs
    # about 1 + search_budget runs), and are scored by the reward split's main metric or its gold loss
    search_budget: float = 1.5
    search_score: str = "metric"


class Selector:
    """The interface, and what the selectors that do not learn share."""

    learns = False  # True: needs episodes before the final run (ksm-*, halving, knockout)
    chooses = False  # True: the weights are chosen per phase (random-*, ksm-*), scaled by --action-norm
    scores_episodes = False  # True: a search, each episode scored on the reward split (halving, knockout)
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

    @property
    def normalised(self) -> bool:
        """--loss-norm auto normalises the losses of selectors that choose among them."""
        return self.chooses

    def episodes(self, cfg) -> int:
        return cfg.episodes

    def episode_fraction(self, episode: int, cfg) -> float:
        """The share of the episode rows episode `episode` trains on (the same rows for every episode
        of one fraction: distill.episode_rows)."""
        return cfg.episode_fraction

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


def rank_key(score: float, gold_loss: float) -> tuple[float, float]:
    """How a search orders its proxy runs: the higher score first; ties (a metric on a few hundred rows
    often ties) to the lower gold loss, then, the sort being stable, to the earlier candidate."""
    return -score, gold_loss


class SubsetSearch(Selector):
    """halving and knockout [ours, after issue 27]: a search over fixed subsets by short whole runs.

    The KSM's one-phase reward cannot see what a subset does to a whole run (experiments/RESULTS-kd.md),
    so these selectors compare whole runs. Their episodes are short proxy runs of candidate subsets,
    paired (the same start, rows, batches and dropout masks), each scored at its end on the reward split
    (held-out rows of train, never dev). Rung k keeps the better half of rung k-1 (ceil) and gives each
    survivor more rows: rung k's candidates share budget / rungs of a final run's cost, so the search
    costs `search_budget` final runs in all. The final run trains the winner, as subset-XXXX would, with
    --loss-norm auto normalising (the same as subset-XXXX --loss-norm ema, the control's normalisation).

    halving: the 12 subsets with FinK or ResK on, rungs of 12, 6, 3, 2 (the first at 1/48 of the budget
    each). knockout: `all` and the four subsets that leave one knowledge out, one rung of 5 at 1/5 of
    the budget each (0.3 of a run at 1.5): fewer candidates, so each proxy runs longer, where the study
    found the ranking of truncated runs settles (about a third of a run); it bets that what one
    knowledge does shows beside the other three, as it did on MRPC (each knowledge's effect had the same
    sign in nearly every pair of subsets). Ties go to the lower gold loss, then to the earlier candidate
    (knockout's first is `all`).
    """

    learns = scores_episodes = True
    normalised = True

    def __init__(self, method: str, budget: float):
        super().__init__(method)
        every = [w for w in itertools.product((1, 0), repeat=N_KNOWLEDGE) if w[0] or w[1]]
        if method == "halving":
            self.candidates = every
            self.rungs = [len(every)]  # candidates per rung: 12, 6, 3, 2
            while self.rungs[-1] > 2:
                self.rungs.append(math.ceil(self.rungs[-1] / 2))
        else:  # knockout
            self.candidates = [every[0]] + [tuple(int(j != i) for j in range(N_KNOWLEDGE)) for i in range(N_KNOWLEDGE)]
            self.rungs = [len(self.candidates)]
        self.budget = budget
        self.scores: list[tuple[float, float]] = []  # (score, gold loss) per finished episode, in order

    def rung_of(self, episode: int) -> tuple[int, int]:
        """(rung, place in the rung) of an episode."""
        for k, n in enumerate(self.rungs):
            if episode < n:
                return k, episode
            episode -= n
        raise IndexError(episode)

    def standing(self, k: int) -> list[tuple]:
        """Rung k's candidates, each rung ranked by the scores its episodes earned (rank_key)."""
        alive, first = list(self.candidates), 0
        for j in range(k):
            scores = self.scores[first:first + len(alive)]
            keep = self.rungs[j + 1] if j + 1 < len(self.rungs) else 1
            alive = [alive[i] for i in sorted(range(len(alive)), key=lambda i: rank_key(*scores[i]))[:keep]]
            first += self.rungs[j]
        return alive

    def winner(self) -> tuple:
        return self.standing(len(self.rungs))[0]

    def episodes(self, cfg) -> int:
        return sum(self.rungs)

    def episode_fraction(self, episode: int, cfg) -> float:
        return min(1.0, self.budget / (len(self.rungs) * self.rungs[self.rung_of(episode)[0]]))

    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        """The candidate of the episode under way, once they are all scored the winner."""
        done = len(self.scores)
        if done == sum(self.rungs):
            return torch.tensor(self.winner(), dtype=torch.float32)
        k, i = self.rung_of(done)
        return torch.tensor(self.standing(k)[i], dtype=torch.float32)

    def feedback(self, raw_state: Tensor, action: Tensor, task_reward: float, next_raw_state: Tensor,
                 done: bool, phase: int) -> dict:
        return self.judge(raw_state, action, task_reward)  # a proxy run learns nothing per phase

    def end_episode(self, score: dict) -> dict:
        """Record an episode's score ({'score': the number compared, 'loss': the gold loss, ...}); returns
        the log line that says which candidate it was."""
        episode = len(self.scores)
        k, i = self.rung_of(episode)
        subset = "".join(map(str, self.standing(k)[i]))
        self.scores.append((float(score["score"]), float(score["loss"])))
        record = {"event": "search", "episode": episode, "rung": k, "subset": subset,
                  "fraction": self.episode_fraction(episode, None), **score}
        if len(self.scores) == sum(self.rungs):
            record["winner"] = "".join(map(str, self.winner()))
        return record

    def state_dict(self) -> dict:
        return {"scores": torch.tensor(self.scores, dtype=torch.float64).reshape(-1, 2)}

    def load_state_dict(self, state: dict) -> None:
        self.scores = [tuple(s) for s in state["scores"].tolist()]


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
    if method in SEARCHES:
        if config.search_budget <= 0:
            raise KdError(f"--search-budget {config.search_budget}: must be a positive number of final runs")
        return SubsetSearch(method, config.search_budget)
    hard = method.endswith("-hard")
    if method.startswith("random-"):
        return RandomSelector(method, hard, seed)
    agent = KnowledgeSelectionAgent(student_dim, teacher_dim, replace(config.agent, hard=hard), seed)
    return KsmSelector(method, agent)
