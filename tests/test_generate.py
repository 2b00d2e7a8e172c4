"""generate.py: the sampling filters equal transformers' warpers, generation with the KV cache
equals a loop of full forward passes, beam search finds the likeliest sequence, log-probabilities
add up, and the same functions drive a transformers model (SmolLM2 greedy: slow)."""

from __future__ import annotations

import itertools

import pytest
import torch

from deepscape.generate import (
    as_lm,
    beam_search,
    continuation_logprob,
    continuation_logprobs,
    generate,
    next_token,
    prefix_cache,
    top_k_filter,
    top_p_filter,
)
from deepscape.models.gpt import GPT, GPTConfig


def tiny(vocab_size: int = 50, style: str = "llama") -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=vocab_size,
        block_size=32,
        n_layer=2,
        n_head=4,
        n_kv_head=2,
        n_embd=32,
        style=style,
        bias=False,
    )
    model = GPT(config).eval()
    with torch.no_grad():  # sharper than at initialisation: likelier tokens stand out
        model.lm_head.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def tiny_llama():
    """A random transformers Llama (RoPE, GQA, SwiGLU, RMSNorm), and our GPT with its weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=500.0,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
    )
    theirs = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # sharper than at initialisation, so that greedy choices are clear-cut
        theirs.lm_head.weight.mul_(20)  # (tied: the token embeddings too)
    ours = GPT(
        GPTConfig(
            vocab_size=64,
            block_size=64,
            n_layer=2,
            n_head=4,
            n_kv_head=2,
            n_embd=32,
            intermediate_size=48,
            style="llama",
            bias=False,
            rope_theta=500.0,
        )
    ).eval()
    w = {k: v for k, v in theirs.state_dict().items()}
    state = {"wte.weight": w["model.embed_tokens.weight"], "ln_f.weight": w["model.norm.weight"]}
    state["lm_head.weight"] = state["wte.weight"]
    for i in range(2):
        layer = lambda name, i=i: w[f"model.layers.{i}.{name}.weight"]  # noqa: E731
        state |= {
            f"blocks.{i}.ln_1.weight": layer("input_layernorm"),
            f"blocks.{i}.ln_2.weight": layer("post_attention_layernorm"),
            f"blocks.{i}.attn.c_attn.weight": torch.cat(
                [layer(f"self_attn.{x}_proj") for x in "qkv"]
            ),
            f"blocks.{i}.attn.c_proj.weight": layer("self_attn.o_proj"),
            f"blocks.{i}.mlp.c_fc.weight": torch.cat(
                [layer("mlp.gate_proj"), layer("mlp.up_proj")]
            ),
            f"blocks.{i}.mlp.c_proj.weight": layer("mlp.down_proj"),
        }
    ours.load_state_dict(state)
    return ours, theirs


# -- the sampling filters -------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 5, 40, 1000])
def test_top_k_filter_equals_transformers(k):
    from transformers import TopKLogitsWarper

    logits = torch.randn(4, 100, generator=torch.Generator().manual_seed(k))
    ours = top_k_filter(logits, k)
    assert torch.equal(ours, TopKLogitsWarper(k)(None, logits))
    assert (ours > float("-inf")).sum(-1).tolist() == [min(k, 100)] * 4


@pytest.mark.parametrize("p", [0.01, 0.3, 0.9, 0.999])
def test_top_p_filter_equals_transformers(p):
    from transformers import TopPLogitsWarper

    logits = 3 * torch.randn(4, 100, generator=torch.Generator().manual_seed(int(p * 1000)))
    ours = top_p_filter(logits, p)
    assert torch.equal(ours, TopPLogitsWarper(p)(None, logits))
    kept = (ours > float("-inf")).sum(-1)
    assert kept.min() >= 1 and (kept.max() < 100 if p < 0.9 else True)


def test_sampling_draws_only_what_the_filters_keep_and_follows_the_seed():
    logits = torch.randn(1, 30, generator=torch.Generator().manual_seed(0))
    allowed = set(logits[0].topk(3).indices.tolist())
    g = torch.Generator().manual_seed(1)
    draws = [int(next_token(logits, top_k=3, temperature=2.0, generator=g)) for _ in range(200)]
    assert set(draws) == allowed  # all three drawn, nothing else
    again = torch.Generator().manual_seed(1)
    assert draws[:20] == [
        int(next_token(logits, top_k=3, temperature=2.0, generator=again)) for _ in range(20)
    ]
    assert int(next_token(logits, greedy=True)) == int(logits.argmax())
    assert int(next_token(logits, temperature=0)) == int(logits.argmax())


# -- generation -----------------------------------------------------------------------------------
def greedy_without_cache(model: GPT, ids: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        with torch.no_grad():
            ids = torch.cat([ids, model(ids)[0][:, -1:].argmax(-1)], dim=1)
    return ids


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_greedy_generation_with_the_cache_equals_full_forward_passes(style):
    model, ids = tiny(style=style), torch.randint(0, 50, (3, 5))
    new = generate(model, ids, max_new_tokens=8, greedy=True)
    assert torch.equal(new, greedy_without_cache(model, ids, 8)[:, 5:])
    assert torch.equal(generate(model, ids[0].tolist(), max_new_tokens=8, greedy=True), new[:1])


def test_generation_stops_at_a_stop_token_and_ended_rows_repeat_it():
    model, ids = tiny(), torch.randint(0, 50, (3, 5))
    free = generate(model, ids, max_new_tokens=8, greedy=True)
    stop = int(free[0, 2])  # row 0 says it third
    new = generate(model, ids, max_new_tokens=8, greedy=True, stop_tokens=[stop])
    first = [row.tolist().index(stop) if stop in row else None for row in free]
    if all(f is not None for f in first):  # every row stops: as soon as the last one does
        assert new.shape[1] == max(first) + 1
    for row, f in enumerate(first):
        end = 8 if f is None else f + 1
        assert new[row, :end].tolist() == free[row, :end].tolist()
        assert (new[row, end:] == stop).all()
    assert new[0, :3].tolist() == free[0, :3].tolist() and new[0, 2] == stop


def test_beam_search_with_one_beam_is_greedy():
    model, ids = tiny(), torch.randint(0, 50, (1, 5))
    greedy = generate(model, ids, max_new_tokens=8, greedy=True)
    assert torch.equal(beam_search(model, ids, beams=1, max_new_tokens=8), greedy)
    stop = int(greedy[0, 3])
    stopped = beam_search(model, ids, beams=1, max_new_tokens=8, stop_tokens=[stop])
    assert torch.equal(stopped, greedy[:, : greedy[0].tolist().index(stop) + 1])


class Bigram:
    """A `CausalLM` whose next token hangs on the last one only: logits = table[last token]."""

    def __init__(self, probabilities: list[list[float]]):
        self.table = torch.tensor(probabilities).log()

    def __call__(self, ids: torch.Tensor, cache, at: torch.Tensor | None = None) -> torch.Tensor:
        cache.length += ids.shape[1]
        logits = self.table[ids]
        return logits if at is None else logits.take_along_dim(at.unsqueeze(-1), dim=1)

    def new_cache(self, max_length: int):
        return Positions()


class Positions:
    length = 0

    def select(self, rows: torch.Tensor) -> Positions:
        return self


def test_beam_search_finds_the_likely_path_that_greedy_misses():
    # from 0, token 1 is likelier than 2, but after 1 every token is near a toss-up, while 2 leads
    # to a near-certain 3: greedy takes 1, two beams take 2 3 3
    lm = Bigram(
        [
            [0.01, 0.59, 0.39, 0.01],
            [0.26, 0.25, 0.25, 0.24],
            [0.01, 0.01, 0.01, 0.97],
            [0.01, 0.01, 0.01, 0.97],
        ]
    )
    every = [list(c) for c in itertools.product(range(4), repeat=3)]
    best = every[int(continuation_logprobs(lm, [[0]], every)[0].argmax())]
    assert best == [2, 3, 3]
    assert generate(lm, [0], max_new_tokens=3, greedy=True)[0].tolist() == [1, 0, 1]
    assert beam_search(lm, [0], beams=1, max_new_tokens=3)[0].tolist() == [1, 0, 1]
    assert beam_search(lm, [0], beams=2, max_new_tokens=3)[0].tolist() == best
    # 3 as a stop token: 2 3 ends first and is likelier than anything after 1
    assert beam_search(lm, [0], beams=2, max_new_tokens=3, stop_tokens=[3])[0].tolist() == [2, 3]


def test_an_unlikely_end_below_the_beams_does_not_stop_beam_search():
    # 2 is the stop token. Ending at once (0.09) and after 1 (0.07) rank third among the
    # extensions, below the two beams kept: counted as ended, they stopped the search after two
    # steps with 3 2, a half-written sentence beside 1 3 2 (0.50)
    lm = Bigram(
        [
            [0.01, 0.7, 0.09, 0.2],
            [0.01, 0.09, 0.1, 0.8],
            [0.25, 0.25, 0.25, 0.25],
            [0.01, 0.04, 0.9, 0.05],
        ]
    )
    assert beam_search(lm, [0], beams=2, max_new_tokens=4, stop_tokens=[2])[0].tolist() == [1, 3, 2]


# -- scoring --------------------------------------------------------------------------------------
def full_forward_logprob(model: GPT, prompt: list[int], continuation: list[int]) -> float:
    with torch.no_grad():
        logprobs = model(torch.tensor([prompt + continuation]))[0][0].log_softmax(-1)
    return sum(float(logprobs[len(prompt) - 1 + i, t]) for i, t in enumerate(continuation))


def test_continuation_logprob_sums_the_log_softmax_of_a_full_forward():
    model = tiny()
    prompt, continuation = [5, 6, 7, 8], [9, 10, 11]
    expected = full_forward_logprob(model, prompt, continuation)
    assert continuation_logprob(model, prompt, continuation) == pytest.approx(expected, abs=1e-4)


def test_continuation_logprobs_shares_the_prompts_start_and_the_continuations_stems():
    model = tiny()
    prompts = [[1, 2, 3, 4, 5], [1, 2, 3, 9], [1, 2, 3, 7, 7, 7, 8]]  # shared start: [1, 2, 3]
    continuations = [[10], [11], [12, 13], [12, 14], [15, 16, 17]]  # stems (), (12,), (15, 16)
    scores = continuation_logprobs(model, prompts, continuations)
    expected = torch.tensor(
        [[full_forward_logprob(model, p, c) for c in continuations] for p in prompts]
    )
    assert torch.allclose(scores, expected, atol=1e-4)
    alone = continuation_logprobs(model, [[4, 5]], continuations)  # nothing shared
    assert torch.allclose(
        alone[0],
        torch.tensor([full_forward_logprob(model, [4, 5], c) for c in continuations]),
        atol=1e-4,
    )


# -- a transformers model through the same functions ----------------------------------------------
def test_our_llama_with_transformers_weights_gives_their_logits(tiny_llama):
    ours, theirs = tiny_llama
    ids = torch.randint(0, 64, (2, 20))
    with torch.no_grad():
        assert torch.allclose(ours(ids)[0], theirs(input_ids=ids).logits, atol=1e-5)


def test_the_functions_drive_a_transformers_model_too(tiny_llama):
    ours, theirs = tiny_llama
    ids = torch.randint(0, 64, (2, 6))
    mine = generate(ours, ids, max_new_tokens=10, greedy=True)
    assert torch.equal(generate(theirs, ids, max_new_tokens=10, greedy=True), mine)
    expected = theirs.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=10,
        do_sample=False,
        min_new_tokens=10,
        pad_token_id=0,
    )
    assert torch.equal(mine, expected[:, 6:])
    assert torch.equal(
        beam_search(theirs, ids[:1], beams=3, max_new_tokens=5),
        beam_search(ours, ids[:1], beams=3, max_new_tokens=5),
    )
    prompts, continuations = [[1, 2, 3, 4], [1, 2, 5]], [[6], [7, 8]]
    assert torch.allclose(
        continuation_logprobs(theirs, prompts, continuations),
        continuation_logprobs(ours, prompts, continuations),
        atol=1e-4,
    )
    assert as_lm(as_lm(theirs)) is not None  # an adapter passes through


@pytest.mark.parametrize("which", ["ours", "transformers"])
def test_generation_from_a_shared_prefix_cache_equals_generation_from_the_whole_prompt(
    which, tiny_llama
):
    model = tiny_llama[0] if which == "ours" else tiny_llama[1]
    start, rests = [5, 9, 2, 7, 1], torch.randint(0, 64, (3, 4))
    whole = torch.cat([torch.tensor([start] * 3), rests], dim=1)
    prefix = prefix_cache(model, start, max_length=whole.shape[1] + 8)
    new = generate(model, rests, max_new_tokens=8, greedy=True, prefix=prefix)
    assert torch.equal(new, generate(model, whole, max_new_tokens=8, greedy=True))
    again = generate(model, rests[:1], max_new_tokens=8, greedy=True, prefix=prefix)
    assert torch.equal(again, new[:1])  # the prefix is copied, never appended to


# -- SmolLM2-135M ---------------------------------------------------------------------------------
@pytest.mark.slow  # the smollm fixture (once a session, ~30 s) and 2 × 20 tokens
def test_smollm2_greedy_text_is_transformers_generate(smollm):
    ours, theirs, tokenizer = smollm
    ids = torch.tensor([tokenizer.encode("The three primary colours are")])
    mine = generate(ours, ids, max_new_tokens=20, greedy=True)
    expected = theirs.generate(ids, max_new_tokens=20, do_sample=False, min_new_tokens=20)
    assert mine.shape == (1, 20)
    assert mine[0].tolist() == expected[0, ids.shape[1] :].tolist(), tokenizer.decode(mine[0])


def test_a_text_longer_than_the_context_goes_on_from_the_last_half_of_its_window():
    model = tiny()  # block_size 32
    prompt = torch.arange(10) % 50
    text = generate(model, prompt, max_new_tokens=60, greedy=True)
    assert text.shape == (1, 60)
    within = generate(model, prompt, max_new_tokens=22, greedy=True)  # 10 + 22 = the context
    assert torch.equal(text[:, :22], within)
    # then the window is the last 16 tokens, read again
    window = torch.cat([prompt, within[0]])[-16:]
    assert torch.equal(text[:, 22:38], generate(model, window, max_new_tokens=16, greedy=True))
    long_prompt = torch.arange(40) % 50  # longer than the context itself
    assert generate(model, long_prompt, max_new_tokens=5, greedy=True).shape == (1, 5)
