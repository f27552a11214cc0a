"""What makes the KSM's choice matter (kd_ref/distill.py, kd_ref/corrupt.py): the planted harm of
--corrupt, the chosen weights scaled to a fixed sum, the episodes' fixed subset of rows."""
import numpy as np
import pytest
import torch

from kd_ref.corrupt import corrupt_targets
from kd_ref.data.splits import Encoded
from kd_ref.distill import DistillConfig, applied_weights, check_config, episode_rows
from kd_ref.plumbing.errors import KdError
from kd_ref.selectors import SelectorConfig, make_selector
from kd_ref.teacher import TeacherView


def view(classes=3):
    g = torch.Generator().manual_seed(0)
    return TeacherView(torch.randn(4, classes, generator=g), [torch.randn(4, 5, 6, generator=g) for _ in range(3)], [])


def test_clean_targets_are_the_teacher_view_itself():
    t = view()
    logits, feak, relk = corrupt_targets(t, "none", None)
    assert logits is t.logits and feak is t.hidden and relk is t.hidden


@pytest.mark.parametrize("classes, label_range", [(2, None), (3, None), (1, (0.0, 5.0))])
def test_corrupt_resk_teaches_the_opposite_answer(classes, label_range):
    t = view(classes)
    logits, feak, relk = corrupt_targets(t, "resk", label_range)
    if label_range:  # the scale reversed: 0 <-> 5, 1 <-> 4, the middle stays
        torch.testing.assert_close(logits, 5.0 - t.logits)
        assert corrupt_targets(TeacherView(torch.tensor([[0.0], [1.0], [2.5]]), [], []), "resk",
                               label_range)[0].flatten().tolist() == [5.0, 4.0, 2.5]
    else:
        assert torch.equal(logits, t.logits[:, list(reversed(range(classes)))])
        assert (logits.argmax(-1) != t.logits.argmax(-1)).all() or classes > 2  # two classes: always swapped
    assert feak is t.hidden and relk is t.hidden  # the other kinds stay clean


@pytest.mark.parametrize("knowledge", ["feak", "relk"])
def test_corrupt_states_come_from_another_example_for_that_loss_only(knowledge):
    t = view()
    logits, feak, relk = corrupt_targets(t, knowledge, None)
    wrong, clean = (feak, relk) if knowledge == "feak" else (relk, feak)
    assert logits is t.logits and clean is t.hidden
    for w, h in zip(wrong, t.hidden):
        assert torch.equal(w[1:], h[:-1]) and torch.equal(w[0], h[-1])


def test_chosen_weights_sum_to_four_fixed_weights_are_kept():
    cfg = DistillConfig()
    ksm = make_selector("ksm-soft", 4, 4, SelectorConfig(), seed=0)
    action = torch.tensor([0.1, 0.3, 0.2, 0.2])
    torch.testing.assert_close(applied_weights(action, ksm, cfg), torch.tensor([0.5, 1.5, 1.0, 1.0]))
    torch.testing.assert_close(applied_weights(action, ksm, DistillConfig(action_norm="none")), action)
    kd = make_selector("kd", 4, 4, SelectorConfig(), seed=0)
    torch.testing.assert_close(applied_weights(torch.tensor([0.5, 0.5, 0, 0]), kd, cfg), torch.tensor([0.5, 0.5, 0, 0]))


def test_episode_rows_are_a_fixed_subset_of_the_given_fraction():
    rows = Encoded([([i], [0]) for i in range(50)], np.arange(50), np.arange(100, 150))
    a, b, other = episode_rows(rows, 0.2, seed=1), episode_rows(rows, 0.2, seed=1), episode_rows(rows, 0.2, seed=2)
    assert len(a) == 10 and np.array_equal(a.rows, b.rows) and not np.array_equal(a.rows, other.rows)
    assert np.all(np.diff(a.rows) > 0) and set(a.rows) <= set(rows.rows)  # sorted, kept their original row ids
    assert episode_rows(rows, 1.0, seed=1) is rows


@pytest.mark.parametrize("field, value", [("corrupt", "fink"), ("episode_fraction", 0.0), ("episode_data", "new"),
                                          ("action_norm", "max"), ("loss_norm", "l2")])
def test_bad_values_name_the_flag(field, value):
    with pytest.raises(KdError, match=f"^--{field.replace('_', '-')} {value}: "):
        check_config(DistillConfig(**{field: value}))
