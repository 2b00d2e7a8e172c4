"""The metrics registry: every number a run reports, by name, with what makes it better.

    register("accuracy", higher_is_better=True, format="{:.2%}", make=MulticlassAccuracy…)

A metric's record says which way is better (the best epoch, `compare`'s order, sweeps and the map's
progress all ask `better`), how to print it, and — where a well-kept library computes it — how to
make the streaming implementation (a torchmetrics `Metric`, updated batch by batch, so that an
evaluation never holds a split's outputs). A run records a metric under its split's prefix:
`val_accuracy` and `test_accuracy` are both `accuracy`. Numbers a lab computes itself (a gain over
a baseline, a latency) are registered too, without an implementation: their direction and format
still matter to everything that ranks or prints them.

Library classes are imported when a metric is made, not when this module is: the CLI reads the
registry to print and rank, and must not pay for torch on the way.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SPLITS = ("train_", "val_", "test_", "best_")


class UnknownMetric(LookupError):
    """A metric name the registry does not know."""


@dataclass(frozen=True)
class MetricInfo:
    name: str
    higher_is_better: bool
    format: str  # a str.format pattern for one value
    description: str
    implementation: str = ""  # "module:Class" of the library that computes it ("" = the lab does)
    options: tuple[tuple[str, Any], ...] = ()  # keyword arguments the implementation always takes

    def make(self, **options: Any) -> Any:
        """A fresh streaming implementation (a torchmetrics Metric), with `options` added."""
        if not self.implementation:
            raise UnknownMetric(f"metric '{self.name}' is computed by its lab, not by the registry")
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)(**dict(self.options), **options)

    def show(self, value: float) -> str:
        return self.format.format(value) if math.isfinite(value) else str(value)


_REGISTRY: dict[str, MetricInfo] = {}


def register(
    name: str,
    *,
    higher_is_better: bool,
    format: str,
    description: str,
    implementation: str = "",
    **options: Any,
) -> MetricInfo:
    info = MetricInfo(
        name, higher_is_better, format, description, implementation, tuple(options.items())
    )
    _REGISTRY[name] = info
    return info


def base_name(name: str) -> str:
    """`val_accuracy` → `accuracy`: the metric, without the split it was measured on."""
    for prefix in SPLITS:
        if name.startswith(prefix) and name.removeprefix(prefix) in _REGISTRY:
            return name.removeprefix(prefix)
    return name


def get(name: str) -> MetricInfo:
    """The registry's record of `name` (split prefixes allowed)."""
    try:
        return _REGISTRY[base_name(name)]
    except KeyError:
        from deepscape.config import closest

        hint = closest(name, _REGISTRY)
        raise UnknownMetric(f"no metric '{name}' in the registry{hint}") from None


def registered() -> dict[str, MetricInfo]:
    return dict(_REGISTRY)


def is_registered(name: str) -> bool:
    return base_name(name) in _REGISTRY


def better(name: str, a: float, b: float) -> bool:
    """Whether value `a` of metric `name` is strictly better than `b`."""
    return a > b if get(name).higher_is_better else a < b


def best(records: Iterable[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The record with the best value of `name` (the first of equals); None when none has it."""
    chosen = None
    for record in records:
        value = record.get(name)
        if value is not None and (chosen is None or better(name, value, chosen[name])):
            chosen = record
    return chosen


def sort_key(name: str) -> Callable[[float | None], float]:
    """A key that sorts values of `name` best first, missing values last."""
    sign = -1.0 if get(name).higher_is_better else 1.0
    return lambda value: math.inf if value is None else sign * value


def show(name: str, value: Any) -> str:
    """`value` as people read metric `name` (a number the registry does not know: 4 digits)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return str(value)
    return get(name).show(value) if is_registered(name) else f"{value:.4g}"


# -- what the labs measure ------------------------------------------------------------------------
_TM = "torchmetrics"
# classification
register(
    "accuracy",
    higher_is_better=True,
    format="{:.2%}",
    description="share of correct predictions",
    implementation=f"{_TM}.classification:MulticlassAccuracy",
    average="micro",
)
register(
    "top5_accuracy",
    higher_is_better=True,
    format="{:.2%}",
    description="share whose true class is among the 5 highest scores",
    implementation=f"{_TM}.classification:MulticlassAccuracy",
    average="micro",
    top_k=5,
)
register(
    "top1_accuracy",
    higher_is_better=True,
    format="{:.2%}",
    description="share whose highest score is the true class (ImageNet's name for accuracy)",
    implementation=f"{_TM}.classification:MulticlassAccuracy",
    average="micro",
)
# every loss is a mean over examples (or tokens)
register(
    "loss",
    higher_is_better=False,
    format="{:.4f}",
    description="mean training objective",
    implementation=f"{_TM}:MeanMetric",
)
register(
    "perplexity",
    higher_is_better=False,
    format="{:.2f}",
    description="exp(mean cross-entropy per token): the effective number of choices",
    implementation=f"{_TM}.text:Perplexity",
    ignore_index=-100,
)
# dense prediction and images
register(
    "miou",
    higher_is_better=True,
    format="{:.2%}",
    description="intersection over union, averaged over classes",
    implementation=f"{_TM}.classification:MulticlassJaccardIndex",
    average="macro",
)
register(
    "pixel_accuracy",
    higher_is_better=True,
    format="{:.2%}",
    description="share of pixels given their true class",
    implementation=f"{_TM}.classification:MulticlassAccuracy",
    average="micro",
)
register(
    "dice",
    higher_is_better=True,
    format="{:.2%}",
    description="Dice overlap (F1 per pixel)",
    implementation=f"{_TM}.segmentation:DiceScore",
    average="macro",
)
register(
    "psnr_db",
    higher_is_better=True,
    format="{:.2f} dB",
    description="peak signal-to-noise ratio of reconstructed images",
    implementation=f"{_TM}.image:PeakSignalNoiseRatio",
    data_range=1.0,
)
register(
    "ssim",
    higher_is_better=True,
    format="{:.4f}",
    description="structural similarity",
    implementation=f"{_TM}.image:StructuralSimilarityIndexMeasure",
    data_range=1.0,
)
register(
    "fid",
    higher_is_better=False,
    format="{:.1f}",
    description="Fréchet distance between real and generated images' features (Inception's, "
    "or a given network's)",
    implementation=f"{_TM}.image.fid:FrechetInceptionDistance",
)
# text out, retrieval
register(
    "bleu",
    higher_is_better=True,
    format="{:.4f}",
    description="BLEU-4 n-gram precision",
    implementation=f"{_TM}.text:BLEUScore",
)
register(
    "cider",
    higher_is_better=True,
    format="{:.3f}",
    description="CIDEr consensus with the reference captions (pycocoevalcap)",
)
register(
    "recall_at_k",
    higher_is_better=True,
    format="{:.2%}",
    description="share of queries whose answer is among the top k retrieved",
    implementation=f"{_TM}.retrieval:RetrievalRecall",
)
register(
    "ndcg_at_10",
    higher_is_better=True,
    format="{:.4f}",
    description="normalised discounted cumulative gain of the top 10",
    implementation=f"{_TM}.retrieval:RetrievalNormalizedDCG",
    top_k=10,
)
register(
    "exact_match",
    higher_is_better=True,
    format="{:.2%}",
    description="share of answers equal to the reference after normalisation",
    implementation=f"{_TM}.text:SQuAD",
)

# numbers a lab computes from its own runs
for _name, _higher, _format, _description in [
    ("tuned_beats_default", True, "{}", "the tuned setting beats the default on test (1 = yes)"),
    ("finetune_gain_at_1000", True, "{:+.2%}", "fine-tuning's accuracy gain at 1,000 labels"),
    ("lora_gap_to_full_finetune", False, "{:+.2%}", "full fine-tuning's accuracy above LoRA's"),
    ("trainable_share", False, "{:.2%}", "share of the model's parameters that training moves"),
    ("pretrained_gain_at_200", True, "{:+.2%}", "the pretrained model's gain at 200 labels"),
    ("gap_to_published_accuracy", False, "{:.2%}", "accuracy below the published figure"),
    ("overfit_gap_closed", True, "{:.2%}", "share of the train/validation gap closed"),
    ("random_label_test_accuracy", False, "{:.2%}", "test accuracy after training on noise"),
    ("random_model_map_similarity", False, "{:.3f}", "saliency similarity to a random model"),
    ("api_latency_p50_ms", False, "{:.1f} ms", "median latency of one prediction"),
    ("wordsim353_gap_to_gensim", False, "{:+.3f}", "WordSim-353 correlation below gensim's"),
    ("test_accuracy_drop", False, "{:.2%}", "test accuracy lost under a change"),
    # the lesson is the failure: a model that generalised would be the surprise
    ("long_parity_accuracy", False, "{:.2%}", "accuracy on parity strings longer than trained on"),
    ("reverse_accuracy", False, "{:.2%}", "facts 'A is B', trained one way, recalled as 'B is A'"),
    ("loss_prediction_error", False, "{:.2%}", "error of a scaling law's predicted loss"),
    ("mean_relative_score", True, "{:.2%}", "mean score relative to a reference"),
    ("hallucination_rate_ratio", False, "{:.2f}", "hallucination rate relative to a baseline"),
    ("cost_ratio_to_large_model", False, "{:.2f}", "cost relative to the large model"),
    ("mean_return", True, "{:.1f}", "mean return of the final evaluation's episodes"),
    # agents (language/301/agents): held-out tasks solved, steps, and how episodes failed
    ("alone_success", True, "{:.2%}", "share of held-out tasks solved by the model alone"),
    ("prompted_success", True, "{:.2%}", "share of held-out tasks solved by the prompted agent"),
    ("lora_success", True, "{:.2%}", "share of held-out tasks solved by the LoRA agent"),
    ("prompted_steps", False, "{:.2f}", "mean actions per episode of the prompted agent"),
    ("lora_steps", False, "{:.2f}", "mean actions per episode of the LoRA agent"),
    (
        "lora_over_alone",
        True,
        "{:.2f}×",
        "tasks solved by the LoRA agent ÷ by the model alone (the latter taken as at least 1)",
    ),
    ("prompted_format_errors", False, "{:.2%}", "prompted: first failed by a format error"),
    ("prompted_wrong_tools", False, "{:.2%}", "prompted: episodes first failed by a wrong tool"),
    ("prompted_wrong_arguments", False, "{:.2%}", "prompted: first failed by a wrong argument"),
    ("prompted_loops", False, "{:.2%}", "prompted: episodes first failed by a loop"),
    ("lora_format_errors", False, "{:.2%}", "lora: episodes first failed by a format error"),
    ("lora_wrong_tools", False, "{:.2%}", "lora: episodes first failed by a wrong tool"),
    ("lora_wrong_arguments", False, "{:.2%}", "lora: episodes first failed by a wrong argument"),
    ("lora_loops", False, "{:.2%}", "lora: episodes first failed by a loop"),
    ("rl_test_accuracy_gain", True, "{:+.2%}", "test accuracy gained by reinforcement learning"),
    # multi-LLM systems (language/301/multi-llm): each method's accuracy, cost and gain
    ("generalist_accuracy", True, "{:.2%}", "generalist: share of test questions answered right"),
    ("generalist_tokens", False, "{:.1f}", "generalist: tokens read and generated per question"),
    ("generalist_seconds", False, "{:.3f} s", "generalist: seconds per question"),
    ("routed_accuracy", True, "{:.2%}", "routed: share of test questions answered right"),
    ("routed_tokens", False, "{:.1f}", "routed: tokens read and generated per question"),
    ("routed_seconds", False, "{:.3f} s", "routed: seconds per question"),
    ("vote_accuracy", True, "{:.2%}", "vote: share of test questions answered right"),
    ("vote_tokens", False, "{:.1f}", "vote: tokens read and generated per question"),
    ("vote_seconds", False, "{:.3f} s", "vote: seconds per question"),
    ("judge_accuracy", True, "{:.2%}", "judge: share of test questions answered right"),
    ("judge_tokens", False, "{:.1f}", "judge: tokens read and generated per question"),
    ("judge_seconds", False, "{:.3f} s", "judge: seconds per question"),
    ("rerank_accuracy", True, "{:.2%}", "rerank: share of test questions answered right"),
    ("rerank_tokens", False, "{:.1f}", "rerank: tokens read and generated per question"),
    ("rerank_seconds", False, "{:.3f} s", "rerank: seconds per question"),
    ("vote_gain", True, "{:+.2%}", "accuracy a majority vote over samples adds to greedy decoding"),
    ("routed_gain", True, "{:+.2%}", "accuracy routing to specialists adds to the generalist"),
    ("judge_gain", True, "{:+.2%}", "accuracy an LLM judge picking a sample adds to greedy"),
    ("rerank_gain", True, "{:+.2%}", "accuracy a likelihood reranker adds to greedy decoding"),
    ("router_accuracy", True, "{:.2%}", "questions the router sends to their own specialist"),
    ("oracle_routing_accuracy", True, "{:.2%}", "accuracy with every question routed right"),
    (
        "oracle_pick_gain",
        True,
        "{:+.2%}",
        "accuracy a perfect verifier choosing among the samples would add to greedy decoding",
    ),
    ("tool_gain", True, "{:+.2%}", "accuracy gained by giving the model tools"),
    ("memory_prediction_error", False, "{:.1%}", "worst error of predicted vs measured memory"),
    ("hand_backward_weight_difference", False, "{:.1e}", "largest weight difference from autograd"),
    ("model_flops_utilisation", True, "{:.1%}", "a model's FLOP/s as a share of the matmul peak"),
    ("psnr_gain_db", True, "{:+.2f} dB", "PSNR above bicubic upsampling's on the same images"),
    ("class_accuracy", True, "{:.2%}", "share of generated images judged the class asked for"),
    ("papers_with_your_number", True, "{}", "essential papers your runs put a number beside"),
    # retrieval and reading (language/201/augmented-search; torchmetrics' retrieval metrics and
    # SQuAD's answer scores, computed on whole rankings and answer lists by the lab)
    ("recall_at_1", True, "{:.2%}", "share of queries with an answering passage ranked first"),
    ("recall_at_5", True, "{:.2%}", "share of queries with an answering passage in the top 5"),
    ("dense_recall_at_5", True, "{:.2%}", "recall@5 of dense retrieval (a sentence encoder)"),
    ("mrr", True, "{:.4f}", "mean reciprocal rank of the first answering passage"),
    ("f1", True, "{:.2%}", "SQuAD F1: word overlap of answer and reference"),
    ("citation_precision", True, "{:.2%}", "share of citations whose passage holds the answer"),
    ("open_book_gain", True, "{:+.2%}", "exact match with passages above exact match without"),
    ("hybrid_gain_over_dense", True, "{:+.2%}", "hybrid recall@5 above dense recall@5"),
    ("retrieval_ms", False, "{:.1f} ms", "median time to search for one question"),
    # captions (pycocoevalcap computes them; vision/201/image-to-text)
    ("bleu_1", True, "{:.4f}", "BLEU-1: unigram precision of captions (pycocoevalcap)"),
    ("bleu_2", True, "{:.4f}", "BLEU-2: up to bigrams (pycocoevalcap)"),
    ("bleu_3", True, "{:.4f}", "BLEU-3: up to trigrams (pycocoevalcap)"),
    ("bleu_4", True, "{:.4f}", "BLEU-4: up to 4-grams, the papers' BLEU (pycocoevalcap)"),
    ("meteor", True, "{:.4f}", "METEOR: unigram matches with stems and synonyms (Java)"),
    ("rouge_l", True, "{:.4f}", "ROUGE-L: longest common subsequence F-score"),
    ("cider_over_nearest", True, "{:.2f}×", "CIDEr over nearest-neighbour retrieval's, same test"),
    ("grounding", True, "{:.2%}", "captions naming a scene's two items and how they lie"),
    ("exact_grounding", True, "{:.2%}", "captions saying all a scene holds, sizes too"),
]:
    register(_name, higher_is_better=_higher, format=_format, description=_description)

# hallucinations (language/301/hallucinations): each system's three numbers on held-out questions
for _system in ("plain", "abstain", "grounded", "grounded_abstain", "self_consistency",
                "citations", "combined"):  # fmt: skip
    register(f"{_system}_hallucination_rate", higher_is_better=False, format="{:.2%}",
             description=f"{_system}: share of unanswerable questions answered")  # fmt: skip
    register(f"{_system}_coverage", higher_is_better=True, format="{:.2%}",
             description=f"{_system}: share of answerable questions answered")  # fmt: skip
    register(f"{_system}_accuracy", higher_is_better=True, format="{:.2%}",
             description=f"{_system}: right, of the answerable questions answered")  # fmt: skip
