"""Text out of any causal LM: sampling, greedy decoding, beam search and log-probabilities.

A causal LM gives, for every position, logits over the next token. Generating text is a loop
around it — pick a token, append it, ask again — and how the token is picked is the lesson:
the likeliest (greedy), or drawn from the softmax, sharpened or flattened by a temperature and
cut to the k likeliest tokens (top-k) or to the fewest whose probabilities sum to p (top-p,
nucleus). Beam search keeps the `beams` likeliest sequences instead of one. Scoring needs no
loop at all: log P(continuation | prompt) is a sum of log-softmaxes read from one forward pass.

Every function takes our `GPT` or a transformers causal LM (or anything shaped like `CausalLM`)
and keeps a KV cache, so each step computes only the new token.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence
from typing import Any, Protocol, Self

import torch
from torch import Tensor

from deepscape.models.gpt import GPT


class Cache(Protocol):
    length: int  # positions cached

    def select(self, rows: Tensor) -> Self:
        """A new cache of the sequences `rows` "n" (in that order, repeats allowed)."""
        ...


class CausalLM(Protocol):
    """What generation needs: logits "b t vocab" of new tokens ids "b t" that come after the
    cache's (which then holds theirs too), or only at positions `at` "b k" of each row ("b k
    vocab"), and an empty cache."""

    def __call__(self, ids: Tensor, cache: Any, at: Tensor | None = None) -> Tensor: ...

    def new_cache(self, max_length: int) -> Cache: ...


class OurGPT:
    """Our `GPT` as a `CausalLM`: its forward pass returns (logits, loss)."""

    def __init__(self, model: GPT):
        self.model = model

    def __call__(self, ids: Tensor, cache: Any, at: Tensor | None = None) -> Tensor:
        return self.model(ids, cache=cache, logits_at=at)[0]

    def new_cache(self, max_length: int) -> Cache:
        return self.model.new_cache(max_length)


class TransformersCache:
    """A transformers cache (DynamicCache…), made by the model's first forward pass, that counts
    its positions and copies itself on `select`."""

    def __init__(self, inner: Any = None, length: int = 0):
        self.inner, self.length = inner, length

    def select(self, rows: Tensor) -> TransformersCache:
        inner = copy.deepcopy(self.inner)
        if inner is not None:
            inner.batch_select_indices(rows)
        return TransformersCache(inner, self.length)


class TransformersLM:
    """A transformers causal LM (AutoModelForCausalLM…) as a `CausalLM`."""

    def __init__(self, model: Any):
        self.model = model
        # the cache's name in and out of the model: `cache` since transformers 5.2x, before
        # then (and in models that keep the old name) `past_key_values`
        names = inspect.signature(model.forward).parameters
        self.cache_name = "cache" if "cache" in names else "past_key_values"

    def __call__(self, ids: Tensor, cache: TransformersCache, at: Tensor | None = None) -> Tensor:
        out = self.model(
            input_ids=ids,
            use_cache=True,
            logits_to_keep=0 if at is None else at,  # 0: all; "b k" positions: transformers 5
            **{self.cache_name: cache.inner},
        )
        cache.inner = getattr(out, self.cache_name)
        cache.length += ids.shape[1]
        return out.logits

    def new_cache(self, max_length: int) -> TransformersCache:
        return TransformersCache()  # it grows as it goes: no length to allocate


def as_lm(model: Any) -> CausalLM:
    """`model` as a `CausalLM`: our GPT, a transformers causal LM, or one already."""
    if isinstance(model, GPT):
        return OurGPT(model)
    if hasattr(model, "new_cache"):
        return model
    return TransformersLM(model)


def _device(lm: CausalLM) -> torch.device:
    model = getattr(lm, "model", None)
    return next(model.parameters()).device if model is not None else torch.device("cpu")


def last_position(ids: Tensor) -> Tensor:
    """The last position of each row of ids "b t", as `at` "b 1": a prompt's next token."""
    return torch.full((ids.shape[0], 1), ids.shape[1] - 1, device=ids.device)


def _as_batch(ids: Tensor | Sequence[int], device: torch.device) -> Tensor:
    ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    return ids.reshape(1, -1) if ids.dim() == 1 else ids


# -- picking the next token -----------------------------------------------------------------------
def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Logits "… vocab" with all but the k largest of each row set to −inf (ties with the k-th
    stay in)."""
    kth = logits.topk(min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Logits "… vocab" cut to the nucleus: the likeliest tokens, fewest first, until their
    probabilities sum to at least p. A token goes when those likelier than it already reach p;
    the likeliest always stays."""
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    before = probs.cumsum(dim=-1) - probs  # the mass of the tokens likelier than each
    drop = (before >= p).scatter(-1, order, before >= p)  # back to the vocabulary's order
    return logits.masked_fill(drop, float("-inf"))


def next_token(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """One token "b" per row of logits "b vocab": the likeliest (greedy, or temperature 0), or
    drawn from softmax(logits / temperature) after the top-k and top-p cuts."""
    if greedy or temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator).squeeze(-1)


@torch.inference_mode()
def generate(
    model: Any,
    ids: Tensor | Sequence[int],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    stop_tokens: Sequence[int] = (),
    greedy: bool = False,
    generator: torch.Generator | None = None,
    prefix: Cache | None = None,
) -> Tensor:
    """The new token ids "b n" after prompts ids "b t" (or one prompt "t"; a batch's prompts
    have one length). A row ends at its first stop token (kept); rows that end before the others
    repeat it. Generation ends when every row has, or after `max_new_tokens`.

    `prefix`: a cache that already holds a start every prompt shares (`prefix_cache`), and
    `ids` what comes after it — a few-shot prompt's demonstrations are read once, not again for
    each question.

    A text longer than our GPT's context (`block_size`) goes on from the last half of its
    window, read again into a fresh KV cache: the model never sees more than it was trained
    on (nanoGPT crops its input the same way, at every token)."""
    context = model.config.block_size if isinstance(model, GPT) else None
    ids = _as_batch(ids, _device(as_lm(model)))
    sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p,
                "stop_tokens": stop_tokens, "greedy": greedy, "generator": generator}  # fmt: skip
    if prefix is not None or context is None or ids.shape[1] + max_new_tokens <= context:
        return _generate(model, ids, max_new_tokens=max_new_tokens, prefix=prefix, **sampling)
    if ids.shape[1] >= context:
        ids = ids[:, -(context // 2) :]
    new = ids.new_empty(ids.shape[0], 0)
    while new.shape[1] < max_new_tokens:
        window = torch.cat([ids, new], dim=1)
        if window.shape[1] >= context:
            window = window[:, -(context // 2) :]
        wanted = min(context - window.shape[1], max_new_tokens - new.shape[1])
        chunk = _generate(model, window, max_new_tokens=wanted, **sampling)
        new = torch.cat([new, chunk], dim=1)
        if chunk.shape[1] < wanted:  # every row reached a stop token
            break
    return new


def _generate(
    model: Any,
    ids: Tensor,
    *,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    stop_tokens: Sequence[int],
    greedy: bool,
    generator: torch.Generator | None,
    prefix: Cache | None = None,
) -> Tensor:
    """`generate` within one window of the model's context."""
    lm = as_lm(model)
    if prefix is None:
        cache = lm.new_cache(ids.shape[1] + max_new_tokens)
    else:  # a copy of the shared start for each row, each appended to by the passes
        cache = prefix.select(torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device))
    logits = lm(ids, cache, last_position(ids))[:, -1]
    stops = torch.tensor(list(stop_tokens), dtype=torch.long, device=ids.device)
    ended = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new: list[Tensor] = []
    for step in range(max_new_tokens):
        token = next_token(
            logits, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy,
            generator=generator,
        )  # fmt: skip
        token = torch.where(ended, new[-1] if new else token, token)
        new.append(token)
        ended |= torch.isin(token, stops)
        if bool(ended.all()) or step == max_new_tokens - 1:
            break
        logits = lm(token.unsqueeze(1), cache)[:, -1]
    return torch.stack(new, dim=1) if new else ids.new_empty(ids.shape[0], 0)


@torch.inference_mode()
def beam_search(
    model: Any,
    ids: Tensor | Sequence[int],
    *,
    beams: int,
    max_new_tokens: int,
    stop_tokens: Sequence[int] = (),
    length_penalty: float = 1.0,
) -> Tensor:
    """The new token ids "1 n" of the likeliest continuation of one prompt ids "t" (or "1 t")
    that beam search finds: at each step every kept sequence is extended by every token and
    the `beams` likeliest non-ended extensions are kept. A sequence ends at a stop token ranked
    among the `beams` best extensions; the search ends once `beams` have ended (or after
    `max_new_tokens`). Ended sequences are ranked
    by log-probability / length ** length_penalty (>1 favours longer ones)."""
    lm = as_lm(model)
    ids = _as_batch(ids, _device(lm))
    if ids.shape[0] != 1:
        raise ValueError("beam_search continues one prompt")
    cache = lm.new_cache(ids.shape[1] + max_new_tokens)
    logprobs = lm(ids, cache, last_position(ids))[:, -1].float().log_softmax(dim=-1)  # "beam vocab"
    alive: list[tuple[list[int], float]] = [([], 0.0)]  # tokens so far, their log-probability
    ended: list[tuple[list[int], float]] = []  # tokens, normalised score
    for step in range(max_new_tokens):
        scores = torch.tensor([s for _, s in alive], device=logprobs.device)[:, None] + logprobs
        best = scores.flatten().topk(min(2 * beams, scores.numel()))  # ≥ beams that go on
        previous, alive, rows = alive, [], []
        candidates = zip(best.values.tolist(), best.indices.tolist(), strict=True)
        for rank, (score, flat) in enumerate(candidates):
            row, token = divmod(flat, scores.shape[1])
            tokens = [*previous[row][0], token]
            if token in stop_tokens:
                # an end counts only among the `beams` best (as in transformers): counting the
                # unlikely ends ranked below them stopped the search with half-written sentences
                if rank < beams:
                    ended.append((tokens, score / len(tokens) ** length_penalty))
            elif len(alive) < beams:
                alive.append((tokens, score))
                rows.append(row)
        if len(ended) >= beams or not alive or step == max_new_tokens - 1:
            break
        cache = cache.select(torch.tensor(rows, device=ids.device))
        last = torch.tensor([[tokens[-1]] for tokens, _ in alive], device=ids.device)
        logprobs = lm(last, cache)[:, -1].float().log_softmax(dim=-1)
    if len(ended) < beams:  # out of steps: the unfinished compete too
        ended += [(t, s / len(t) ** length_penalty) for t, s in alive if t]
    tokens = max(ended, key=lambda c: c[1])[0] if ended else []
    return torch.tensor([tokens], dtype=torch.long, device=ids.device)


# -- scoring --------------------------------------------------------------------------------------
@torch.inference_mode()
def prefix_cache(model: Any, ids: Sequence[int], *, max_length: int) -> Cache:
    """A cache holding the keys and values of `ids`, for `generate(…, prefix=)`; `max_length`:
    the longest sequence it will be part of (our GPT allocates its cache once)."""
    lm = as_lm(model)
    cache = lm.new_cache(max_length)
    start = torch.tensor([list(ids)], device=_device(lm))
    lm(start, cache, last_position(start))
    return cache


def common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """How many first tokens all `sequences` share (leaving each at least one of its own)."""
    shortest = min(len(s) for s in sequences)
    first = sequences[0]
    n = 0
    while n < shortest - 1 and all(s[n] == first[n] for s in sequences):
        n += 1
    return n


@torch.inference_mode()
def continuation_logprobs(
    model: Any, prompts: Sequence[Sequence[int]], continuations: Sequence[Sequence[int]]
) -> Tensor:
    """log P(continuation | prompt) "prompts continuations" for every pair: how likely the
    model finds each answer (a label word's tokens, say) after each prompt.

    The prompts' common start is computed once and its keys and values copied for each
    prompt. Continuations that share all but their last token share one forward pass (one-token
    ones: the prompts alone). The prompts' own ends are padded on the right: causal attention
    never looks right, so padding needs no mask, only the right positions to read."""
    lm = as_lm(model)
    device = _device(lm)
    shared = common_prefix(prompts)
    longest = max(len(p) for p in prompts) + max(len(c) for c in continuations)
    prefix = lm.new_cache(longest)
    if shared:
        start = torch.tensor([prompts[0][:shared]], device=device)
        lm(start, prefix, last_position(start))  # for its keys and values
    scores = torch.empty(len(prompts), len(continuations))
    for stem in {tuple(c[:-1]) for c in continuations}:
        rows = [[*p[shared:], *stem] for p in prompts]
        ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        # each prompt's last token predicts a continuation's first, the stem's tokens the rest
        ends = torch.tensor([len(p) - shared - 1 for p in prompts])
        at = ends[:, None] + torch.arange(len(stem) + 1)
        copies = torch.zeros(len(rows), dtype=torch.long, device=device)
        cache = prefix.select(copies)  # one per prompt, each appended to by the pass
        logprobs = lm(ids.to(device), cache, at.to(device)).float().log_softmax(dim=-1).cpu()
        for j, continuation in enumerate(continuations):
            if tuple(continuation[:-1]) == stem:
                steps = torch.arange(len(continuation))
                scores[:, j] = logprobs[:, steps, torch.tensor(continuation)].sum(dim=1)
    return scores


def continuation_logprob(
    model: Any, prompt_ids: Sequence[int], continuation_ids: Sequence[int]
) -> float:
    """log P(continuation | prompt): the sum of each continuation token's log-probability."""
    return float(continuation_logprobs(model, [prompt_ids], [continuation_ids])[0, 0])
