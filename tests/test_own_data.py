"""Your own data (issue 30): a task from the user's files reads as its GLUE twin does, down to the
dev predictions; --augment rows reach the student and nothing else; bad files are one line."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import run
from kd_ref import distill
from kd_ref.plumbing import teacher_setup
from kd_ref.plumbing.errors import KdError
from tiny_task import log_lines as log, run_args as args, write_stsb, write_tiny_task

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"0": "neg", "1": "pos"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """GLUE SST-2 and STS-B folders made from the demo pairs, and the same rows as the user's files:
    SST-2 as CSV and as JSON Lines (columns renamed, labels 'neg'/'pos'), STS-B as JSON Lines."""
    d = tmp_path_factory.mktemp("own")
    write_tiny_task(d, n_train=240, n_dev=60, n_test=40, num_labels=3)
    write_stsb(d / "data")
    glue = d / "data" / "SST-2"
    glue.mkdir()
    for split in ("train", "dev", "test"):
        rows = [r.split("\t") for r in (d / "data" / "RTE" / f"{split}.tsv").read_text().splitlines()[1:]]
        sst2 = [(f"{r[1]} {r[2]}", "1" if split != "test" and r[3] == "entailment" else "0") for r in rows]
        labeled = split != "test"
        (glue / f"{split}.tsv").write_text("".join(
            [("sentence\tlabel\n" if labeled else "index\tsentence\n")] +
            [f"{s}\t{y}\n" if labeled else f"{i}\t{s}\n" for i, (s, y) in enumerate(sst2)]))
        with open(d / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["id", "review", "sentiment"])
            writer.writerows([i, s, NAMES[y] if labeled else ""] for i, (s, y) in enumerate(sst2))
        (d / f"{split}.jsonl").write_text("".join(json.dumps({"text": s, **({"y": NAMES[y]} if labeled else {})}) + "\n"
                                                  for s, y in sst2))
        stsb = [r.split("\t") for r in (d / "data" / "STS-B" / f"{split}.tsv").read_text().splitlines()[1:]]
        (d / f"stsb-{split}.jsonl").write_text("".join(json.dumps(
            {"a": r[7], "b": r[8], **({"score": float(r[9])} if labeled else {})}) + "\n" for r in stsb))
    return d


def predictions(path: Path) -> list[str]:
    return [line.split("\t")[1] for line in path.read_text().splitlines()[1:]]


def test_own_csv_and_json_lines_predict_as_glue_sst2(tiny, tmp_path):
    run.main(args(tiny, tmp_path / "glue", "--task", "sst2", "--method", "kd"))
    csv_files = ",".join(str(tiny / f"{s}.csv") for s in ("train", "dev", "test"))
    run.main(args(tiny, tmp_path / "csv", "--data", csv_files, "--text-columns", "review", "--label-column",
                  "sentiment", "--method", "kd", "--task", "reviews"))
    (tiny / "task.json").write_text(json.dumps({"name": "reviews", "train": "train.jsonl", "dev": "dev.jsonl",
                                                "test": "test.jsonl", "text_columns": "text", "label_column": "y"}))
    run.main(args(tiny, tmp_path / "jsonl", "--task", str(tiny / "task.json"), "--method", "kd"))
    glue = predictions(tmp_path / "glue" / "kd-s1" / "dev_predictions.tsv")
    assert len(glue) == 60
    for own in ("csv", "jsonl"):
        run_dir = tmp_path / own / "kd-s1"
        assert predictions(run_dir / "dev_predictions.tsv") == [NAMES[p] for p in glue], own
        assert log(run_dir) == log(tmp_path / "glue" / "kd-s1"), "every phase's losses and scores, to the bit"
        assert predictions(run_dir / "reviews.tsv") == [NAMES[p] for p in
                                                        predictions(tmp_path / "glue" / "kd-s1" / "SST-2.tsv")]
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["dev"] == json.loads((tmp_path / "glue" / "kd-s1" / "metrics.json").read_text())["dev"]
        assert json.loads((run_dir / "config.json").read_text())["labels"] == ["neg", "pos"]
        student = json.loads((run_dir / "student" / "config.json").read_text())
        assert student["id2label"] == {"0": "neg", "1": "pos"} and student["label2id"] == {"neg": 0, "pos": 1}
    recipe = json.loads((tmp_path / "jsonl" / "teacher" / "finetune.json").read_text())
    assert recipe["data"]["labels"] == ["neg", "pos"] and recipe["data"]["label_column"] == "y"


def test_own_json_lines_regression_predicts_as_glue_stsb(tiny, tmp_path):
    run.main(args(tiny, tmp_path / "glue", "--task", "stsb", "--method", "kd"))
    files = ",".join(str(tiny / f"stsb-{s}.jsonl") for s in ("train", "dev", "test"))
    run.main(args(tiny, tmp_path / "own", "--data", files, "--text-columns", "a,b", "--label-column", "score",
                  "--regression", "--metrics", "pearson,spearman", "--method", "kd"))
    glue, own = (predictions(tmp_path / d / "kd-s1" / "dev_predictions.tsv") for d in ("glue", "own"))
    assert own == glue and len(glue) == 60
    assert log(tmp_path / "own" / "kd-s1") == log(tmp_path / "glue" / "kd-s1")
    metrics = [json.loads((tmp_path / d / "kd-s1" / "metrics.json").read_text()) for d in ("glue", "own")]
    assert metrics[0]["dev"] == metrics[1]["dev"] and metrics[1]["main_metric"] == "pearson"


def swapped(line: str) -> str:
    """An RTE row with its two sentences swapped: other token ids than any original row."""
    i, a, b, y = line.split("\t")
    return "\t".join([i, b, a, y])


def test_augmented_rows_reach_the_student_and_nothing_else(tiny, tmp_path, monkeypatch, capsys):
    lines = (tiny / "data" / "RTE" / "train.tsv").read_text().splitlines()
    (tmp_path / "aug.tsv").write_text("\n".join([lines[0]] + [swapped(x) for x in lines[1:101]]) + "\n")
    seen = {"teacher": [], "student": [], "reward": [], "gold": []}
    finetune, train_student, evaluate_with_loss = teacher_setup.finetune, distill.train_student, run.evaluate_with_loss
    pairs = lambda encoded: [tuple(map(tuple, p)) for p in encoded.pairs]
    tokens = lambda b: [tuple(ids[m.bool()].tolist()) for ids, m in zip(b.input_ids[b.valid], b.attention_mask[b.valid])]

    def spy_teacher(model, train, **kw):
        seen["teacher"] += pairs(train)
        return finetune(model, train, **kw)

    def spy_student(model, selector, teacher_view, train, cfg, **kw):
        seen["student"].append(pairs(train))
        seen["gold"].append(dict(zip(pairs(train), train.gold)))
        seen["reward"] += [t for b in kw["reward_batches"] for t in tokens(b)]
        return train_student(model, selector, teacher_view, train, cfg, **kw)

    def spy_holdout(model, task, batches, labels):
        seen.setdefault("scored", []).append([t for b in batches for t in tokens(b)])
        return evaluate_with_loss(model, task, batches, labels)

    monkeypatch.setattr(teacher_setup, "finetune", spy_teacher)
    monkeypatch.setattr(distill, "train_student", spy_student)
    monkeypatch.setattr(run, "evaluate_with_loss", spy_holdout)
    run.main(args(tiny, tmp_path / "out", "--task", "rte", "--method", "ksm-soft", "--holdout", "0.25",
                  "--episode-fraction", "1", "--augment", str(tmp_path / "aug.tsv")))
    assert "cached logits and layers [0, 2, 4] for 280 rows" in capsys.readouterr().out  # 180 kept + 100 augmented
    from kd_ref.data.glue import get_task, read_file
    from kd_ref.data.splits import encode
    from kd_ref.data.tokenizer import BertTokenizer
    tok = BertTokenizer.from_dir(tiny / "teacher", max_len=32)
    rte = get_task("rte")
    original = set(pairs(encode(read_file(tiny / "data" / "RTE" / "train.tsv", rte, labeled=True, split="t"), rte, tok)))
    augmented = set(pairs(encode(read_file(tmp_path / "aug.tsv", rte, labeled=True, split="a"), rte, tok)))
    assert len(original) == 240 and len(augmented) == 100 and not original & augmented
    ids = lambda pair_set: {p[0] for p in pair_set}  # the batches' token ids, as the spies saw them
    assert set(seen["teacher"]) < original and len(seen["teacher"]) == 180
    episode, final = map(set, seen["student"])
    assert final == set(seen["teacher"]) | augmented
    reward = {p for p in seen["teacher"] if p[0] in set(seen["reward"])}  # original rows, kept out of the episodes
    assert len(reward) == len(set(seen["reward"])) > 0 and episode == final - reward
    assert len(seen["scored"]) == 1  # the --holdout rows, scored once, after training (dev goes through evaluate)
    held = seen["scored"][0]
    assert len(held) == 60 and set(held) <= ids(original) and not set(held) & ids(set(seen["teacher"]) | augmented)
    for gold in seen["gold"]:  # FinK: the original rows' labels only
        assert all(gold[p] == (p not in augmented) for p in gold)
    metrics = json.loads((tmp_path / "out" / "ksm-soft-s1" / "metrics.json").read_text())
    assert metrics["augment_rows"] == 100 and metrics["augment_fink"] is False


def test_augment_fink_trains_on_the_augmented_labels_too(tiny, tmp_path, monkeypatch):
    lines = (tiny / "data" / "RTE" / "train.tsv").read_text().splitlines()
    (tmp_path / "aug.tsv").write_text("\n".join([lines[0]] + [swapped(x) for x in lines[1:41]]) + "\n")
    gold, original = [], distill.train_student

    def spy(model, selector, teacher_view, train, cfg, **kw):
        gold.append(train.gold.copy())
        return original(model, selector, teacher_view, train, cfg, **kw)

    monkeypatch.setattr(distill, "train_student", spy)
    run.main(args(tiny, tmp_path / "out", "--task", "rte", "--method", "kd", "--augment", str(tmp_path / "aug.tsv"),
                  "--augment-fink"))
    assert len(gold) == 1 and len(gold[0]) == 280 and gold[0].all()


def test_fink_is_zero_on_rows_without_gold_and_counts_them_in_its_mean():
    import torch
    from kd_ref.fused import fused_kd_loss
    torch.manual_seed(0)
    b, length, width = 6, 5, 8
    logits_s, logits_t = torch.randn(b, 3), torch.randn(b, 3)
    labels, valid = torch.tensor([0, 1, 2, 0, 1, 2]), torch.ones(b, dtype=torch.bool)
    mask = torch.ones(b, length, dtype=torch.long)
    hs = [torch.randn(b, length, width) for _ in range(3)]
    call = lambda gold: fused_kd_loss(logits_s, logits_t, labels, valid, mask, hs, hs, torch.ones(4),
                                      torch.tensor(1.0), feak_mode="tokens", regression=False, gold=gold)[1]
    every, none = call(None), call(torch.zeros(b, dtype=torch.bool))
    half = call(torch.tensor([True, True, True, False, False, False]))
    assert none[0] == 0 and torch.equal(none[1:], every[1:])
    per_row = torch.nn.functional.cross_entropy(logits_s, labels, reduction="none")
    assert half[0] == pytest.approx(float(per_row[:3].sum() / 6))


def test_help_shows_the_flags():
    text = subprocess.run([sys.executable, str(ROOT / "run.py"), "--help"], capture_output=True, text=True).stdout
    for flag in ("--data", "--text-columns", "--label-column", "--labels", "--regression", "--metrics", "--augment",
                 "--augment-fink"):
        assert f"{flag} " in text or f"{flag}\n" in text, flag


# ---- bad input: one line naming the file and line, exit 2, nothing written -----------------------

GOOD_CSV = "review,sentiment\nfine film,pos\nawful film,neg\nnice,pos\n"
BAD = [
    # (file name, content of that file, the other files good, message)
    ("train.csv", "text,sentiment\nfine film,pos\nawful,neg\n", "train.csv:1: header lacks column 'review'"),
    ("dev.csv", GOOD_CSV + "so so,meh\n", "dev.csv:5: unknown own label 'meh'"),
    ("dev.csv", "", "dev.csv: file is empty"),
    ("train.csv", GOOD_CSV + "just text\n", "train.csv:5: expected 2 comma-separated columns, got 1"),
    ("train.csv", GOOD_CSV.encode() + b"caf\xe9,pos\n", "train.csv:5: not UTF-8"),
    ("train.jsonl", '{"review": "fine", "sentiment": 4.5}\n{"review": "bad", "sentiment": "high"}\n',
     "train.jsonl:2: own score 'high' is not a finite number"),
    ("dev.jsonl", '{"review": "fine", "sentiment": 4.5}\n{"sentiment": 1}\n', "dev.jsonl:2: no 'review'"),
    ("aug.csv", GOOD_CSV + "meh film,meh\n", "aug.csv:5: unknown own label 'meh'"),
    ("train.csv", GOOD_CSV + "no label,\n", "train.csv:5: no label (column 'sentiment' is empty)"),
]


@pytest.mark.parametrize("name, content, message", BAD, ids=[m.split(": ", 1)[1][:30] for *_, m in BAD])
def test_bad_own_files_are_one_line_and_nothing_is_written(tiny, tmp_path, name, content, message):
    data = tmp_path / "own"
    data.mkdir()
    ext = Path(name).suffix
    good = (GOOD_CSV if ext == ".csv" else '{"review": "fine", "sentiment": 4.5}\n{"review": "bad", "sentiment": 1}\n')
    for split in ("train", "dev", "aug"):
        (data / f"{split}{ext}").write_text(good)
    (data / name).write_bytes(content.encode() if isinstance(content, str) else content)
    flags = ["--data", f"{data / ('train' + ext)},{data / ('dev' + ext)}", "--text-columns", "review",
             "--label-column", "sentiment", "--augment", str(data / f"aug{ext}")] + (["--regression"] * (ext == ".jsonl"))
    with pytest.raises(KdError) as info:
        run.main(args(tiny, tmp_path / "out", *flags))
    assert f"{data}/{message}" in str(info.value) and "\n" not in str(info.value)
    left = {p.name for p in (tmp_path / "out").iterdir()} if (tmp_path / "out").exists() else set()
    assert left <= {".locks"}, left


def test_bad_own_file_through_the_command_line_exits_2(tiny, tmp_path):
    (tmp_path / "train.csv").write_text(GOOD_CSV)
    (tmp_path / "dev.csv").write_text(GOOD_CSV + "so so,meh\n")
    proc = subprocess.run([sys.executable, str(ROOT / "run.py"), "--data", "train.csv,dev.csv", "--text-columns",
                           "review", "--label-column", "sentiment", "--teacher", str(tiny / "teacher"),
                           "--out", "out"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr == f"error: dev.csv:5: unknown {tmp_path.name} label 'meh'; expected one of ('neg', 'pos')\n"
    assert not (tmp_path / "out" / "teacher").exists()


@pytest.mark.parametrize("spec, message", [
    ({"train": "t.csv", "dev": "d.csv", "text_columns": ["a"], "colour": 1}, "unknown key 'colour'"),
    ({"train": "t.csv", "text_columns": ["a"]}, "no 'dev'"),
    ({"train": "t.csv", "dev": "d.csv", "text_columns": ["a", "b", "c"]}, "text_columns ['a', 'b', 'c']: one or two"),
    ({"train": "t.csv", "dev": "d.csv", "text_columns": "a", "regression": True, "metrics": ["f1"]},
     "metrics f1: 'f1' is not a metric of regression"),
])
def test_bad_task_json_names_the_key(tmp_path, spec, message):
    from kd_ref.data.own import task_from_file
    (tmp_path / "task.json").write_text(json.dumps(spec))
    with pytest.raises(KdError) as info:
        task_from_file(tmp_path / "task.json")
    assert str(info.value).startswith(f"{tmp_path / 'task.json'}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_labels_found_in_train_are_sorted_by_value_or_given_in_order(tmp_path):
    from kd_ref.data.own import describe
    (tmp_path / "t.csv").write_text("x,y\na,10\nb,2\nc,-1\nd,2\n")
    task = lambda **kw: describe("n", {"train": str(tmp_path / "t.csv"), "dev": str(tmp_path / "t.csv")}, ["x"], "y",
                                 kw.get("labels"), False, kw.get("metrics"), where="--")
    assert task().labels == ("-1", "2", "10")
    assert task(labels=["10", "2", "-1"]).labels == ("10", "2", "-1")
    with pytest.raises(KdError, match="f1 is the binary F1 of the second label; n has 3 labels"):
        task(metrics=["f1"])
    (tmp_path / "t.csv").write_text("x,y\na,pos\nb,pos\n")
    with pytest.raises(KdError, match="t.csv: holds the one label 'pos'"):
        task()


def test_too_few_rows_for_a_reward_split_is_refused_before_any_work(tiny, tmp_path):
    (tmp_path / "t.csv").write_text(GOOD_CSV + "dull,neg\n")
    with pytest.raises(KdError, match=r"^--reward-fraction 0.05: holds out no row of the 4 training rows"):
        run.main(args(tiny, tmp_path / "out", "--data", f"{tmp_path / 't.csv'},{tmp_path / 't.csv'}",
                      "--text-columns", "review", "--label-column", "sentiment"))
    assert not (tmp_path / "out" / "teacher").exists()
