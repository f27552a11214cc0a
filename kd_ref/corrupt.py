"""--corrupt: train against deliberately wrong knowledge of one kind (a diagnostic, [ours]).

A selector that selects should learn to turn a harmful kind of knowledge down.
Real knowledge is seldom harmful enough to show that on a short run, so this
plants the harm: one kind of knowledge is replaced by a wrong target, the
others are left alone, and the run's log shows whether the weight on the
corrupted kind fell. `all` applies the harm at full weight: the yardstick.

- resk: the teacher's logits with the classes in reverse order (two classes:
  swapped), or for regression (STS-B) the teacher's score with the scale in
  reverse order (reflected within the training labels' range: 5 - t on 0..5),
  so ResK teaches the opposite answer. Reflected, not negated: a negated target
  lies far outside the labels, and under the KSM's loss normalisation (a loss
  divided by its running mean) a far target pulls weakly, so the harm is
  defused before the agent chooses anything (experiments/RESULTS-kd.md, issue 12).
- feak / relk: that loss's teacher states are those of another example of the
  batch (rows rolled by one), so it teaches features of the wrong sentence.
  Positions past that example's length hold what the teacher view holds there.
Nothing else changes: FinK's gold labels, the other losses' targets, and the
teacher [CLS] the KSM state reads stay clean.
"""
from kd_ref.teacher import TeacherView

CORRUPTIBLE = ("none", "resk", "feak", "relk")


def corrupt_targets(t: TeacherView, knowledge: str, label_range: tuple[float, float] | None):
    """(teacher logits for ResK, teacher states for FeaK, teacher states for RelK), one of them wrong.

    label_range: (lowest, highest) training label for regression, None for classification."""
    logits, feak, relk = t.logits, t.hidden, t.hidden
    if knowledge == "resk":
        logits = logits.flip(-1) if label_range is None else sum(label_range) - logits
    elif knowledge in ("feak", "relk"):
        rolled = [h.roll(1, dims=0) for h in t.hidden]
        feak, relk = (rolled, relk) if knowledge == "feak" else (feak, rolled)
    return logits, feak, relk
