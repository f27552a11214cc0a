"""kd_ref.agent: the KSM learns a planted preference, is reproducible by seed, resumes bitwise."""
import io

import pytest
import torch

from kd_ref.agent import AgentConfig, KnowledgeSelectionAgent
from kd_ref.plumbing.errors import KdError

HS, HT = 6, 8  # student and teacher [CLS] widths
RAW = HS + HT + 1


def favour_resk(action, g):
    """Synthetic task reward: ResK (a2) helps, every other knowledge hurts; a little noise. run_phases
    adds the phase index, a clock term far larger than the action's effect, as on real data."""
    return (action[1] - 0.5 * (action[0] + action[2] + action[3])).item() + 0.01 * torch.randn((), generator=g).item()


def run_phases(agent, g, phases, end_every=None):
    """Drive the agent through `phases` phases of the synthetic task; log what it does."""
    log = []
    state = torch.randn(RAW, generator=g)
    for k in range(phases):
        action = agent.act(state, explore=True)
        explore = agent.exploration_reward(action)
        next_state = torch.randn(RAW, generator=g)
        done = end_every is not None and (k + 1) % end_every == 0
        phase = k % end_every if end_every else 0
        stats = agent.observe(state, action, favour_resk(action, g) + phase, next_state, done, phase)
        log.append((action, explore, stats))
        state = next_state
        if done:
            agent.end_episode()
    return log


def same_log(a, b):
    return all(torch.equal(x[0], y[0]) and x[1] == y[1] and str(x[2]) == str(y[2]) for x, y in zip(a, b))


@pytest.mark.parametrize("hard", [False, True])
def test_learns_the_favoured_knowledge(hard):
    # 8 episodes of 12 phases with a slower noise decay than the default 4 episodes. Soft: the defaults
    # otherwise. Hard: a slower actor and DDPG's stronger critic L2 (3e-4, 1e-2), with which the hard
    # agent finds the subset on this task, where at the defaults it often keeps a harmful FinK on
    # (AgentConfig.lr_actor, critic_weight_decay: the defaults are chosen for ksm-soft on real runs).
    hard_settings = {"lr_actor": 3e-4, "critic_weight_decay": 1e-2} if hard else {}
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(hard=hard, noise_decay=0.9, **hard_settings), seed=0)
    g = torch.Generator().manual_seed(1)
    run_phases(agent, g, phases=96, end_every=12)
    actions = torch.stack([agent.act(torch.randn(RAW, generator=g), explore=False) for _ in range(8)])
    if hard:
        assert (actions == torch.tensor([0.0, 1.0, 0.0, 0.0])).all(), actions
    else:
        assert (actions[:, 1] > 0.7).all() and (actions[:, [0, 2, 3]] < 0.3).all(), actions


def test_agent_leaves_the_thread_setting_alone():
    threads = torch.get_num_threads()
    agent = KnowledgeSelectionAgent(HS, HT, short_config(), seed=0)
    run_phases(agent, torch.Generator().manual_seed(0), phases=2)
    assert torch.get_num_threads() == threads


def test_untrained_agent_is_neutral():
    """Near-zero last layers: the first policy weighs every knowledge 0.5."""
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(), seed=3)
    torch.testing.assert_close(agent.act(torch.randn(RAW), explore=False), torch.full((4,), 0.5), atol=0.02, rtol=0)


def short_config(**overrides):
    return AgentConfig(updates_per_phase=2, replay_batch=4, **overrides)


@pytest.mark.parametrize("hard", [False, True])
def test_same_seed_same_run_other_seed_differs(hard):
    logs = []
    for seed, global_seed in ((7, 0), (7, 123), (8, 0)):
        torch.manual_seed(global_seed)  # the agent must not read the global RNG
        agent = KnowledgeSelectionAgent(HS, HT, short_config(hard=hard), seed=seed)
        log = run_phases(agent, torch.Generator().manual_seed(5), phases=10, end_every=4)
        q = [agent.q_value(torch.ones(RAW), torch.full((4,), v)) for v in (0.0, 0.5, 1.0)]
        logs.append((log, q))
    assert same_log(logs[0][0], logs[1][0]) and logs[0][1] == logs[1][1]
    assert logs[0][1] != logs[2][1]


@pytest.mark.parametrize("hard", [False, True])
def test_state_dict_round_trip_resumes_bitwise(hard):
    straight = KnowledgeSelectionAgent(HS, HT, short_config(hard=hard), seed=1)
    g = torch.Generator().manual_seed(2)
    run_phases(straight, g, phases=6, end_every=4)  # mid-episode: history and decayed noise matter
    saved = io.BytesIO()
    torch.save(straight.state_dict(), saved)
    env_state = g.get_state()
    expected = run_phases(straight, g, phases=6, end_every=4)

    resumed = KnowledgeSelectionAgent(HS, HT, short_config(hard=hard), seed=99)
    saved.seek(0)
    resumed.load_state_dict(torch.load(saved))
    g.set_state(env_state)
    assert same_log(run_phases(resumed, g, phases=6, end_every=4), expected)
    for p, q in zip(straight.state_dict()["networks"].values(), resumed.state_dict()["networks"].values()):
        assert torch.equal(p, q)


def test_soft_exploration_reward_by_hand():
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(updates_per_phase=1), seed=0)
    s = torch.zeros(RAW)
    first, second = torch.tensor([1.0, 0.0, 1.0, 0.0]), torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert agent.exploration_reward(first) == 0.0  # first phase of the episode
    agent.observe(s, first, 0.0, s, False)
    assert agent.exploration_reward(second) == pytest.approx(0.1 * (1 - 0.5))  # cos = 1 / (sqrt2 * sqrt2)
    assert agent.exploration_reward(2 * first) == pytest.approx(0.0, abs=1e-6)  # same direction
    assert agent.exploration_reward(torch.zeros(4)) == pytest.approx(0.1)  # zero action: cos taken as 0
    agent.observe(s, second, 0.0, s, False)
    assert agent.exploration_reward(first) == pytest.approx(0.05)  # compares with the previous phase only
    agent.end_episode()
    assert agent.exploration_reward(second) == 0.0


def test_hard_exploration_reward_by_hand():
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(hard=True, updates_per_phase=1), seed=0)
    s = torch.zeros(RAW)
    a, b, c = torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0]), torch.tensor([1.0, 1, 1, 1])
    assert agent.exploration_reward(a) == 0.0
    for taken in (a, b, a):
        agent.observe(s, taken, 0.0, s, False)
    assert agent.exploration_reward(a) == pytest.approx(-0.1 * 2 / 3)
    assert agent.exploration_reward(b) == pytest.approx(-0.1 * 1 / 3)
    assert agent.exploration_reward(c) == 0.0
    agent.end_episode()
    assert agent.exploration_reward(a) == 0.0


def test_hard_actions_are_binary_and_never_all_off():
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(hard=True, threshold=0.99), seed=0)
    assert torch.equal(agent.act(torch.randn(RAW), explore=False), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    agent = KnowledgeSelectionAgent(HS, HT, short_config(hard=True), seed=0)
    run_phases(agent, torch.Generator().manual_seed(0), phases=5)
    stored = agent.buffer["action"]
    assert ((stored == 0) | (stored == 1)).all() and (stored.sum(-1) >= 1).all()


def test_noise_decays_per_episode():
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(noise_sigma=0.2, noise_decay=0.5), seed=0)
    agent.end_episode()
    agent.end_episode()
    assert agent.noise_sigma == pytest.approx(0.05)


def test_targets_move_by_tau():
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(updates_per_phase=1, tau=0.01), seed=0)
    pairs = [(agent.target_encoder, agent.encoder), (agent.target_actor, agent.actor),
             (agent.target_critic, agent.critic)]
    before = [[p.clone() for p in target.parameters()] for target, _ in pairs]
    agent.observe(torch.randn(RAW), torch.rand(4), 1.0, torch.randn(RAW), False)
    for (target, online), old in zip(pairs, before):
        for p_old, p_target, p in zip(old, target.parameters(), online.parameters()):
            assert not p_target.requires_grad
            torch.testing.assert_close(p_target, p_old + 0.01 * (p - p_old), rtol=0, atol=1e-7)
        assert any(not torch.equal(p_old, p) for p_old, p in zip(old, online.parameters()))


def test_raw_state_layout():
    s_cls = torch.randn(3, HS, dtype=torch.bfloat16, requires_grad=True)
    t_cls = torch.randn(3, HT)
    valid = torch.tensor([True, True, False])
    raw = KnowledgeSelectionAgent.raw_state(s_cls, t_cls, 0.25, valid)
    assert raw.shape == (RAW,) and raw.dtype == torch.float32 and not raw.requires_grad
    torch.testing.assert_close(raw[:HS], s_cls[:2].float().mean(0).detach())
    torch.testing.assert_close(raw[HS:-1], t_cls[:2].mean(0))
    assert raw[-1].item() == 0.25


def test_bad_config_names_the_flag():
    with pytest.raises(KdError, match="^--replay-batch 0: must be at least 1$"):
        AgentConfig(replay_batch=0)
    with pytest.raises(KdError, match=r"^--threshold 1.0: must be in \(0, 1\)$"):
        AgentConfig(threshold=1.0)
    with pytest.raises(KdError, match=r"^--gamma 1.5: must be in \[0, 1\)$"):
        AgentConfig(gamma=1.5)


def test_phase_baseline_by_hand():
    """What the agent learns from: (task - mean task reward of that phase index) / rms of those
    differences, + exploration; 'none' keeps the raw task reward."""
    for baseline in ("phase", "none"):
        agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(updates_per_phase=1, reward_baseline=baseline,
                                                            explore_weight=0.0), seed=0)
        s = torch.zeros(RAW)
        for phase, task in ((0, 1.0), (1, 2.0), (0, 3.0), (1, 6.0)):
            stats = agent.observe(s, torch.rand(4), task, s, False, phase)
        learned, base, scale = agent.learned_rewards()
        if baseline == "none":
            assert learned.tolist() == [1.0, 2.0, 3.0, 6.0] and scale == 1.0
            continue
        assert base.tolist() == [2.0, 4.0, 2.0, 4.0]
        assert scale == pytest.approx(2.5 ** 0.5)
        torch.testing.assert_close(learned, torch.tensor([-1.0, -2.0, 1.0, 2.0]) / 2.5 ** 0.5)
        assert stats["reward_learned"] == pytest.approx(2 / 2.5 ** 0.5) and stats["reward_baseline"] == 4.0
        assert stats["reward"] == 6.0  # the paper's reward: task + exploration, logged beside


def test_the_clock_alone_teaches_nothing_with_the_phase_baseline():
    """Rewards that depend on the phase index only: the learned rewards are all 0 (no action is
    credited with what the clock did), while the raw ones would be far from 0."""
    agent = KnowledgeSelectionAgent(HS, HT, AgentConfig(updates_per_phase=1, explore_weight=0.0), seed=0)
    g = torch.Generator().manual_seed(0)
    for k in range(12):
        agent.observe(torch.randn(RAW, generator=g), torch.rand(4, generator=g), [0.8, 0.1, -0.1][k % 3],
                      torch.randn(RAW, generator=g), False, k % 3)
    learned, _, _ = agent.learned_rewards()
    assert learned.abs().max() < 1e-6
