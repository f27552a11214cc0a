"""End to end: run.py on tiny tasks made from the demo generator, a tiny teacher
whose head is for another task (so it is fine-tuned first), one epoch per run."""
import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

import run
from kd_ref import distill, fused
from kd_ref.corrupt import corrupt_targets
from kd_ref.data.glue import get_task
from kd_ref.data.splits import HOLDOUT_SEED, encode_split, stratified_split
from kd_ref.data.tokenizer import BertTokenizer
from kd_ref.plumbing import teacher_setup
from kd_ref.plumbing.checkpoint import load_bert
from kd_ref.plumbing.errors import KdError
from tiny_task import log_lines as phases, run_args as args, write_stsb, write_tiny_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    write_tiny_task(d, n_train=240, n_dev=60, n_test=40, num_labels=3)  # another task's head: fine-tuned first
    write_stsb(d / "data")
    return d


def test_ksm_run_leaves_everything_a_paper_needs(tiny, tmp_path):
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "ksm-soft", "--student-layers", "2"))
    d = tmp_path / "ksm-soft-s1"
    config = json.loads((d / "config.json").read_text())
    assert config["layer_map"] == [0, 2, 4] and config["method"] == "ksm-soft"
    assert config["versions"]["torch"] == torch.__version__ and config["reward_split_is_dev"] is False
    metrics = json.loads((d / "metrics.json").read_text())
    assert set(metrics["dev"]) == {"accuracy"} and 0 <= metrics["dev"]["accuracy"] <= 1
    assert metrics["params"]["student"] < metrics["params"]["teacher"]
    assert {"episodes_s", "final_s", "eval_s"} <= set(metrics["wall_s"])
    log = phases(d)
    episode = [r for r in log if r["run"] == "episode"]
    final = [r for r in log if r["run"] == "final"]
    assert len(episode) == len(final) == 2
    for r in episode:
        assert {"reward", "reward_task", "reward_explore", "q", "lr"} <= set(r)
        assert r["reward"] == pytest.approx(r["reward_task"] + r["reward_explore"])
        assert set(r["losses"]) == {"fink", "resk", "feak", "relk"}
        assert all(0 <= a <= 1 for a in r["action"])
    assert ["dev" in r for r in final] == [False, True]  # scored once an epoch (--curve-every), 2 phases an epoch
    for r in final:  # a final run learns nothing, but logs the same reward columns, and Q
        assert {"reward", "reward_task", "reward_explore", "q"} <= set(r) and r["reward_explore"] == 0.0
        assert r["reward"] == r["reward_task"]
    assert len((d / "dev_predictions.tsv").read_text().splitlines()) == 61
    assert len((d / "RTE.tsv").read_text().splitlines()) == 41
    ET.parse(d / "report.svg")
    assert (tmp_path / "teacher" / "model.safetensors").is_file()
    # the student folder is a Hugging Face checkpoint: transformers reads the same logits
    transformers = pytest.importorskip("transformers")
    hf = transformers.BertForSequenceClassification.from_pretrained(d / "student").eval()
    ours, _ = load_bert(d / "student")
    ids = torch.randint(5, 70, (3, 12))
    mask = torch.ones_like(ids)
    torch.testing.assert_close(ours.eval()(ids, mask).logits, hf(input_ids=ids, attention_mask=mask).logits,
                               atol=1e-5, rtol=1e-5)


def test_finished_run_is_not_overwritten(tiny, tmp_path):
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "kd"))
    before = (tmp_path / "kd-s1" / "metrics.json").read_bytes()
    with pytest.raises(KdError, match="already holds a finished run"):
        run.main(args(tiny, tmp_path, "--task", "rte", "--method", "kd"))
    assert (tmp_path / "kd-s1" / "metrics.json").read_bytes() == before


def test_fine_tuned_teacher_is_reused_only_with_the_recipe_it_was_made_with(tiny, tmp_path, capsys):
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "finetune"))
    recipe = json.loads((tmp_path / "teacher" / "finetune.json").read_text())
    assert recipe["task"] == "rte" and recipe["teacher_seed"] == 42 and recipe["teacher_lr"] == 5e-4
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "kd"))
    assert "reusing the fine-tuned teacher" in capsys.readouterr().out
    with pytest.raises(KdError, match="fine-tuned with --teacher-seed 42 \\(now 7\\)"):
        run.main(args(tiny, tmp_path, "--task", "rte", "--method", "all", "--teacher-seed", "7"))
    with pytest.raises(KdError, match="fine-tuned with task rte \\(now stsb\\)"):
        run.main(args(tiny, tmp_path, "--task", "stsb", "--method", "all"))
    (tmp_path / "teacher" / "finetune.json").unlink()
    with pytest.raises(KdError, match="without a readable finetune.json"):
        run.main(args(tiny, tmp_path, "--task", "rte", "--method", "all"))
    assert not (tmp_path / "all-s1").exists()


def test_teacher_only_prepares_the_teacher_that_later_runs_reuse(tiny, tmp_path, capsys):
    run.main(args(tiny, tmp_path, "--task", "rte", "--teacher-only"))
    assert "teacher ready: " in capsys.readouterr().out
    made = sorted(p.name for p in tmp_path.iterdir())
    assert "teacher" in made and not [name for name in made if "-s" in name or name.startswith("summary")]
    record = json.loads((tmp_path / "teacher.json").read_text())
    assert record["task"] == "rte" and 0 <= record["dev"]["accuracy"] <= 1 and record["finetune_s"] > 0
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "finetune"))
    assert "reusing the fine-tuned teacher" in capsys.readouterr().out
    assert (tmp_path / "finetune-s1" / "metrics.json").is_file()
    # a run elsewhere from this teacher reads its outputs from beside it rather than computing its own
    other = tmp_path / "other"
    run.main(args(tiny, other, "--task", "rte", "--method", "finetune", "--teacher", str(tmp_path / "teacher")))
    assert f"reused {tmp_path / 'teacher-cache.safetensors'}" in capsys.readouterr().out
    assert not (other / "teacher-cache.safetensors").exists() and (other / "finetune-s1" / "metrics.json").is_file()


def test_same_seed_same_actions_and_metrics(tiny, tmp_path):
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        run.main(args(tiny, tmp_path / name, "--task", "rte", "--method", "ksm-hard", "--seed", seed))
    logs = {n: phases(tmp_path / n / f"ksm-hard-s{s}") for n, s in (("a", 3), ("b", 3), ("c", 4))}
    metrics = {n: json.loads((tmp_path / n / f"ksm-hard-s{s}" / "metrics.json").read_text())
               for n, s in (("a", 3), ("b", 3), ("c", 4))}
    assert logs["a"] == logs["b"]
    assert metrics["a"]["dev"] == metrics["b"]["dev"]
    assert [r["losses"] for r in logs["a"]] != [r["losses"] for r in logs["c"]]


def test_every_baseline_takes_the_weights_of_method_md(tiny, tmp_path):
    methods = "finetune,kd,pkd,all,random-soft,random-hard"
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", methods, "--seeds", "1,2"))
    expected = {"finetune": [1, 0, 0, 0], "kd": [0.5, 0.5, 0, 0], "pkd": [1, 1, 100, 0], "all": [1, 1, 1, 1]}
    for method, action in expected.items():
        log = phases(tmp_path / f"{method}-s1")
        assert all(r["run"] == "final" for r in log), "only the KSM runs episodes"
        assert all(r["action"] == action for r in log)
    soft = [a for r in phases(tmp_path / "random-soft-s1") for a in r["action"]]
    hard = [r["action"] for r in phases(tmp_path / "random-hard-s1")]
    assert len(set(soft)) == len(soft) and all(0 <= a <= 1 for a in soft)
    assert all(set(a) <= {0, 1} and a[0] + sum(a) > 0 for a in hard)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["methods"]) == set(methods.split(","))
    accs = [json.loads((tmp_path / f"kd-s{s}" / "metrics.json").read_text())["dev"]["accuracy"] for s in (1, 2)]
    assert summary["methods"]["kd"]["dev"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert summary["methods"]["kd"]["dev"]["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert "| kd | 2 |" in (tmp_path / "summary.md").read_text()


def test_a_fixed_subset_applies_its_digits_and_subset_1111_is_all(tiny, tmp_path):
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "all,subset-1111,subset-0111"))
    assert all(r["action"] == [0, 1, 1, 1] for r in phases(tmp_path / "subset-0111-s1"))
    same = [phases(tmp_path / f"{m}-s1") for m in ("all", "subset-1111")]
    assert same[0] == same[1]  # same weights, same normalisation: the same run, every logged loss and score
    dev = [json.loads((tmp_path / f"{m}-s1" / "metrics.json").read_text())["dev"] for m in ("all", "subset-1111")]
    assert dev[0] == dev[1]


def test_regression_task_end_to_end(tiny, tmp_path):
    run.main(args(tiny, tmp_path, "--task", "stsb", "--method", "ksm-soft"))
    metrics = json.loads((tmp_path / "ksm-soft-s1" / "metrics.json").read_text())
    assert {"pearson", "spearman"} <= set(metrics["dev"])
    assert all(np.isfinite(v) for v in metrics["dev"].values())
    preds = [float(line.split("\t")[1]) for line in
             (tmp_path / "ksm-soft-s1" / "STS-B.tsv").read_text().splitlines()[1:]]
    assert len(preds) == 40 and all(np.isfinite(preds))
    episode = [r for r in phases(tmp_path / "ksm-soft-s1") if r["run"] == "episode"]
    assert sum(r["reward_task"] for r in episode) > 0, "the gold MSE on the reward split went down"


def test_corrupt_resk_on_regression_reverses_the_training_labels_scale(tiny, tmp_path, monkeypatch):
    """The tiny STS-B's scores are 1 and 4: ResK's corrupted target is 5 - t (kd_ref/corrupt.py)."""
    seen = []

    def spy(t, knowledge, label_range):
        seen.append((knowledge, label_range))
        return corrupt_targets(t, knowledge, label_range)
    monkeypatch.setattr(distill, "corrupt_targets", spy)
    run.main(args(tiny, tmp_path, "--task", "stsb", "--method", "all", "--corrupt", "resk"))
    assert seen and set(seen) == {("resk", (1.0, 4.0))}


def test_episodes_never_train_on_the_reward_split(tiny, tmp_path, monkeypatch):
    seen = []
    original = distill.train_student

    def spy(model, selector, teacher_view, train, cfg, **kw):
        rewarded = {int(i) for b in kw.get("reward_batches") or [] for i in b.index[b.valid]}
        seen.append((kw["run"], set(train.rows.tolist()), rewarded))
        return original(model, selector, teacher_view, train, cfg, **kw)

    monkeypatch.setattr(distill, "train_student", spy)
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "ksm-soft", "--episodes", "2"))
    (r1, train1, reward1), (r2, train2, reward2), (r3, train3, reward3) = seen
    assert (r1, r2, r3) == ("episode", "episode", "final")
    assert reward1 and not train1 & reward1 and train1 == train2 and reward1 == reward2 == reward3
    fraction = distill.DistillConfig.episode_fraction  # the default: one fixed subset of this share
    assert len(train1) == math.ceil(fraction * (240 - len(reward1))), f"--episode-fraction {fraction}"
    assert train3 == set(range(240)), "the final run trains on the whole training set"


def test_reward_split_is_stratified_and_disjoint():
    labels = np.array([0] * 700 + [1] * 300)
    keep, held = stratified_split(labels, 0.1, seed=0, regression=False)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == 1000
    assert (labels[held] == 0).sum() == 70 and (labels[held] == 1).sum() == 30
    assert not np.array_equal(held, stratified_split(labels, 0.1, seed=1, regression=False)[1])


def test_holdout_rows_train_neither_teacher_nor_student_and_score_every_student(tiny, tmp_path, monkeypatch):
    trained = {"teacher": [], "student": []}  # (input_ids, token_type_ids) of every example each trained on
    finetune, train_student = teacher_setup.finetune, distill.train_student

    def spy_teacher(model, train, **kw):
        trained["teacher"] += [tuple(map(tuple, p)) for p in train.pairs]
        return finetune(model, train, **kw)

    def spy_student(model, selector, teacher_view, train, cfg, **kw):
        trained["student"] += [tuple(map(tuple, p)) for p in train.pairs]
        return train_student(model, selector, teacher_view, train, cfg, **kw)

    monkeypatch.setattr(teacher_setup, "finetune", spy_teacher)
    monkeypatch.setattr(distill, "train_student", spy_student)
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "kd", "--holdout", "0.25", "--curve-every", "1"))
    full = encode_split(tiny / "data", get_task("rte"), "train", BertTokenizer.from_dir(tiny / "teacher", max_len=32))
    held = stratified_split(full.labels, 0.25, HOLDOUT_SEED, regression=False)[1]
    held_pairs = {tuple(map(tuple, full.pairs[i])) for i in held}
    assert len(held) == 60 and len(held_pairs) == 60
    for who, pairs in trained.items():
        assert len(set(pairs)) == 180 and not held_pairs & set(pairs), who
    metrics = json.loads((tmp_path / "kd-s1" / "metrics.json").read_text())
    assert metrics["holdout_rows"] == 60 and 0 <= metrics["holdout"]["accuracy"] <= 1
    # the held-out gold loss beside the metric, at the end and at every phase end of the final run
    phases = [json.loads(line) for line in (tmp_path / "kd-s1" / "log.jsonl").read_text().splitlines()]
    assert metrics["holdout"]["loss"] > 0 and phases[-1]["holdout"] == metrics["holdout"]
    assert all(p["holdout"]["loss"] > 0 for p in phases) and len({p["holdout"]["loss"] for p in phases}) > 1
    assert json.loads((tmp_path / "teacher" / "finetune.json").read_text())["holdout"] == 0.25
    with pytest.raises(KdError, match="fine-tuned with --holdout 0.25 \\(now 0.0\\)"):
        run.main(args(tiny, tmp_path, "--task", "rte", "--method", "all"))
    other = args(tiny, tmp_path / "other", "--task", "rte", "--method", "all", "--holdout", "0.1")
    other[other.index("--teacher") + 1] = str(tmp_path / "teacher")
    with pytest.raises(KdError, match="trained on rows this run holds out"):
        run.main(other)
    assert not (tmp_path / "all-s1").exists() and not (tmp_path / "other" / "all-s1").exists()


def test_the_curve_scores_dev_and_holdout_every_curve_every_phases_and_changes_no_result(tiny, tmp_path):
    """--curve-every: the final run scores dev and the held-out rows after every N phases and at its end;
    the scores are passes in eval mode, so the student, its actions and losses are the same bits."""
    logs, students = {}, {}
    for every in ("1", "3", "0"):
        out = tmp_path / every
        run.main(args(tiny, out, "--task", "rte", "--method", "ksm-soft", "--holdout", "0.25", "--epochs", "2",
                      "--phases-per-epoch", "4", "--curve-every", every))
        logs[every] = [r for r in phases(out / "ksm-soft-s1") if r["run"] == "final"]
        students[every] = (out / "ksm-soft-s1" / "student" / "model.safetensors").read_bytes()
    scored = {every: [r["phase"] for r in rows if "dev" in r] for every, rows in logs.items()}
    assert scored == {"1": list(range(8)), "3": [2, 5, 7], "0": []}
    for rows in logs.values():
        assert all(("dev" in r) == ("holdout" in r) for r in rows)
    unscored = lambda rows: [{k: v for k, v in r.items() if k not in ("dev", "holdout")} for r in rows]
    assert unscored(logs["1"]) == unscored(logs["3"]) == unscored(logs["0"])
    assert students["1"] == students["3"] == students["0"]


def test_bad_input_is_one_line_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--task", "nope", "--teacher", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "nope" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def demo(out: Path, *flags: str) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--demo", "--out", str(out), *flags],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]


def mean_weights(run_dir: Path) -> torch.Tensor:
    """[4] the knowledge weights the final run chose, averaged over its phases."""
    return torch.tensor([r["action"] for r in phases(run_dir) if r["run"] == "final"]).mean(0)


def test_demo_runs_the_whole_pipeline_and_its_ksm_selects(tmp_path):
    """`python run.py --demo`: teacher training, KSM episodes, final run, report, on the embedded task;
    the weights the KSM chose are not four flat lines (issue: some final phase has two weights at
    least 0.3 apart). Then the same with planted harm, the suite's small version of the check on
    real data: ResK against reversed teacher logits. `all` applies the harm at full weight; the
    KSM must turn ResK down to a mean weight of at most 0.2 and end at least as good as `all`."""
    demo(tmp_path / "demo")
    run_dir = tmp_path / "demo" / "ksm-soft-s1"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher_dev"]["accuracy"] > 0.75, "the demo teacher learns its task"
    assert metrics["dev"]["accuracy"] > 0.7, "and the student learns it from the teacher"
    assert {r["run"] for r in phases(run_dir)} == {"episode", "final"}
    ET.parse(run_dir / "report.svg")
    final = torch.tensor([r["action"] for r in phases(run_dir) if r["run"] == "final"])
    assert (final.max(1).values - final.min(1).values).max() >= 0.3, final

    demo(tmp_path / "demo", "--method", "all,ksm-soft,halving,knockout,knockout-gate,episode-ac", "--corrupt", "resk",
         "--overwrite")  # teacher reused
    weights = mean_weights(tmp_path / "demo" / "ksm-soft-s1")
    assert weights[1] <= 0.2, weights
    score = {m: json.loads((tmp_path / "demo" / f"{m}-s1" / "metrics.json").read_text())["dev"]["accuracy"]
             for m in ("all", "ksm-soft", "halving", "knockout", "knockout-gate", "episode-ac")}
    assert score["ksm-soft"] >= score["all"], score
    # the searches' proxy runs, scored on held-out rows of train, see the harm too: their winners leave ResK out
    # (knockout-gate: by a paired z beyond 2 on the reward rows)
    for search in ("halving", "knockout", "knockout-gate", "episode-ac"):
        assert search_log(tmp_path / "demo" / f"{search}-s1")[-1]["winner"][1] == "0", search
        assert score[search] >= score["all"], score
    # episode-ac's first episode is knockout's first proxy run, `all` on a fifth of the budget: the same run
    first = lambda m: {k: v for k, v in search_log(tmp_path / "demo" / f"{m}-s1")[0].items()
                       if k in ("subset", "fraction", "accuracy", "loss")}
    assert first("episode-ac") == first("knockout") and first("knockout")["subset"] == "1111"
    # knockout-pool pools knockout's proxies over seeds 1 (knockout's run above) and 2 (no run has it: its proxies
    # are run first, as knockout-gate's, without a final run), chooses once, and trains that subset: ResK out too
    # (a lead of 48% and 18% over all's proxy: t 2.2 over the two seeds), the very final run of knockout's seed 1,
    # which chose the same
    demo(tmp_path / "demo", "--method", "knockout-pool", "--pool-seeds", "1,2", "--corrupt", "resk")
    pooled = phases(tmp_path / "demo" / "knockout-pool-s1")
    assert pooled[0]["event"] == "pool" and pooled[0]["seeds"] == [1, 2] and pooled[0]["winner"] == "1011"
    assert pooled[0]["runs"][1].endswith("knockout-gate-s2")
    proxies = tmp_path / "demo" / "knockout-gate-s2"
    assert len(search_log(proxies)) == 5 and not (proxies / "metrics.json").exists()
    assert not (proxies / "checkpoint").exists()
    final = lambda rows: [r for r in rows if r.get("run") == "final"]
    assert final(pooled) == final(phases(tmp_path / "demo" / "knockout-s1"))
    assert not any(r.get("run") == "final" for r in phases(proxies))


@pytest.mark.parametrize("flag, value", [("--epochs", "0"), ("--warmup", "1.5"), ("--gamma", "1.0"), ("--tau", "0.0"),
                                         ("--reward-fraction", "1.0"), ("--alpha", "-0.1"), ("--student-layers", "0"),
                                         ("--checkpoint-every", "0"), ("--method", "ksm-medium"),
                                         ("--method", "subset-0011"), ("--method", "subset-2111"),
                                         ("--search-gate", "0.0"), ("--search-lead", "1.0"),
                                         ("--curve-every", "-1"), ("--checkpoint-minutes", "-0.5")])
def test_out_of_range_flags_are_refused_before_any_work(tmp_path, flag, value):
    with pytest.raises(KdError, match=f"^{flag} {value}: "):
        run.main(["--task", "rte", "--teacher", str(tmp_path / "none"), "--out", str(tmp_path / "out"), flag, value])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, where", [((), "cpu, --no-compile"), (("--compile",), "cpu")])
def test_cuda_graphs_without_compiled_cuda_models_is_refused_before_any_work(tmp_path, flags, where):
    message = f"^--cuda-graphs: needs --compile on a CUDA device \\(here: --device {where}\\)$"
    with pytest.raises(KdError, match=message):
        run.main(["--task", "rte", "--teacher", str(tmp_path / "none"), "--out", str(tmp_path / "out"),
                  "--device", "cpu", "--cuda-graphs", *flags])
    assert not (tmp_path / "out").exists()


class GraphTrees:
    """CUDA graph trees' one rule for the caller, on the CPU: a replay may overwrite the outputs of
    earlier replays. An output of a graph run with gradients is good until the next step begins
    (cudagraph_mark_step_begin); one run without (teacher, evaluation) until the next such run. Here
    every output is filled with NaN once its time is up, so a loop that reads one too late sees it."""

    def __init__(self):
        self.outputs = {True: [], False: []}  # by torch.is_grad_enabled() at the call
        self.overwritten = 0

    def graphed(self, fn):
        def replay(*args, **kwargs):
            if not torch.is_grad_enabled():
                self.overwrite(False)
            out = fn(*args, **kwargs)
            self.outputs[torch.is_grad_enabled()] += [t for t in torch.utils._pytree.tree_leaves(out)
                                                      if isinstance(t, torch.Tensor)]
            return out
        return replay

    def overwrite(self, *kinds):
        for kind in kinds:
            for t in self.outputs[kind]:
                t.detach().fill_(math.nan)
            self.overwritten += len(self.outputs[kind])
            self.outputs[kind] = []

    def step_begin(self):
        self.overwrite(True, False)


@pytest.mark.parametrize("teacher", [(), ("--teacher-cache-gb", "0")], ids=["cached teacher", "live teacher"])
def test_cuda_graphs_compiles_every_graph_for_them_and_keeps_to_their_rule(tiny, tmp_path, monkeypatch, teacher):
    """What --cuda-graphs changes, on the CPU, which has no CUDA graphs (run.py refuses it there): the
    teacher, the student and the fused loss are compiled in mode reduce-overhead, and every training step
    (of the episodes and the final run) starts with cudagraph_mark_step_begin. The modes are recorded, not
    compiled (inductor would take minutes here), and the graphs' overwrites emulated (GraphTrees): the run
    is the same to the last bit, so the loop reads no output after a replay could have overwritten it."""
    monkeypatch.setattr(run, "check_cuda_graphs", lambda args, device: None)
    modes, marks, trees = [], [], GraphTrees()

    def compile_model(model, mode=None):
        modes.append((type(model).__name__, mode))
        model.forward = trees.graphed(model.forward)

    def make_fused_loss(compile, mode=None):
        modes.append(("loss", mode))
        return trees.graphed(fused.fused_kd_loss)

    def mark_step_begin():
        marks.append(len(marks))
        trees.step_begin()
    monkeypatch.setattr(run, "compile_model", compile_model)
    monkeypatch.setattr(distill, "make_fused_loss", make_fused_loss)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", mark_step_begin)
    flags = ("--task", "rte", "--method", "ksm-soft", *teacher)
    run.main(args(tiny, tmp_path / "graphs", *flags, "--compile", "--cuda-graphs"))
    log = phases(tmp_path / "graphs" / "ksm-soft-s1")
    # the teacher, the student, and a loss for each run (the episode, the final run)
    assert modes == [("Bert", "reduce-overhead")] * 2 + [("loss", "reduce-overhead")] * 2
    episode_steps = max(r["step"] for r in log if r["run"] == "episode")
    final_steps = max(r["step"] for r in log if r["run"] == "final")
    assert len(marks) == episode_steps + final_steps  # one episode, then the final run
    # at every step the student's logits and 3 states and the loss's 2 outputs, and the evaluations' logits
    assert trees.overwritten > 6 * len(marks)
    monkeypatch.setattr(run, "compile_model", lambda model, mode=None: modes.append((type(model).__name__, mode)))
    monkeypatch.setattr(distill, "make_fused_loss", lambda compile, mode=None: fused.fused_kd_loss)
    run.main(args(tiny, tmp_path / "plain", *flags, "--compile"))
    assert phases(tmp_path / "plain" / "ksm-soft-s1") == log
    assert modes[4:] == [("Bert", None)] * 2 and len(marks) == episode_steps + final_steps


def test_graph_trees_emulation_overwrites_what_a_replay_would():
    trees = GraphTrees()
    double = trees.graphed(lambda x: {"y": [x * 2]})
    x = torch.ones(2, requires_grad=True)
    kept = double(x)["y"][0]
    with torch.no_grad():
        first = double(x)["y"][0]
        second = double(x)["y"][0]
    assert torch.isnan(first).all() and not torch.isnan(second).any() and not torch.isnan(kept).any()
    trees.step_begin()
    assert torch.isnan(kept).all() and torch.isnan(second).all()


def test_knockout_pool_without_two_seeds_is_refused_before_any_work(tiny, tmp_path):
    with pytest.raises(KdError, match="--method knockout-pool: 0 seed.s. with knockout's five proxies in .*; pooling "
                                      "needs two at least: name them with --pool-seeds"):
        run.main(args(tiny, tmp_path, "--task", "rte", "--method", "knockout-pool"))
    with pytest.raises(KdError, match=r"--pool-from .*nowhere: no such folder"):
        run.main(args(tiny, tmp_path, "--task", "rte", "--method", "knockout-pool", "--pool-from",
                      str(tmp_path / "nowhere"), "--pool-seeds", "1,2"))
    assert not (tmp_path / "teacher").exists() and not list(tmp_path.glob("knockout*"))


def test_act_every_step_applies_a_new_action_each_step(tiny, tmp_path, monkeypatch):
    from kd_ref.selectors import KsmSelector
    acts, original = [], KsmSelector.act

    def spy(self, raw_state, explore):
        acts.append(original(self, raw_state, explore))
        return acts[-1]

    monkeypatch.setattr(KsmSelector, "act", spy)
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "ksm-soft", "--act-every-step"))
    log = phases(tmp_path / "ksm-soft-s1")
    episode_steps = max(r["step"] for r in log if r["run"] == "episode")  # one episode, then the final run
    for run_name, base in (("episode", 0), ("final", episode_steps)):
        begin = base
        for r in (r for r in log if r["run"] == run_name):  # a phase logs the mean of its steps' actions
            end = base + r["step"]
            assert r["action"] == pytest.approx(torch.stack(acts[begin:end]).mean(0).tolist(), abs=1e-6)
            begin = end
    assert len(acts) == end  # one action per step of every run
    assert len({tuple(a.tolist()) for a in acts}) > len(log)  # more distinct actions than phases


@pytest.mark.parametrize("flags, message", [
    (("--student-layers", "5"), "--student-layers 5: must be between 1 and the teacher's 4 layers"),
    (("--student-hidden", "128", "--student-init", "random"), "--student-hidden 128: wider than the teacher's 32"),
    (("--student-hidden", "96", "--student-init", "random"), "--student-hidden 96: must be a multiple of 64")])
def test_impossible_students_are_refused_before_the_teacher_is_trained(tiny, tmp_path, flags, message):
    with pytest.raises(KdError, match="^" + message.replace("(", r"\(")):
        run.main(args(tiny, tmp_path, "--task", "rte", *flags))
    assert not (tmp_path / "teacher").exists()


def search_log(run_dir: Path) -> list[dict]:
    return [r for r in phases(run_dir) if r.get("event") == "search"]


@pytest.fixture(scope="module", params=["halving", "knockout", "knockout-gate", "episode-ac"])
def search_tiny(tiny, tmp_path_factory, request):
    """A search's run on the tiny task (its choice is checked on the demo task, whose teacher knows
    something: test_demo_runs_the_whole_pipeline_and_its_ksm_selects)."""
    out = tmp_path_factory.mktemp(request.param)
    flags = ("--task", "rte", "--student-layers", "2", "--reward-fraction", "0.25", "--search-budget", "3")
    run.main(args(tiny, out, *flags, "--method", request.param))
    return out, flags, request.param


def test_a_search_scores_every_rung_and_its_final_run_is_the_winners_subset(tiny, search_tiny):
    out, flags, method = search_tiny
    search = search_log(out / f"{method}-s1")
    rungs = {"halving": [0] * 12 + [1] * 6 + [2] * 3 + [3] * 2, "knockout": [0] * 5, "knockout-gate": [0] * 5,
             "episode-ac": [0] * 5}[method]
    assert [r["rung"] for r in search] == rungs
    assert all(r["score"] == -r["loss"] and r["loss"] > 0 for r in search)  # the default --search-score loss
    winner = search[-1]["winner"]
    run.main(args(tiny, out, *flags, "--method", f"subset-{winner}", "--loss-norm", "ema"))
    final = [r for r in phases(out / f"{method}-s1") if r.get("run") == "final"]
    assert final == phases(out / f"subset-{winner}-s1")  # bit for bit: losses, actions, dev scores


def test_search_score_metric_ranks_the_same_proxies_by_the_metric(tiny, search_tiny, tmp_path):
    """--search-score metric (the default before 2026-12-02): the same proxy runs as the loss's, each scored
    by the reward split's main metric, the winner the highest, ties to the lower loss."""
    out, flags, method = search_tiny
    shutil.copytree(out / "teacher", tmp_path / "teacher")
    run.main(args(tiny, tmp_path, *flags, "--method", method, "--search-score", "metric"))
    by_metric, by_loss = search_log(tmp_path / f"{method}-s1"), search_log(out / f"{method}-s1")
    assert all(r["score"] == r["accuracy"] for r in by_metric)
    if method.startswith("knockout"):  # one rung: the very same proxies, ranked otherwise
        strip = lambda rows: [{k: v for k, v in r.items() if k not in ("score", "winner")} for r in rows]
        assert strip(by_metric) == strip(by_loss)
    if method == "knockout":  # (knockout-gate's winner must also pass its z test)
        assert by_metric[-1]["winner"] == min(by_metric, key=lambda r: (-r["accuracy"], r["loss"]))["subset"]


def test_a_search_never_reads_dev(tiny, search_tiny, tmp_path):
    """The same search with dev's labels scrambled: every proxy's score and the winner are unchanged."""
    out, flags, method = search_tiny
    data = tmp_path / "data"
    shutil.copytree(tiny / "data", data)
    dev = (data / "RTE" / "dev.tsv").read_text().splitlines()
    flipped = {"entailment": "not_entailment", "not_entailment": "entailment"}
    (data / "RTE" / "dev.tsv").write_text("\n".join(
        [dev[0]] + ["\t".join(c[:-1] + [flipped[c[-1]]]) for c in (line.split("\t") for line in dev[1:])]) + "\n")
    shutil.copytree(out / "teacher", tmp_path / "run" / "teacher")
    again = args(tiny, tmp_path / "run", *flags, "--method", method)
    again[again.index("--data-dir") + 1] = str(data)
    run.main(again)
    assert search_log(tmp_path / "run" / f"{method}-s1") == search_log(out / f"{method}-s1")
    trained = lambda d: [(r["action"], r["losses"]) for r in phases(d) if r.get("run") == "final"]
    assert trained(tmp_path / "run" / f"{method}-s1") == trained(out / f"{method}-s1")  # and so is the final run


@pytest.mark.parametrize("case", ["no teacher", "no data folder", "empty data folder", "bad flag"])
def test_an_error_before_any_work_leaves_no_output_folder(tiny, tmp_path, case):
    flags = args(tiny, tmp_path / "out", "--task", "rte")
    at = lambda flag: flags.index(flag) + 1
    if case == "no teacher":
        flags[at("--teacher")] = str(tmp_path / "bert-base")
        expected = "--teacher .*bert-base: no such folder.*README's first real run"
    elif case == "no data folder":
        flags[at("--data-dir")] = str(tmp_path / "glue")
        expected = "GLUE data directory .*glue .*does not exist"
    elif case == "empty data folder":
        (tmp_path / "glue").mkdir()
        flags[at("--data-dir")] = str(tmp_path / "glue")
        expected = "glue/RTE/train.tsv: file not found"
    else:
        flags += ["--loss-norm", "sometimes"]
        expected = "^--loss-norm: invalid choice: 'sometimes' \\(choose from 'auto', 'ema', 'none'\\)"
    with pytest.raises(KdError, match=expected):
        run.main(flags)
    assert not (tmp_path / "out").exists()


def test_summary_keeps_every_method_and_a_finished_run_keeps_no_checkpoint(tiny, tmp_path, capsys):
    """Two invocations into one folder: the summary has both methods' rows. checkpoint/ stays only with
    --keep-checkpoint. Output redirected (capsys: not a terminal), the progress still shows as plain lines."""
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "kd", "--keep-checkpoint"))
    assert (tmp_path / "kd-s1" / "checkpoint").is_dir()
    capsys.readouterr()
    run.main(args(tiny, tmp_path, "--task", "rte", "--method", "ksm-soft", "--seeds", "2"))
    assert not (tmp_path / "ksm-soft-s2" / "checkpoint").exists()
    assert (tmp_path / "ksm-soft-s2" / "metrics.json").is_file() and (tmp_path / "ksm-soft-s2" / "student").is_dir()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {m: s["seeds"] for m, s in summary["methods"].items()} == {"kd": [1], "ksm-soft": [2]}
    table = (tmp_path / "summary.md").read_text()
    assert "| kd | 1 |" in table and "| ksm-soft | 1 |" in table
    err = capsys.readouterr().err.splitlines()
    # one plain line at each phase end (2 phases) of the episode and of the final run
    episode = [line for line in err if line.startswith("episode 1 of 1  ")]
    final = [line for line in err if line.startswith("final run  ")]
    assert len(episode) == 2 and len(final) == 2, err
    assert ["phase 1/2" in final[0], "phase 2/2" in final[1]] == [True, True], final
    # the episode's lines give the whole run's ETA (the final run still to come), the final run's do not
    assert all("run ETA" in line for line in episode) and not any("run ETA" in line for line in final)
