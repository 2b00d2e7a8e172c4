"""The metrics registry: every target on the map is registered, in the map's direction; the
library implementations compute what their names say; ranking and printing follow the registry."""

from __future__ import annotations

import pytest
import torch

from deepscape import landscape, metrics


def test_every_target_metric_on_the_map_is_registered_in_its_direction():
    for lab in landscape.load().labs:
        info = metrics.get(lab.target.metric)  # raises for an unregistered name
        assert info.higher_is_better == (lab.target.op == ">="), lab.id


def test_the_issue_list_is_covered():
    wanted = ["accuracy", "top5_accuracy", "loss", "perplexity", "miou", "dice", "psnr_db",
              "ssim", "fid", "bleu", "cider", "recall_at_k", "exact_match"]  # fmt: skip
    assert set(wanted) <= set(metrics.registered())


def test_split_prefixes_name_the_same_metric():
    assert metrics.get("val_accuracy") is metrics.get("test_accuracy") is metrics.get("accuracy")
    assert metrics.base_name("val_loss") == "loss"
    assert metrics.base_name("val_unheard_of") == "val_unheard_of"
    with pytest.raises(metrics.UnknownMetric, match="did you mean 'accuracy'"):
        metrics.get("acuracy")


def test_direction_decides_better_best_and_order():
    assert metrics.better("val_accuracy", 0.9, 0.8) and not metrics.better("val_loss", 0.9, 0.8)
    records = [{"val_loss": 2.0}, {"val_loss": 1.0}, {"val_loss": 1.0}, {}]
    assert metrics.best(records, "val_loss") is records[1]  # the first of equals
    values = [0.5, None, 0.9, 0.7]
    assert sorted(values, key=metrics.sort_key("test_accuracy")) == [0.9, 0.7, 0.5, None]
    assert sorted(values, key=metrics.sort_key("test_loss")) == [0.5, 0.7, 0.9, None]


def test_values_print_in_the_metrics_format():
    assert metrics.show("test_accuracy", 0.98765) == "98.77%"
    assert metrics.show("psnr_db", 32.456) == "32.46 dB"
    assert metrics.show("something_else", 1 / 3) == "0.3333"
    assert metrics.show("val_loss", float("nan")) == "nan"


def test_the_implementations_compute_what_the_names_say():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]])
    targets = torch.tensor([0, 1, 0, 2])
    accuracy = metrics.get("accuracy").make(num_classes=3)
    accuracy.update(logits, targets)
    assert float(accuracy.compute()) == pytest.approx(0.5)

    tokens = torch.randn(2, 5, 7)
    next_tokens = torch.randint(0, 7, (2, 5))
    perplexity = metrics.get("perplexity").make()
    perplexity.update(tokens, next_tokens)
    loss = torch.nn.functional.cross_entropy(tokens.flatten(0, 1), next_tokens.flatten())
    assert float(perplexity.compute()) == pytest.approx(float(loss.exp()), rel=1e-5)

    mean = metrics.get("loss").make()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(3.0), 1)
    assert float(mean.compute()) == pytest.approx(1.5)


def test_a_lab_computed_metric_has_no_implementation_to_make():
    with pytest.raises(metrics.UnknownMetric, match="computed by its lab"):
        metrics.get("tool_gain").make()
