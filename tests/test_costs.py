"""deepscape.costs: parameters, FLOPs and latency of a model in hand."""

import time

import torch
from torch import nn

from deepscape.costs import (
    flops_by_module,
    forward_flops,
    interleaved_latency_ms,
    latency_ms,
    parameters,
)


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Flatten(), nn.Linear(8 * 32 * 32, 10)),
    )


def test_forward_flops_are_two_per_multiply_add():
    net, batch = small_net(), 2
    conv = batch * 8 * 32 * 32 * (3 * 3 * 3)  # outputs × multiply-adds each
    linear = batch * 8 * 32 * 32 * 10
    assert forward_flops(net, torch.randn(batch, 3, 32, 32)) == 2 * (conv + linear)


def test_flops_by_module_splits_the_total_at_each_depth():
    net, x = small_net(), torch.randn(1, 3, 32, 32)
    children = flops_by_module(net, x)
    assert set(children) == {"0", "2"}  # the ReLU does no matmul
    assert sum(children.values()) == forward_flops(net, x) == flops_by_module(net, x, depth=0)[""]
    assert flops_by_module(net, x, depth=2) == {"2.1": children["2"]}


def test_parameters_count_shared_tensors_once_and_can_skip_frozen_ones():
    net = small_net()
    tied = nn.ModuleList([net, net])
    assert parameters(tied) == parameters(net) == 8 * 27 + 8 + 8192 * 10 + 10
    net[0].requires_grad_(False)
    assert parameters(net, trainable_only=True) == 8192 * 10 + 10


def test_latency_is_measured_in_eval_mode_and_leaves_the_mode_as_it_was():
    net = nn.Sequential(nn.Linear(4, 4), nn.Dropout(1.0))
    net.train()
    ms = latency_ms(net, torch.randn(1, 4), runs=3)
    assert ms > 0 and net.training


def test_interleaved_latency_times_every_call_in_turns():
    order: list[str] = []

    def call(name: str, seconds: float):
        def timed() -> None:
            order.append(name)
            time.sleep(seconds)

        return timed

    medians = interleaved_latency_ms(
        {"slow": call("slow", 0.004), "fast": call("fast", 0.0)}, runs=6, rounds=3
    )
    assert medians["slow"] > 3.5 and medians["fast"] < 1.0
    # 3 rounds, each an untimed and 2 timed calls of one, then of the other
    assert order == (["slow"] * 3 + ["fast"] * 3) * 3
