"""kd_ref.selectors: each method's weights, determinism by seed, the unknown-method error."""
import pytest
import torch

from kd_ref.agent import AgentConfig
from kd_ref.plumbing.errors import KdError
from kd_ref.selectors import METHODS, SelectorConfig, make_selector

HS, HT = 4, 6
RAW = HS + HT + 1
SMALL = SelectorConfig(agent=AgentConfig(updates_per_phase=1, replay_batch=2))


def make(method, config=SMALL, seed=0):
    return make_selector(method, HS, HT, config, seed)


def drive(selector, phases=6, seed=0):
    """Act and report a made-up task reward for some phases (learning from it where the selector
    learns, two phase indices); return the actions and what each phase reported."""
    g = torch.Generator().manual_seed(seed)
    actions, feedback = [], []
    state = torch.randn(RAW, generator=g)
    for k in range(phases):
        action = selector.act(state, explore=True)
        next_state = torch.randn(RAW, generator=g)
        if selector.learns:
            feedback.append(selector.feedback(state, action, 0.1 * k, next_state, k == phases - 1, phase=k % 2))
        else:
            feedback.append({"reward_task": 0.1 * k, **selector.judge(state, action, 0.1 * k)})
        actions.append(action)
        state = next_state
    return torch.stack(actions), feedback


@pytest.mark.parametrize("method, weights", [
    ("finetune", [1, 0, 0, 0]), ("kd", [0.7, 0.3, 0, 0]), ("pkd", [1, 1, 50, 0]), ("all", [1, 1, 1, 1]),
    ("subset-0111", [0, 1, 1, 1]), ("subset-1001", [1, 0, 0, 1])])
def test_fixed_weights(method, weights):
    selector = make(method, SelectorConfig(alpha=0.3, beta=50.0))
    actions, feedback = drive(selector)
    assert torch.allclose(actions, torch.tensor(weights, dtype=torch.float32).expand(6, 4))
    assert not selector.learns and not selector.chooses
    assert selector.feak_mode == ("cls" if method == "pkd" else "tokens")
    assert feedback[2] == {"reward_task": 0.2, "reward_explore": 0.0, "reward": 0.2}


def test_default_kd_and_pkd_weights():
    assert make("kd", SelectorConfig()).act(torch.zeros(RAW), False).tolist() == [0.5, 0.5, 0, 0]
    assert make("pkd", SelectorConfig()).act(torch.zeros(RAW), False).tolist() == [1, 1, 100, 0]


def test_random_soft_is_uniform_per_phase():
    actions, _ = drive(make("random-soft"), phases=400)
    assert ((actions >= 0) & (actions <= 1)).all()
    assert len(actions.unique(dim=0)) == 400  # fresh every phase
    assert (actions.mean(0) - 0.5).abs().max() < 0.05  # mean of U[0,1]; sd of this mean ~0.014
    assert (actions[:, 0] < 0.5).any()  # FinK not forced: only hard weights are


def test_random_hard_is_bernoulli_with_fink_forced():
    actions, _ = drive(make("random-hard"), phases=400)
    assert ((actions == 0) | (actions == 1)).all()
    assert (actions.sum(1) >= 1).all()
    # P(a_i = 1) is 0.5, except FinK: 0.5 + 1/16 for the all-off draws it takes over.
    torch.testing.assert_close(actions.mean(0), torch.tensor([0.5625, 0.5, 0.5, 0.5]), atol=0.075, rtol=0)
    assert (actions[:, 0] == 0).any()


@pytest.mark.parametrize("method", ["ksm-soft", "ksm-hard"])
def test_ksm_learns_and_reports_reward_parts(method):
    selector = make(method)
    assert selector.learns and selector.feak_mode == "tokens"
    assert selector.agent.config.hard == (method == "ksm-hard")
    actions, feedback = drive(selector)
    if method == "ksm-hard":
        assert ((actions == 0) | (actions == 1)).all()
    assert set(feedback[3]) == {"reward_task", "reward_explore", "reward", "reward_baseline", "reward_scale",
                                "reward_learned", "q", "critic_loss", "actor_loss"}
    for part in feedback:
        assert part["reward"] == pytest.approx(part["reward_task"] + part["reward_explore"])
    assert feedback[0]["reward_explore"] == 0.0 and any(f["reward_explore"] != 0 for f in feedback)
    # phase index 1 has seen task rewards 0.1, 0.3, 0.5 by the sixth phase: its baseline is their mean
    assert feedback[5]["reward_baseline"] == pytest.approx(0.3)
    final = selector.judge(torch.zeros(RAW), actions[0], 0.25)
    assert final["reward"] == 0.25 and final["reward_explore"] == 0.0 and isinstance(final["q"], float)
    sigma = selector.agent.noise_sigma
    selector.end_episode()
    assert selector.agent.noise_sigma < sigma and selector.agent.history == []


@pytest.mark.parametrize("method", ["random-soft", "random-hard", "ksm-soft", "ksm-hard"])
def test_same_seed_same_actions_other_seed_differs(method):
    first, _ = drive(make(method, seed=3))
    torch.manual_seed(1234)  # selectors must not depend on the global RNG
    again, _ = drive(make(method, seed=3))
    other, _ = drive(make(method, seed=4), phases=6)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


@pytest.mark.parametrize("method", METHODS)
def test_state_dict_round_trip(method):
    config = SelectorConfig(agent=SMALL.agent, pooled="0111")  # knockout-pool's choice, made by run.py
    selector = make(method, config, seed=1)
    drive(selector, phases=3)
    resumed = make(method, config, seed=2)
    resumed.load_state_dict(selector.state_dict())
    state = torch.randn(RAW)
    assert torch.equal(selector.act(state, explore=True), resumed.act(state, explore=True))


@pytest.mark.parametrize("method", ["ksm", "subset-011", "subset-01111", "subset-0121", "subset-"])
def test_unknown_method_lists_the_choices(method):
    with pytest.raises(KdError, match=f"--method {method}: unknown; expected one of finetune, kd, pkd, all, random-soft, "
                                      "random-hard, ksm-soft, ksm-hard, halving, knockout, knockout-gate, episode-ac, "
                                      "knockout-pool, or subset-XXXX"):
        make(method)


def test_knockout_pool_trains_its_pooled_choice_normalised_and_needs_one():
    selector = make("knockout-pool", SelectorConfig(pooled="1011"))
    assert selector.act(torch.zeros(RAW), False).tolist() == [1, 0, 1, 1] and selector.normalised
    assert not make("subset-1011").normalised  # subset-XXXX normalises only with --loss-norm ema
    with pytest.raises(KdError, match="--method knockout-pool: no pooled choice"):
        make("knockout-pool")


def test_a_subset_without_an_output_loss_is_refused():
    with pytest.raises(KdError, match="--method subset-0011: keeps neither FinK nor ResK"):
        make("subset-0011")


def test_alpha_out_of_range():
    with pytest.raises(KdError, match="alpha"):
        make("kd", SelectorConfig(alpha=1.5))


@pytest.mark.parametrize("method", ["random-hard", "ksm-hard"])
def test_hard_phase_action_is_the_majority_and_stays_binary(method):
    """--act-every-step: a hard phase stands for each knowledge's majority, ties on, FinK forced on."""
    selector = make(method)
    steps = [torch.tensor(a, dtype=torch.float32) for a in ([0, 1, 1, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0])]
    assert selector.phase_action(steps).tolist() == [0, 1, 1, 0]  # FeaK: a tie, on
    assert selector.phase_action(steps[:1] * 3 + [torch.ones(4)]).tolist() == [0, 1, 1, 0]
    one_each = [torch.eye(4)[i] for i in range(4)]  # every knowledge on in 1 step of 4: all off, FinK forced
    assert selector.phase_action(one_each).tolist() == [1, 0, 0, 0]


def test_soft_phase_action_is_the_mean():
    steps = [torch.tensor([0.2, 0.4, 0.6, 0.8]), torch.tensor([0.4, 0.4, 0.0, 1.0])]
    torch.testing.assert_close(make("ksm-soft").phase_action(steps), torch.tensor([0.3, 0.4, 0.3, 0.9]))


def test_halving_ranks_each_rung_and_gives_the_survivors_more_rows():
    selector = make("halving", SelectorConfig(search_budget=1.5))
    assert selector.rungs == [12, 6, 3, 2] and selector.episodes(None) == 23 and selector.normalised
    assert len(set(selector.candidates)) == 12 and all(w[0] or w[1] for w in selector.candidates)
    # rung k's candidates share budget / rungs of a final run: 1.5 final runs in all
    fractions = [selector.episode_fraction(e, None) for e in range(23)]
    assert sum(fractions) == pytest.approx(1.5) and fractions[0] == fractions[11] < fractions[12]
    # a made-up score per subset: the number of knowledges left out, FeaK's absence breaking ties by loss
    score = lambda w: (4 - sum(w), 1.0 - w[2])
    for e in range(23):
        action = tuple(int(a) for a in selector.act(torch.zeros(RAW), explore=True))
        record = selector.end_episode({"score": score(action)[0], "loss": score(action)[1]})
        assert record["subset"] == "".join(map(str, action)) and record["rung"] == selector.rung_of(e)[0]
    survivors = selector.standing(1)
    assert [sum(w) for w in survivors] == [1, 1, 2, 2, 2, 2] and survivors[0] == (1, 0, 0, 0)
    assert record["winner"] == "1000" and selector.act(torch.zeros(RAW), explore=False).tolist() == [1, 0, 0, 0]
    restored = make("halving")
    restored.load_state_dict(selector.state_dict())
    assert restored.scores == selector.scores and restored.winner() == (1, 0, 0, 0)


def test_knockout_runs_all_and_each_one_out_on_a_fifth_of_the_budget_and_ties_go_to_all():
    selector = make("knockout", SelectorConfig(search_budget=1.5))
    assert selector.candidates == [(1, 1, 1, 1), (0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 0, 1), (1, 1, 1, 0)]
    assert selector.rungs == [5] and selector.episodes(None) == 5 and selector.normalised
    assert [selector.episode_fraction(e, None) for e in range(5)] == pytest.approx([0.3] * 5)
    # FinK out scores best, RelK out ties with it on the metric but has the higher loss
    scores = {(0, 1, 1, 1): (0.8, 0.4), (1, 1, 1, 0): (0.8, 0.5)}
    for _ in range(5):
        action = tuple(int(a) for a in selector.act(torch.zeros(RAW), explore=True))
        score, loss = scores.get(action, (0.7, 0.3))
        record = selector.end_episode({"score": score, "loss": loss})
    assert record["winner"] == "0111"
    flat = make("knockout")
    for _ in range(5):
        flat.act(torch.zeros(RAW), explore=True)
        record = flat.end_episode({"score": 0.7, "loss": 0.3})
    assert record["winner"] == "1111"  # nothing to tell them apart: the control


def gated_search(gate, shifts, noise=0.05, rows=400, lead=0.0):
    """knockout-gate's five proxies on `rows` reward rows: all's row losses drawn around 0.75, each other
    subset's those plus its shift and fresh noise of sd `noise` per row; returns (selector, log lines)."""
    g = torch.Generator().manual_seed(0)
    base = 0.6 + 0.3 * torch.rand(rows, generator=g, dtype=torch.float64)
    selector, records = make("knockout-gate", SelectorConfig(search_gate=gate, search_lead=lead)), []
    for _ in range(5):
        action = "".join(str(int(a)) for a in selector.act(torch.zeros(RAW), explore=True))
        losses = base + shifts.get(action, 0.0) + (action != "1111") * noise * torch.randn(rows, generator=g,
                                                                                         dtype=torch.float64)
        records.append(selector.end_episode({"score": -float(losses.mean()), "loss": float(losses.mean()),
                                             "row_losses": losses.numpy()}))
    return selector, records


def test_knockout_gate_leaves_all_only_for_a_proxy_whose_row_by_row_gain_stands_out_of_the_noise():
    """The same proxies as knockout's; the best by loss wins only if its paired z against all's reaches
    -gate, else the next best that does, else all (here with no minimum lead). The row losses are not
    logged, the z of each is."""
    # FinK out lowers every row's loss by 0.02 (se of the row differences about 0.0025: z about -8)
    selector, records = gated_search(2.0, {"0111": -0.02, "1101": -0.001})
    assert [r["subset"] for r in records] == ["1111", "0111", "1011", "1101", "1110"]
    assert "row_losses" not in records[0] and records[0]["z_vs_all"] == 0.0
    assert records[1]["z_vs_all"] < -5 and -2 < records[3]["z_vs_all"] < 2
    assert records[-1]["winner"] == "0111"
    # gains of 0.004 (FeaK out) and 0.003 (RelK out): with little noise per row both stand out and the better
    # wins; with more, neither does and the control stays, where knockout itself follows the mean
    _, quiet = gated_search(2.0, {"1101": -0.004, "1110": -0.003}, noise=0.001)
    _, noisy = gated_search(2.0, {"1101": -0.004, "1110": -0.003}, noise=0.1)
    assert quiet[-1]["winner"] == "1101" and noisy[-1]["winner"] == "1111"
    plain = make("knockout")  # knockout itself on the noisy proxies: it follows the mean
    for r in noisy:
        plain.act(torch.zeros(RAW), explore=True)
        last = plain.end_episode({"score": r["score"], "loss": r["loss"]})
    assert last["winner"] != "1111" and "z_vs_all" not in last
    restored = make("knockout-gate")
    restored.load_state_dict(selector.state_dict())
    assert restored.z == selector.z and restored.winner() == (0, 1, 1, 1)
    assert make("knockout").load_state_dict({"scores": torch.zeros(2, 2, dtype=torch.float64)}) is None  # old ones
    with pytest.raises(KdError, match="--search-gate 0.0: must be a positive z"):
        make("knockout-gate", SelectorConfig(search_gate=0.0))
    with pytest.raises(KdError, match=r"--search-lead 1.0: must be a share of all's loss, in \[0, 1\)"):
        make("knockout-gate", SelectorConfig(search_lead=1.0))


def test_knockout_gate_leaves_all_only_for_a_lead_of_at_least_search_lead():
    """A lead clear of the rows' noise but below --search-lead keeps all; the same lead above it wins. The
    lead is logged beside z: how much lower the proxy's gold loss is than all's, as a share of all's."""
    shifts = {"0111": -0.02, "1101": -0.001}  # all's row losses average about 0.75: a lead of about 2.7%
    _, records = gated_search(2.0, shifts, lead=0.05)
    assert records[1]["lead_vs_all"] == pytest.approx(1 - records[1]["loss"] / records[0]["loss"])
    assert 0.02 < records[1]["lead_vs_all"] < 0.05 and records[1]["z_vs_all"] < -5
    assert records[-1]["winner"] == "1111"
    assert gated_search(2.0, shifts, lead=0.02)[1][-1]["winner"] == "0111"


def search(selector, score):
    """Run a search's episodes against a made-up score per subset; return its log lines."""
    records = []
    for _ in range(selector.episodes(None)):
        action = tuple(int(a) for a in selector.act(torch.zeros(RAW), explore=True))
        records.append(selector.end_episode({"score": score(action), "loss": 0.5}))
    return records


# planted effects on the score of switching each knowledge on, FinK ResK FeaK RelK, and the best subset
ADDITIVE = [((-0.02, 0.0, 0.01, -0.01), "0110"), ((0.01, -0.01, 0.0, 0.005), "1011"), ((0.0, 0.0, 0.0, 0.0), "1111"),
            ((-0.01, 0.02, -0.005, 0.01), "0101")]


@pytest.mark.parametrize("effects, best", ADDITIVE)
@pytest.mark.parametrize("seed", range(6))
def test_episode_ac_finds_the_best_subset_of_additive_effects_in_five_episodes(effects, best, seed):
    """Whatever order the seed explores in, the linear critic's argmax is the best of the 12 subsets, which
    need not be one of those it ran (two or three knowledges off); nothing to tell apart leaves `all`."""
    selector = make("episode-ac", SelectorConfig(search_budget=1.5), seed=seed)
    assert selector.episodes(None) == 5 and selector.episode_fraction(3, None) == pytest.approx(0.3)
    records = search(selector, lambda a: 0.8 + sum(e * x for e, x in zip(effects, a)))
    assert records[0]["subset"] == records[0]["reference"] == "1111" and records[0]["reward"] == 0
    assert len({r["subset"] for r in records}) == 5  # paired episodes are deterministic: none is run twice
    assert records[-1]["winner"] == best and "winner" not in records[-2]
    assert selector.act(torch.zeros(RAW), explore=False).tolist() == [int(d) for d in best]
    for r in records[1:]:  # each episode's reward is its score minus its reference's, both run
        ref = next(q for q in records if q["subset"] == r["reference"])
        assert r["reward"] == pytest.approx(r["score"] - ref["score"])


def test_episode_ac_explores_from_the_greedy_subset_and_a_restored_one_goes_on_alike():
    """The first subset to beat `all` becomes the greedy one and the reference of what follows; the critic
    holds each knowledge's effect as measured (the reward with its sign turned for a knowledge switched off)."""
    effects = (-0.02, 0.0, 0.01, -0.01)
    score = lambda a: 0.8 + sum(e * x for e, x in zip(effects, a))
    selector = make("episode-ac", seed=3)  # the seed's order tries FeaK, then RelK, ResK, FinK
    first = search(selector, score)
    assert [r["subset"] for r in first] == ["1111", "1101", "1110", "1010", "0110"]
    assert [r["reference"] for r in first] == ["1111", "1111", "1111", "1110", "1110"]
    assert first[2]["critic"] == pytest.approx([0.0, 0.0, 0.01, -0.01])
    assert first[-1]["critic"] == pytest.approx(list(effects))
    half = make("episode-ac", seed=3)
    search_two = [half.end_episode({"score": score(tuple(int(a) for a in half.act(torch.zeros(RAW), True))),
                                    "loss": 0.5}) for _ in range(2)]
    restored = make("episode-ac", seed=3)
    restored.load_state_dict(half.state_dict())
    rest = [restored.end_episode({"score": score(tuple(int(a) for a in restored.act(torch.zeros(RAW), True))),
                                  "loss": 0.5}) for _ in range(3)]
    assert search_two + rest == first


@pytest.mark.parametrize("method", ["halving", "knockout", "knockout-gate", "episode-ac"])
def test_a_search_needs_a_positive_budget(method):
    with pytest.raises(KdError, match="--search-budget 0.0: must be a positive"):
        make(method, SelectorConfig(search_budget=0.0))

