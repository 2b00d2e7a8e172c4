"""models/gpt.py: attention written out equals the fused kernel, the KV cache changes no logit,
both styles train, and SmolLM2's GGUF weights give transformers' logits (slow)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deepscape.models.gpt import GPT, CausalSelfAttention, GPTConfig, KVCache


def tiny(style: str = "gpt2", **overrides) -> GPT:
    torch.manual_seed(0)
    config = dict(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32, style=style)
    if style == "llama":
        config |= dict(n_kv_head=2, bias=False, rope_theta=100.0)
    return GPT(GPTConfig(**config | overrides)).eval()


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_written_attention_equals_scaled_dot_product_attention(causal, n_kv_head):
    torch.manual_seed(0)
    kwargs = dict(n_embd=32, n_head=4, n_kv_head=n_kv_head, causal=causal)
    fused = CausalSelfAttention(**kwargs, attention="sdpa")
    written = CausalSelfAttention(**kwargs, attention="written")
    written.load_state_dict(fused.state_dict())
    x = torch.randn(3, 7, 32)
    assert torch.allclose(written(x), fused(x), atol=1e-5)
    if causal:  # the last token does not change what the others see
        changed = torch.cat([x[:, :-1], torch.randn(3, 1, 32)], dim=1)
        assert torch.allclose(fused(changed)[:, :-1], fused(x)[:, :-1], atol=1e-6)
    else:
        assert not torch.allclose(fused(x[:, :-1]), fused(x)[:, :-1], atol=1e-3)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
@pytest.mark.parametrize("attention", ["sdpa", "written"])
def test_the_kv_cache_gives_the_logits_of_a_full_forward(style, attention):
    model, idx = tiny(style, attention=attention), torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        full, _ = model(idx)
        cache = model.new_cache(12)
        pieces = [model(idx[:, :5], cache=cache)[0]]  # a prompt, then a chunk, then one by one
        pieces.append(model(idx[:, 5:8], cache=cache)[0])
        pieces += [model(idx[:, i : i + 1], cache=cache)[0] for i in range(8, 12)]
    assert cache.length == 12
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_the_kv_cache_knows_its_size_and_copies_rows():
    model, idx = tiny("llama"), torch.randint(0, 50, (2, 4))
    cache = model.new_cache(5)
    with torch.no_grad():
        model(idx, cache=cache)
        swapped = cache.select(torch.tensor([1, 0]))
        model(idx[:, :1], cache=cache)  # appending to the original leaves the copy alone
        with pytest.raises(ValueError, match="holds 5 positions"):
            model(idx[:, :2], cache=cache)
    assert isinstance(swapped, KVCache) and swapped.length == 4
    assert torch.equal(swapped.keys[0][0, :, :4], cache.keys[0][1, :, :4])
    with pytest.raises(ValueError, match="block_size is 32"):
        model(torch.zeros(1, 33, dtype=torch.long))


def test_logits_at_chosen_positions_are_those_of_every_position():
    model, idx = tiny("llama"), torch.randint(0, 50, (2, 6))
    at = torch.tensor([[5, 0], [2, 3]])
    with torch.no_grad():
        full, chosen = model(idx)[0], model(idx, logits_at=at)[0]
    assert chosen.shape == (2, 2, 50)
    assert torch.allclose(chosen, torch.stack([full[0, [5, 0]], full[1, [2, 3]]]), atol=1e-6)


def test_the_loss_is_cross_entropy_over_every_kept_position():
    model, idx = tiny(), torch.randint(0, 50, (2, 6))
    targets = torch.randint(0, 50, (2, 6))
    targets[0, :3] = -100
    logits, loss = model(idx, targets)
    kept = targets != -100
    assert logits.shape == (2, 6, 50) and model(idx)[1] is None
    assert torch.allclose(loss, F.cross_entropy(logits[kept], targets[kept]), atol=1e-6)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_both_styles_learn_to_repeat_a_sequence(style):
    model = tiny(style).train()
    idx = torch.randint(0, 50, (1, 16))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        _, loss = model(idx[:, :-1], idx[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


def test_attention_maps_are_each_heads_causal_softmax():
    model, idx = tiny(), torch.randint(0, 50, (9,))
    maps = model.attention_maps(idx)
    assert maps.shape == (2, 4, 9, 9)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 4, 9), atol=1e-6)
    assert maps.triu(diagonal=1).abs().max() == 0  # nobody looks ahead
    # layer 0 by hand: queries and keys of the normed embeddings
    with torch.no_grad():
        x = model.blocks[0].ln_1(model.wte(idx) + model.wpe(torch.arange(9)))
        q, k, _ = model.blocks[0].attn.c_attn(x).split(32, dim=-1)
        q, k = q.view(9, 4, 8).transpose(0, 1), k.view(9, 4, 8).transpose(0, 1)
        scores = (q @ k.transpose(1, 2) / 8**0.5).masked_fill(torch.ones(9, 9).triu(1) > 0, -1e9)
    assert torch.allclose(maps[0], scores.softmax(-1), atol=1e-6)


def test_column_major_weights_change_no_output():
    model, idx = tiny("llama"), torch.randint(0, 50, (2, 7))
    with torch.no_grad():
        before = model(idx)[0]
        model.column_major_()
        after = model(idx)[0]
    assert torch.allclose(after, before, atol=1e-6)
    assert model.lm_head.weight is model.wte.weight and model.lm_head.weight.shape == (50, 32)
    assert not model.blocks[0].mlp.c_fc.weight.is_contiguous()


def test_config_and_parameter_counts():
    with pytest.raises(ValueError, match="n_kv_head"):
        GPTConfig(n_embd=32, n_head=4, n_kv_head=3)
    config = GPTConfig(n_head=4, n_embd=32)
    assert config.n_kv_head == 4 and config.intermediate_size == 128
    model = tiny()
    tables = 50 * 32 + 32 * 32  # tokens (shared with the output layer) and positions
    per_block = 2 * 2 * 32 + (32 * 96 + 96) + (32 * 32 + 32) + (32 * 128 + 128) + (128 * 32 + 32)
    assert model.num_parameters() == tables + 2 * per_block + 2 * 32
    assert model.num_parameters(embeddings=False) == model.num_parameters() - 32 * 32


# -- SmolLM2-135M from its GGUF file --------------------------------------------------------------
@pytest.mark.slow  # the smollm fixture reads the GGUF file twice: ~30 s, once a session
def test_smollm2_from_gguf_gives_transformers_logits(smollm):
    ours, theirs, tokenizer = smollm
    assert ours.config.n_layer == 30 and ours.config.n_kv_head == 3
    assert ours.num_parameters() == theirs.num_parameters()
    text = ["The printing press was invented by Gutenberg", "Paris is the capital of France, and"]
    encoded = [tokenizer.encode(t) for t in text]
    ids = torch.tensor([e[: min(map(len, encoded))] for e in encoded])
    with torch.inference_mode():
        difference = (ours(ids)[0] - theirs(input_ids=ids).logits).abs().max().item()
    assert difference <= 1e-3, difference
