import numpy as np
import pytest
import scipy.stats
import sklearn.metrics

from kd_ref.data.glue import TASKS, get_task, read_split
from kd_ref.data.metrics import accuracy, chance_score, f1, matthews_corrcoef, pearson, spearman, task_metrics


@pytest.mark.parametrize("seed", range(20))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    labels = rng.integers(0, 2, n)
    # predictions agree with the labels a random fraction of the time, so scores cover [-1, 1]
    preds = np.where(rng.random(n) < rng.random(), labels, rng.integers(0, 2, n))
    assert accuracy(preds, labels) == pytest.approx(sklearn.metrics.accuracy_score(labels, preds), abs=1e-9)
    assert f1(preds, labels) == pytest.approx(sklearn.metrics.f1_score(labels, preds, zero_division=0), abs=1e-9)
    assert matthews_corrcoef(preds, labels) == pytest.approx(sklearn.metrics.matthews_corrcoef(labels, preds), abs=1e-9)
    three = rng.integers(0, 3, (2, n))  # MNLI-like multiclass
    assert matthews_corrcoef(*three) == pytest.approx(sklearn.metrics.matthews_corrcoef(three[1], three[0]), abs=1e-9)


@pytest.mark.parametrize("seed", range(20))
def test_correlations_equal_scipy(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 300))
    labels = rng.integers(0, 26, n) / 5.0  # STS-B-like scores 0.0, 0.2, ..., 5.0: many ties
    preds = labels + rng.normal(0, rng.uniform(0.1, 5), n)
    if seed % 2:
        preds = np.round(preds)  # ties in the predictions too
    assert pearson(preds, labels) == pytest.approx(scipy.stats.pearsonr(preds, labels)[0], abs=1e-9)
    assert spearman(preds, labels) == pytest.approx(scipy.stats.spearmanr(preds, labels)[0], abs=1e-9)


def test_spearman_with_heavy_ties():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 3, 1000), rng.integers(0, 4, 1000) + rng.integers(0, 3, 1000)
    assert spearman(a, b) == pytest.approx(scipy.stats.spearmanr(a, b)[0], abs=1e-9)
    assert spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [10, 1, 1, 0]) == pytest.approx(scipy.stats.spearmanr([1, 2, 3, 4], [10, 1, 1, 0])[0])


def test_degenerate_inputs():
    labels = np.array([0, 1, 1, 0, 1])
    constant = np.ones(5)
    assert matthews_corrcoef(constant, labels) == 0.0 == sklearn.metrics.matthews_corrcoef(labels, constant)
    assert matthews_corrcoef(labels, labels) == pytest.approx(1.0)
    assert matthews_corrcoef(1 - labels, labels) == pytest.approx(-1.0)
    assert f1(np.zeros(5), np.zeros(5)) == 0.0  # no positives anywhere
    assert f1(np.zeros(5), labels) == 0.0
    # constant input: scipy gives nan (with a warning), we give 0.0
    assert pearson(constant, labels) == 0.0 and spearman(constant, labels) == 0.0
    assert pearson(labels, constant) == 0.0 and spearman(labels, constant) == 0.0
    assert np.isnan(pearson([np.nan, 1, 2], [1, 2, 3])) and np.isnan(spearman([np.nan, 1, 2], [1, 2, 3]))
    assert accuracy([1], [1]) == 1.0
    with pytest.raises(ValueError, match="2 predictions, 3 labels"):
        accuracy([0, 1], [0, 1, 1])
    with pytest.raises(ValueError):
        pearson([], [])


def test_task_metrics_names_and_averages(glue_dir):
    rng = np.random.default_rng(0)
    expected_keys = {
        "cola": {"mcc"}, "sst2": {"accuracy"}, "mrpc": {"f1", "accuracy", "acc_and_f1"},
        "stsb": {"pearson", "spearman", "corr"}, "qqp": {"f1", "accuracy", "acc_and_f1"},
        "mnli": {"accuracy"}, "qnli": {"accuracy"}, "rte": {"accuracy"}, "wnli": {"accuracy"},
    }
    for name, task in TASKS.items():
        labels = rng.uniform(0, 5, 50) if task.is_regression else rng.integers(0, task.num_labels, 50)
        scores = task_metrics(task, labels, labels)  # perfect predictions
        assert set(scores) == expected_keys[name] and task.main_metric in scores
        assert all(v == pytest.approx(1.0) for v in scores.values())

    mrpc = np.array([e.label for e in read_split(glue_dir, get_task("mrpc"), "dev")])
    preds = np.where(rng.random(len(mrpc)) < 0.7, mrpc, 1 - mrpc)
    scores = task_metrics(get_task("mrpc"), preds, mrpc)
    assert scores["acc_and_f1"] == pytest.approx((sklearn.metrics.accuracy_score(mrpc, preds)
                                                  + sklearn.metrics.f1_score(mrpc, preds)) / 2, abs=1e-9)

    stsb = np.array([e.label for e in read_split(glue_dir, get_task("stsb"), "dev")])
    preds = stsb + rng.normal(0, 1, len(stsb))
    scores = task_metrics(get_task("stsb"), preds, stsb)
    assert scores["corr"] == pytest.approx((scipy.stats.pearsonr(preds, stsb)[0]
                                            + scipy.stats.spearmanr(preds, stsb)[0]) / 2, abs=1e-9)
    cola = np.array([e.label for e in read_split(glue_dir, get_task("cola"), "dev")])
    preds = np.where(rng.random(len(cola)) < 0.6, cola, 1 - cola)
    assert task_metrics(get_task("cola"), preds, cola)["mcc"] == pytest.approx(
        sklearn.metrics.matthews_corrcoef(cola, preds), abs=1e-9)


def test_chance_is_the_main_metric_of_always_answering_trains_most_common_class():
    mrpc, stsb = get_task("mrpc"), get_task("stsb")
    train, dev = np.array([1, 1, 0]), np.array([1, 0, 1, 1])
    assert chance_score(mrpc, train, dev) == pytest.approx(2 * 3 / (2 * 3 + 1))  # F1 of answering 1: 3 TP, 1 FP
    assert chance_score(mrpc, np.array([0, 0, 1]), dev) == 0.0  # answering 0: no true positive
    assert chance_score(stsb, np.array([1.0, 4.0]), np.array([0.5, 3.0, 5.0])) == 0.0  # a constant: no correlation
