"""The knowledge selection module (KSM): an actor-critic agent that picks loss weights.

method.md "The knowledge selection module (KSM): actor-critic". Every phase of
a distillation run the agent looks at the state, chooses the weights
a = (a1..a4) of (FinK, ResK, FeaK, RelK), and at the phase end receives the
task reward (the caller measures r = L_CE(before) - L_CE(after)); the exploration
reward is computed here. It learns DDPG-style: a critic Q(s, a) by temporal
difference, an actor mu(s) by the deterministic policy gradient through the critic.

What the agent learns from, [ours] (--reward-baseline phase): the task reward minus
the mean task reward of the same phase index over the replay buffer, plus the
exploration reward. The raw decrease of the gold loss is dominated by where in
the run it is measured (early phases decrease it a lot whatever the action;
experiments/RESULTS-kd.md measured 0.45 to 0.86 in first phases against -0.13 to 0.29
later), so a critic fitted to it learns the clock, not the action. Subtracting
what that phase usually gives leaves what the action changed: an advantage, as
in REINFORCE with a baseline. It is then divided by its root mean square over the
buffer, so the critic fits rewards of unit scale whatever the task's loss scale
(its weight decay and the exploration reward's beta_e then mean the same on every
task). The buffer keeps the raw parts and the baseline is
recomputed at each update, so early transitions are re-judged as more episodes
arrive; in the first episode every phase index has one sample and the task part
is 0. --reward-baseline none learns from the raw decrease (the paper's reward).

What the paper states and what is our reconstruction ([ours]) is marked below
and in AgentConfig; the [ours] values are reasoned defaults, not the paper's.

Which action is stored and trained on, hard mode [ours]: the binary action
that was applied. The reward depends only on the applied weights, so that is
the input the critic can value; the TD target uses the binary action the
target actor would take, so the critic is only ever regressed at binary
points. The actor's gradient still flows through its continuous output
mu(s) in [0,1]^4, where the critic's smooth interpolation between binary
corners points it towards the better ones. Soft mode stores the clipped
weights that were applied, which is likewise what produced the reward.

Beyond method.md, from DDPG (Lillicrap et al. 2016), all [ours]: near-zero
last layers (the untrained policy weighs every knowledge 0.5) and L2 weight
decay on the critic. Without the decay, on a synthetic task a critic fitted to
a few dozen transitions often explained rewards by their random states and the
actor saturated on a harmful knowledge.

The agent runs on the CPU in fp32: it is tiny and sees one state per phase.
"""
import copy
import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kd_ref.plumbing.errors import check_flags, one_of

N_KNOWLEDGE = 4  # (FinK, ResK, FeaK, RelK)


CHOICES = {"reward_baseline": ("phase", "none")}  # the values of AgentConfig's string fields (run.py's --help)


@dataclass
class AgentConfig:
    hidden: int = 64  # width of every MLP [ours]
    gamma: float = 0.9  # discount of the TD target [ours]
    tau: float = 0.01  # soft update rate of the target networks [ours]
    # Adam [ours]. 1e-4 and 3e-4 left the soft actor within 0.03 of 0.5 over the 4 episodes of a demo
    # run with harmful ResK; 1e-3 moves it within the episodes a run can afford. On the synthetic
    # task of tests/test_agent.py, ksm-hard picks the right subset more often at 3e-4.
    lr_actor: float = 1e-3
    lr_critic: float = 1e-3  # Adam, also trains the state encoders N_S, N_T [ours]
    # L2 on the critic and encoders [ours]. With a few dozen transitions the critic can otherwise
    # memorise each reward by its state and ignore the action. DDPG's 1e-2 (Lillicrap et al. 2016) is
    # too strong here: it is Adam's coupled L2, so where the rewards carry little signal it shrinks
    # every weight by about lr per update, and on the demo it had shrunk the state encoders' output
    # to 1e-10 and dQ/da to 1e-13 by the fourth episode, after which the actor no longer moved. (On
    # the synthetic task of tests/test_agent.py, whose rewards are strong, ksm-hard does better at 1e-2.)
    critic_weight_decay: float = 1e-3
    noise_sigma: float = 0.3  # std of the Gaussian action noise in the first episode [ours]
    noise_decay: float = 0.7  # the noise std is multiplied by this after every episode [ours]
    explore_weight: float = 0.1  # beta_e of the exploration reward [ours]
    # 'phase': learn from the task reward minus its mean at the same phase index (module docstring);
    # 'none': from the raw decrease [ours]
    reward_baseline: str = "phase"
    hard: bool = False  # binary actions (ksm-hard) instead of soft weights (ksm-soft) [paper]
    threshold: float = 0.5  # lambda: hard a_i = 1[mu(s)_i + noise > lambda] [ours]
    # Replay minibatch, drawn with replacement so updates start at once [ours]. Not `batch_size`:
    # run.py makes a flag of every field, and DistillConfig.batch_size already owns --batch-size.
    replay_batch: int = 16
    # A run has only a few dozen phases, so each transition is replayed several times [ours].
    updates_per_phase: int = 8
    buffer_size: int = 100_000  # replay capacity; far above the phases of any run, so all are kept [ours]

    def __post_init__(self):
        positive = (lambda v: 0 < v < math.inf, "a positive number")
        at_least_1 = (lambda v: v >= 1, "at least 1")
        check_flags(self, {"hidden": at_least_1, "gamma": (lambda v: 0 <= v < 1, "in [0, 1)"),
                           "tau": (lambda v: 0 < v <= 1, "in (0, 1]"), "lr_actor": positive, "lr_critic": positive,
                           "critic_weight_decay": (lambda v: v >= 0, "0 or more"),
                           "noise_sigma": (lambda v: v >= 0, "0 or more"),
                           "noise_decay": (lambda v: 0 <= v <= 1, "in [0, 1]"),
                           "threshold": (lambda v: 0 < v < 1, "in (0, 1)"),
                           "replay_batch": at_least_1, "updates_per_phase": at_least_1, "buffer_size": at_least_1,
                           **one_of(CHOICES)})


def mlp(*widths: int) -> nn.Sequential:
    """Linear layers of the given widths with a ReLU between each pair (none after the last)."""
    layers = []
    for w_in, w_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


@contextmanager
def single_thread():
    """Run the agent's tiny ops on one thread, then restore the caller's setting.

    Waking a second BLAS/OpenMP thread costs more than these ops themselves; on
    a busy 2-core machine an update measured 50x slower with two threads.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def force_fink(a: Tensor) -> Tensor:
    """Hard weights [..., 4] that switch every loss off would train nothing: turn FinK on [ours]."""
    a = a.clone()
    a[..., 0] = torch.where(a.sum(-1) == 0, 1.0, a[..., 0])
    return a


class StateEncoder(nn.Module):
    """Raw state [N, Hs+Ht+1] -> [N, 2*hidden+1]: N_S and N_T (2-layer MLPs) on the [CLS] parts, progress kept."""

    def __init__(self, student_dim: int, teacher_dim: int, hidden: int):
        super().__init__()
        self.parts = (student_dim, teacher_dim, 1)
        self.student = mlp(student_dim, hidden, hidden)  # N_S [paper]
        self.teacher = mlp(teacher_dim, hidden, hidden)  # N_T [paper]

    def forward(self, raw: Tensor) -> Tensor:
        s_cls, t_cls, progress = raw.split(self.parts, dim=-1)
        return torch.cat([self.student(s_cls), self.teacher(t_cls), progress], dim=-1)


class Critic(nn.Module):
    """Q_phi(s, a) [paper]: a 3-layer MLP on [s; a] -> [N]."""

    def __init__(self, state_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(state_dim + N_KNOWLEDGE, hidden, hidden, 1)

    def forward(self, state: Tensor, action: Tensor) -> Tensor:
        return self.net(torch.cat([state, action], dim=-1)).squeeze(-1)


class KnowledgeSelectionAgent(nn.Module):
    """DDPG agent over loss weights. Networks, targets, optimisers, replay and noise all live here.

    Read in this order, which is the order of a run: a phase opens (raw_state, act), the phase
    closes (observe: exploration_reward, the replay buffer, learned_rewards, then
    config.updates_per_phase times update: td_target, the critic step, the actor step,
    soft_update_targets), an episode ends (end_episode). Randomness (initialisation, action noise,
    minibatches) comes from `seed` alone, never from the global RNG, so a seed fixes every action
    and update.
    """

    def __init__(self, student_dim: int, teacher_dim: int, config: AgentConfig, seed: int):
        super().__init__()
        self.config = config
        state_dim = 2 * config.hidden + 1
        with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global RNG untouched
            torch.manual_seed(seed)
            self.encoder = StateEncoder(student_dim, teacher_dim, config.hidden)
            self.actor = nn.Sequential(mlp(state_dim, config.hidden, config.hidden, N_KNOWLEDGE), nn.Sigmoid())
            self.critic = Critic(state_dim, config.hidden)
            # DDPG's recipe (Lillicrap et al. 2016) [ours]: near-zero last layers, so the first
            # policy is a = 0.5 for every knowledge (none favoured) and Q starts near 0.
            for last in (self.actor[0][-1], self.critic.net[-1]):
                nn.init.uniform_(last.weight, -3e-3, 3e-3)
                nn.init.uniform_(last.bias, -3e-3, 3e-3)
        # Slowly moving copies give the TD target y = r + gamma * Q'(s', mu'(s')) [ours].
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.target_actor = copy.deepcopy(self.actor).requires_grad_(False)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr_actor)
        # N_S and N_T are trained through the critic's loss [ours].
        self.critic_opt = torch.optim.Adam([*self.encoder.parameters(), *self.critic.parameters()],
                                           lr=config.lr_critic, weight_decay=config.critic_weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.noise_sigma = config.noise_sigma
        raw_dim = student_dim + teacher_dim + 1
        # Replay over all episodes [ours]. Raw states, so replayed states see the current encoders.
        # The reward is kept in its parts, so the phase baseline can be recomputed from the raw task rewards.
        self.buffer = {"state": torch.zeros(0, raw_dim), "action": torch.zeros(0, N_KNOWLEDGE),
                       "reward_task": torch.zeros(0), "reward_explore": torch.zeros(0), "phase": torch.zeros(0),
                       "next_state": torch.zeros(0, raw_dim), "done": torch.zeros(0)}
        self.history: list[Tensor] = []  # actions of this episode's earlier phases, for the exploration reward

    # ---- a phase opens: the state, the action ---------------------------------------------------

    @staticmethod
    def raw_state(s_cls: Tensor, t_cls: Tensor, progress: float, valid: Tensor | None = None) -> Tensor:
        """method.md, KSM, "State": [B, Hs] student and [B, Ht] teacher last-layer [CLS] -> [Hs+Ht+1]
        fp32 on the CPU, detached.

        The batch means of the two [CLS] parts (over `valid` rows when given,
        so filler rows do not count) followed by the progress t / T_total [ours].
        The encoders N_S, N_T see it later (StateEncoder): the buffer keeps it raw.
        """
        if valid is not None:
            s_cls, t_cls = s_cls[valid], t_cls[valid]
        parts = [s_cls.detach().float().mean(0).cpu(), t_cls.detach().float().mean(0).cpu(),
                 torch.tensor([float(progress)])]
        return torch.cat(parts)

    @single_thread()
    @torch.no_grad()
    def act(self, raw_state: Tensor, explore: bool) -> Tensor:
        """method.md, KSM, "Action": [4] loss weights, in [0,1] (soft) or {0,1} (hard); `explore`
        adds the Gaussian noise of the episodes."""
        mu = self.actor(self.encoder(raw_state[None]))[0]
        if explore:  # without exploration the generator is not drawn from, so evaluation changes nothing
            mu = mu + self.noise_sigma * torch.randn(N_KNOWLEDGE, generator=self.generator)
        return self.applied(mu)

    def applied(self, proposal: Tensor) -> Tensor:
        """Actor output (plus noise) [..., 4] -> the loss weights applied: clipped to [0, 1] (soft), or
        1 where strictly above the threshold with FinK forced on when all are off (hard). The TD
        target applies it to the target actor's output too."""
        if not self.config.hard:
            return proposal.clamp(0, 1)
        return force_fink((proposal > self.config.threshold).float())

    @single_thread()
    @torch.no_grad()
    def q_value(self, raw_state: Tensor, action: Tensor) -> float:
        """Q_phi(s, a) of one raw state [Hs+Ht+1] and action [4] (logged, not learned from)."""
        return self.critic(self.encoder(raw_state[None]), action[None]).item()

    # ---- a phase closes: the reward, the replay buffer, the updates -----------------------------

    @single_thread()
    def observe(self, raw_state: Tensor, action: Tensor, task_reward: float, next_raw_state: Tensor,
                done: bool, phase: int = 0) -> dict:
        """method.md, KSM, "Multi-phase training": store a phase's transition (its exploration reward
        computed here), then run config.updates_per_phase updates.

        `task_reward` is the raw decrease of the gold loss in phase `phase` (its
        index within the episode). Returns the paper's reward (task + exploration)
        and its parts; what the agent learns from for this transition
        (`reward_learned`) and the phase baseline and scale it was computed with,
        as they stand after this transition; Q(s, a) as valued before the updates;
        and the mean critic and actor losses of the updates.
        """
        q = self.q_value(raw_state, action)
        explore = self.exploration_reward(action)
        self.history.append(action.clone())
        new = {"state": raw_state, "action": action, "reward_task": torch.tensor(float(task_reward)),
               "reward_explore": torch.tensor(explore), "phase": torch.tensor(float(phase)),
               "next_state": next_raw_state, "done": torch.tensor(float(done))}
        self.buffer = {k: torch.cat([v, new[k][None].float()])[-self.config.buffer_size:]
                       for k, v in self.buffer.items()}
        rewards, baseline, scale = self.learned_rewards()
        losses = [self.update(self.minibatch(), rewards) for _ in range(self.config.updates_per_phase)]
        critic_losses, actor_losses = zip(*losses)
        return {"reward_task": float(task_reward), "reward_explore": explore, "reward": float(task_reward) + explore,
                "reward_baseline": baseline[-1].item(), "reward_scale": scale, "reward_learned": rewards[-1].item(),
                "q": q,
                "critic_loss": sum(critic_losses) / len(critic_losses),
                "actor_loss": sum(actor_losses) / len(actor_losses)}

    def exploration_reward(self, action: Tensor) -> float:
        """method.md, KSM, "Exploration reward": a bonus for trying something new this episode
        [paper]; the forms are [ours].

        Soft: + beta_e * (1 - cos(a_k, a_{k-1})), 0 in the first phase (a zero
        vector counts as cos 0). Hard: - beta_e * repeats / phases so far, where
        repeats counts the earlier phases of this episode that took exactly
        this action, 0 in the first phase. Reads the history, changes nothing.
        """
        if not self.history:
            return 0.0
        beta = self.config.explore_weight
        if self.config.hard:
            repeats = sum(torch.equal(action, past) for past in self.history)
            return -beta * repeats / len(self.history)
        previous = self.history[-1]
        cos = (action @ previous) / (action.norm() * previous.norm()).clamp(min=1e-8)
        return beta * (1.0 - cos.item())

    def learned_rewards(self) -> tuple[Tensor, Tensor, float]:
        """method.md, KSM, "Reward", with the phase baseline of the module docstring: what the agent
        learns from, for every transition in the buffer, recomputed at every phase end: (rewards [N],
        the phase baselines subtracted [N], the scale divided by); (task - baseline) / scale + exploration."""
        task, phase = self.buffer["reward_task"], self.buffer["phase"].long()
        baseline, scale = torch.zeros_like(task), 1.0
        if self.config.reward_baseline == "phase":
            sums = torch.zeros(int(phase.max()) + 1).index_add_(0, phase, task)
            counts = torch.zeros_like(sums).index_add_(0, phase, torch.ones_like(task))
            baseline = (sums / counts)[phase]
            scale = (task - baseline).square().mean().sqrt().clamp(min=1e-8).item()
        return (task - baseline) / scale + self.buffer["reward_explore"], baseline, scale

    def minibatch(self) -> Tensor:
        """[replay_batch] buffer indices, drawn with replacement from the agent's own generator."""
        return torch.randint(len(self.buffer["done"]), (self.config.replay_batch,), generator=self.generator)

    def update(self, idx: Tensor, rewards: Tensor) -> tuple[float, float]:
        """One DDPG update on the minibatch `idx` of the buffer, whose learned rewards are `rewards`
        [N]: a critic step (method.md, KSM, "Critic"), an actor step ("Actor"), a soft target update.
        Returns (critic loss, actor loss)."""
        raw, action, raw_next, done = (self.buffer[k][idx] for k in ("state", "action", "next_state", "done"))
        target = self.td_target(rewards[idx], raw_next, done)
        critic_loss = F.mse_loss(self.critic(self.encoder(raw), action), target)
        self.critic_opt.zero_grad()  # also clears what the previous actor step left in the critic
        critic_loss.backward()
        self.critic_opt.step()  # the critic and the encoders N_S, N_T, with coupled L2

        state = self.encoder(raw).detach()  # the encoders as the critic step left them; the actor must not train them
        actor_loss = -self.critic(state, self.actor(state)).mean()  # mu's raw sigmoid output, not applied()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()  # the actor only: the gradient this leaves in the critic is never applied
        self.soft_update_targets()
        return critic_loss.item(), actor_loss.item()

    @torch.no_grad()
    def td_target(self, reward: Tensor, raw_next: Tensor, done: Tensor) -> Tensor:
        """[n] y = r + gamma * (1 - done) * Q'(s', w(mu'(s'))), s' = N'(raw s'), all from the target
        copies; w is applied(): the action the target policy would apply, binary in hard mode."""
        state_next = self.target_encoder(raw_next)
        action_next = self.applied(self.target_actor(state_next))
        return reward + self.config.gamma * (1 - done) * self.target_critic(state_next, action_next)

    @torch.no_grad()
    def soft_update_targets(self) -> None:
        """p' <- (1 - tau) p' + tau p for the target encoder, actor and critic [ours]."""
        for target_net, net in ((self.target_encoder, self.encoder), (self.target_actor, self.actor),
                                (self.target_critic, self.critic)):
            for p_target, p in zip(target_net.parameters(), net.parameters()):
                p_target.lerp_(p, self.config.tau)

    # ---- an episode ends; resuming ----------------------------------------------------------------

    def end_episode(self) -> None:
        """method.md, KSM, "Episodes": decay the exploration noise and forget this episode's actions."""
        self.noise_sigma *= self.config.noise_decay
        self.history = []

    def state_dict(self) -> dict:
        """Everything needed to resume bitwise. Tensors are shared with the live agent, as in nn.Module."""
        return {"networks": super().state_dict(), "actor_opt": self.actor_opt.state_dict(),
                "critic_opt": self.critic_opt.state_dict(), "buffer": dict(self.buffer),
                "noise_sigma": self.noise_sigma, "history": list(self.history),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state["networks"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
        self.buffer = {k: v.clone() for k, v in state["buffer"].items()}
        self.noise_sigma = state["noise_sigma"]
        self.history = [a.clone() for a in state["history"]]
        self.generator.set_state(state["generator"])
