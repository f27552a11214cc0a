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

METHODS = ("finetune", "kd", "pkd", "all", "random-soft", "random-hard", "ksm-soft", "ksm-hard", "halving", "knockout",
           "knockout-gate", "episode-ac", "knockout-pool")
# the selectors that compare short whole runs, each scored on the reward split: SubsetSearch, EpisodeActorCritic
SEARCHES = ("halving", "knockout", "knockout-gate", "episode-ac")
# [ours] subset-XXXX: a fixed subset, one 0/1 digit per knowledge in FinK, ResK, FeaK, RelK order
# (subset-1111 is all). Not the paper's: it asks what one fixed choice achieves, the most a selector
# that settles on that choice could.
SUBSET = "subset-"
# the 12 subsets with FinK or ResK on (what trains the classifier), `all` first, then counting down in binary
SUBSETS = [w for w in itertools.product((1, 0), repeat=N_KNOWLEDGE) if w[0] or w[1]]


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
    # halving, knockout, episode-ac [ours]: the proxy runs cost this many final runs in all (so a search run
    # costs about 1 + search_budget runs), and are scored by minus the reward split's gold loss ('loss') or by
    # its main metric ('metric'). The loss since 2026-12-02: on MRPC's part-1 seeds its winners had the better
    # whole runs (experiments/RESULTS-kd.md), and a metric on a few hundred rows ties often, which tells
    # episode-ac's critic nothing (on the demo task with harm planted in ResK every proxy tied on accuracy)
    search_budget: float = 1.5
    search_score: str = "loss"
    # knockout-gate [ours]: leave `all` only for a subset whose proxy's gold loss on the reward rows is lower
    # than all's by at least this paired z (mean row difference over its standard error; 2, the usual
    # two-sided 5% level) and by at least this share of all's (the lead; 2%, chosen on knockout's proxies of
    # seeds 6-10: it left `all` for leads of 0.4-1.4% on CoLA and lost, for 1.5-7% on MRPC and won;
    # experiments/RESULTS-kd.md "knockout-gate")
    search_gate: float = 2.0
    search_lead: float = 0.02
    # knockout-pool [ours]: the subset (its digits) chosen once for the task from earlier runs' proxies
    # (kd_ref/pool.py; run.py makes the choice from --pool-from)
    pooled: str = ""


class Selector:
    """The interface, and what the selectors that do not learn share."""

    learns = False  # True: needs episodes before the final run (ksm-*, the searches)
    chooses = False  # True: the weights are chosen per phase (random-*, ksm-*), scaled by --action-norm
    scores_episodes = False  # True: a search, each episode scored on the reward split (SEARCHES)
    per_row = False  # True: a search that needs each reward row's gold loss too (knockout-gate)
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


class PooledChoice(FixedSelector):
    """knockout-pool [ours]: the subset kd_ref/pool.py chose for the task, every phase. Its losses are
    normalised as the searches' are (--loss-norm auto), so its run is subset-XXXX --loss-norm ema's."""

    normalised = True


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


def paired_z(rows, reference: Tensor) -> float:
    """The paired z of one proxy's per-row gold losses against another's on the same rows: the mean
    difference over its standard error (negative: lower loss than the reference; 0 if they are equal)."""
    d = torch.as_tensor(rows, dtype=torch.float64) - reference
    se = d.std() / math.sqrt(len(d))
    return float(d.mean() / se) if se > 0 else 0.0


def rank_key(score: float, gold_loss: float) -> tuple[float, float]:
    """How a search orders its proxy runs: the higher score first; ties (a metric on a few hundred rows
    often ties) to the lower gold loss, then, the sort being stable, to the earlier candidate."""
    return -score, gold_loss


def lead_over(gold_loss: float, reference: float) -> float:
    """How much lower a proxy's gold loss is than the reference's (all's), as a share of the reference's."""
    return 1 - gold_loss / reference


def gated_pick(scores: list[tuple[float, float]], lead: float, gate: float, z: list[float] | None) -> int:
    """knockout-gate's winner among one rung's proxies, (score, gold loss) each, the first all's: the
    best-ranked (rank_key) whose gold loss leads all's by at least `lead` and, where z is given, whose
    paired z against all's is at most -gate; else 0, all. (experiments/gate_table.py replays it.)"""
    ranked = sorted(range(len(scores)), key=lambda i: rank_key(*scores[i]))
    clear = lambda i: lead_over(scores[i][1], scores[0][1]) >= lead and (z is None or z[i] <= -gate)
    return next(i for i in ranked if i == 0 or clear(i))


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

    knockout-gate: knockout's proxies, but the winner must beat `all` by a margin, not by any: the
    best-ranked candidate whose proxy's gold loss on the reward rows is lower than all's proxy's by a
    paired z of at least `gate` (row by row: both proxies score the same rows) and by a share `lead` of
    all's, else `all`. A selector that leaves the control only for a proxy's lead that stands out of the
    reward rows' noise and is as large as the leads that paid in whole runs.
    """

    learns = scores_episodes = True
    normalised = True

    def __init__(self, method: str, budget: float, gate: float = 0.0, lead: float = 0.0):
        super().__init__(method)
        if method == "halving":
            self.candidates = SUBSETS
            self.rungs = [len(SUBSETS)]  # candidates per rung: 12, 6, 3, 2
            while self.rungs[-1] > 2:
                self.rungs.append(math.ceil(self.rungs[-1] / 2))
        else:  # knockout, knockout-gate
            self.candidates = [SUBSETS[0]] + [tuple(int(j != i) for j in range(N_KNOWLEDGE)) for i in range(N_KNOWLEDGE)]
            self.rungs = [len(self.candidates)]
        self.budget = budget
        self.gate, self.lead = (gate, lead) if method == "knockout-gate" else (0.0, 0.0)
        self.per_row = self.gate > 0
        self.scores: list[tuple[float, float]] = []  # (score, gold loss) per finished episode, in order
        self.z: list[float] = []  # knockout-gate: each episode's paired z against `all`'s proxy (0 for all's)
        self.reference = torch.zeros(0, dtype=torch.float64)  # knockout-gate: all's proxy's row losses

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
        if not self.gate:
            return self.standing(len(self.rungs))[0]
        return self.candidates[gated_pick(self.scores, self.lead, self.gate, self.z)]

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
        score = dict(score)
        rows = score.pop("row_losses", None)
        self.scores.append((float(score["score"]), float(score["loss"])))
        gated = {}
        if self.gate:
            if episode == 0:  # `all`, the reference
                self.reference = torch.as_tensor(rows, dtype=torch.float64)
            self.z.append(paired_z(rows, self.reference))
            gated = {"z_vs_all": self.z[-1], "lead_vs_all": lead_over(self.scores[-1][1], self.scores[0][1])}
        record = {"event": "search", "episode": episode, "rung": k, "subset": subset,
                  "fraction": self.episode_fraction(episode, None), **score, **gated}
        if len(self.scores) == sum(self.rungs):
            record["winner"] = "".join(map(str, self.winner()))
        return record

    def state_dict(self) -> dict:
        return {"scores": torch.tensor(self.scores, dtype=torch.float64).reshape(-1, 2),
                "z": torch.tensor(self.z, dtype=torch.float64), "reference": self.reference}

    def load_state_dict(self, state: dict) -> None:
        self.scores = [tuple(s) for s in state["scores"].tolist()]
        # a checkpoint made before knockout-gate (2026-12-03) has neither: knockout never read them
        self.z = state["z"].tolist() if "z" in state else []
        self.reference = state.get("reference", torch.zeros(0, dtype=torch.float64))


class EpisodeActorCritic(Selector):
    """episode-ac [ours, issue 27 part 2]: the KSM's actor and critic at the time scale where a choice of
    knowledge shows, whole runs.

    An action is a subset, held for a whole episode; an episode is a short proxy run, as a search's: paired
    with every other (the same start, rows, batches and dropout masks) and scored at its end on the reward
    split (held-out rows of train, never dev). Its reward is that score minus the score of the reference
    episode, the one with the actor's greedy action at the time: pairing leaves in the difference only what
    the two subsets did. Paired episodes are deterministic, so an action is never run twice: a greedy action
    already scored is its own reference, and a new one is run as the next episode.

    Critic: Q(a) = w . a, linear in the four 0/1 weights, fitted to every (a - g, reward) so far by least
    squares (the minimum-norm solution over the knowledges some episode switched; the others have w_i = 0).
    w_i reads as what switching knowledge i on does to the score. Four parameters because a run affords
    five episodes: the KSM's critic, thousands of weights fitted by TD to 48 transitions, fitted nothing
    (experiments/RESULTS-kd.md).
    Actor: the greedy action, argmax Q over the 12 subsets with FinK or ResK on; ties to more knowledges on
    (a knowledge of unknown effect stays on, the control's choice), then to the earlier subset (`all`
    first). DDPG's actor climbs dQ/da because its actions are continuous; with 12 it takes the argmax.
    Exploration: once the greedy action is scored, the next episode switches one of its knowledges (two if
    every neighbour is scored, and so on): one no episode has switched yet if there is one (its effect is
    unknown; under the critic's additive model a known one teaches nothing), then the one the critic values
    most, ties in an order of the knowledges drawn from the seed. So the first episodes are knockout's
    proxies, until one beats `all`; the search then goes on from that subset.
    The final run trains the greedy action after the last episode, which no episode need have run: the
    critic's additive reading of those that did. Five episodes, each on a fifth of the budget, so the first
    is knockout's first proxy run (`all`) and each costs what a knockout proxy does.
    """

    learns = scores_episodes = True
    normalised = True
    n_episodes = 5

    def __init__(self, method: str, budget: float, seed: int):
        super().__init__(method)
        self.budget = budget
        self.order = torch.randperm(N_KNOWLEDGE, generator=torch.Generator().manual_seed(seed)).tolist()
        self.history: list[tuple[tuple, tuple, float]] = []  # (action, reference, score) per finished episode

    def scored(self) -> dict:
        return {a: score for a, _, score in self.history}

    def critic(self) -> Tensor:
        """[4] w, fitted to the episodes that were not their own reference."""
        pairs = [(a, g, self.scored()[g]) for a, g, _ in self.history if a != g]
        w = torch.zeros(N_KNOWLEDGE, dtype=torch.float64)
        if pairs:
            x = torch.tensor([[ai - gi for ai, gi in zip(a, g)] for a, g, _ in pairs], dtype=torch.float64)
            r = torch.tensor([self.scored()[a] - ref for a, _, ref in pairs], dtype=torch.float64)
            seen = x.abs().sum(0) > 0
            w[seen] = torch.linalg.pinv(x[:, seen]) @ r
        return w

    def q(self, a: tuple) -> float:
        """Q(a), rounded so that float noise in the fit is no preference."""
        return round(float(self.critic() @ torch.tensor(a, dtype=torch.float64)), 12)

    def greedy(self) -> tuple:
        return max(SUBSETS, key=lambda a: (self.q(a), sum(a), -SUBSETS.index(a)))

    def next_action(self) -> tuple[tuple, tuple]:
        """(the next episode's action, its reference: the greedy action)."""
        g, scored = self.greedy(), self.scored()
        if g not in scored:
            return g, g
        rank = {k: i for i, k in enumerate(self.order)}
        tried = {k for a, ref, _ in self.history for k in range(N_KNOWLEDGE) if a[k] != ref[k]}
        switched = lambda a: [k for k in range(N_KNOWLEDGE) if a[k] != g[k]]
        fresh = [a for a in SUBSETS if a not in scored]
        return max(fresh, key=lambda a: (-len(switched(a)), len(set(switched(a)) - tried), self.q(a),
                                         [-rank[k] for k in switched(a)])), g

    def episodes(self, cfg) -> int:
        return self.n_episodes

    def episode_fraction(self, episode: int, cfg) -> float:
        return min(1.0, self.budget / self.n_episodes)

    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        """The action of the episode under way; once they are all scored, the greedy one."""
        a = self.greedy() if len(self.history) == self.n_episodes else self.next_action()[0]
        return torch.tensor(a, dtype=torch.float32)

    def feedback(self, raw_state: Tensor, action: Tensor, task_reward: float, next_raw_state: Tensor,
                 done: bool, phase: int) -> dict:
        return self.judge(raw_state, action, task_reward)  # an episode is judged once, at its end

    def end_episode(self, score: dict) -> dict:
        """Record an episode's score (as SubsetSearch.end_episode); returns its log line: the subset, its
        reference and reward, the critic after it, and after the last episode the winner."""
        a, g = self.next_action()
        self.history.append((a, g, float(score["score"])))
        digits = lambda w: "".join(map(str, w))
        record = {"event": "search", "episode": len(self.history) - 1, "rung": 0, "subset": digits(a),
                  "reference": digits(g), "reward": float(score["score"]) - self.scored()[g],
                  "critic": self.critic().tolist(), "fraction": self.episode_fraction(0, None), **score}
        if len(self.history) == self.n_episodes:
            record["winner"] = digits(self.greedy())
        return record

    def state_dict(self) -> dict:
        return {"history": [[list(a), list(g), s] for a, g, s in self.history]}

    def load_state_dict(self, state: dict) -> None:
        self.history = [(tuple(a), tuple(g), s) for a, g, s in state["history"]]


def make_selector(method: str, student_dim: int, teacher_dim: int, config: SelectorConfig, seed: int) -> Selector:
    """The selector for `method` (one of METHODS); dims are the [CLS] widths the KSM state reads."""
    check_method(method)
    if not 0 <= config.alpha <= 1:
        raise KdError(f"selectors.py: kd alpha must lie in [0, 1], got {config.alpha}")
    fixed = {"finetune": (1, 0, 0, 0), "kd": (1 - config.alpha, config.alpha, 0, 0),
             "pkd": (1, 1, config.beta, 0), "all": (1, 1, 1, 1)}
    if method == "knockout-pool":
        pooled = subset_weights(SUBSET + config.pooled)
        if pooled is None:
            raise KdError(f"--method knockout-pool: no pooled choice ({config.pooled!r}); run.py makes it from "
                          "--pool-from")
        return PooledChoice(method, pooled)
    weights = fixed.get(method) or subset_weights(method)
    if weights:
        return FixedSelector(method, weights, feak_mode="cls" if method == "pkd" else "tokens")
    if method in SEARCHES:
        if config.search_budget <= 0:
            raise KdError(f"--search-budget {config.search_budget}: must be a positive number of final runs")
        if method == "episode-ac":
            return EpisodeActorCritic(method, config.search_budget, seed)
        if method == "knockout-gate" and not config.search_gate > 0:
            raise KdError(f"--search-gate {config.search_gate}: must be a positive z")
        if method == "knockout-gate" and not 0 <= config.search_lead < 1:
            raise KdError(f"--search-lead {config.search_lead}: must be a share of all's loss, in [0, 1)")
        return SubsetSearch(method, config.search_budget, config.search_gate, config.search_lead)
    hard = method.endswith("-hard")
    if method.startswith("random-"):
        return RandomSelector(method, hard, seed)
    agent = KnowledgeSelectionAgent(student_dim, teacher_dim, replace(config.agent, hard=hard), seed)
    return KsmSelector(method, agent)
