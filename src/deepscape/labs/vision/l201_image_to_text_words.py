"""vision/201/image-to-text's words: captions as token ids and back, and writing them through
`deepscape.generate` — greedy decoding a batch of images at a time, beam search one at a time —
with the captioner and its images seen as one causal language model (`ImageConditioned`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from deepscape.data import TensorSplit
from deepscape.data.text import encode
from deepscape.generate import beam_search, generate
from deepscape.labs.vision.l201_image_to_text_data import CaptionSplit
from deepscape.models.captioner import Captioner, ImageConditioned

if TYPE_CHECKING:
    from tokenizers import Tokenizer


# -- captions as token ids ------------------------------------------------------------------------
class Vocabulary:
    """Training captions' words (deepscape's word tokenizer: [PAD] 0, [UNK] 1), and two ids after
    them: the start token a caption is prompted with and the end token it stops at."""

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.bos = tokenizer.get_vocab_size()
        self.eos = self.bos + 1
        self.size = self.bos + 2

    def ids(self, captions: list[str], max_words: int) -> torch.Tensor:
        """[start] words [end] "n (max_words + 2)", padded with −100 after the end (not learnt);
        a caption longer than max_words is cut and has no end."""
        words = encode(self.tokenizer, captions, max_length=max_words)
        out = torch.full((len(captions), max_words + 2), -100, dtype=torch.long)
        out[:, 0] = self.bos
        for row, sentence in enumerate(words):
            sentence = sentence[sentence != 0]  # [PAD]
            out[row, 1 : len(sentence) + 1] = sentence
            if len(sentence) < max_words:
                out[row, len(sentence) + 1] = self.eos
        return out

    def said(self, caption: str, max_words: int) -> tuple[torch.Tensor, list[str]]:
        """A written caption's ids "t" ([start] … [end]) and the tokens each id predicts (its
        words, then [end]): the rows and labels of its attention maps."""
        ids = self.ids([caption], max_words)[0]
        ids = ids[ids >= 0]
        return ids, [*self.words(ids[1:].tolist()), "[end]"]

    def words(self, ids: list[int]) -> list[str]:
        """The words of generated ids, up to the end token; [UNK] left out of what is said."""
        out = []
        for i in ids:
            if i == self.eos:
                break
            if 1 < i < self.bos:
                out.append(self.tokenizer.id_to_token(i))
        return out


def caption_pairs(split: CaptionSplit, vocabulary: Vocabulary, max_words: int, offset: int,
                  per_image: int | None = None) -> TensorSplit:  # fmt: skip
    """(image index, caption ids) for every caption of every image (or its first `per_image`):
    an image with five captions is five examples. Indices count from `offset` into the features
    of all splits together."""
    kept = [captions[:per_image] for captions in split.captions]
    images = [offset + i for i, captions in enumerate(kept) for _ in captions]
    texts = [c for captions in kept for c in captions]
    return TensorSplit(torch.tensor(images), vocabulary.ids(texts, max_words))


# -- writing: greedy and beam search through deepscape.generate -----------------------------------
def greedy_captions(model: Captioner, grids: torch.Tensor, vocabulary: Vocabulary,
                    max_words: int, batch: int = 256) -> list[str]:  # fmt: skip
    """The likeliest word at each step, a batch of images at a time."""
    out = []
    for start in range(0, len(grids), batch):
        chunk = grids[start : start + batch]
        prompts = torch.full((len(chunk), 1), vocabulary.bos)
        ids = generate(ImageConditioned(model, chunk), prompts, max_new_tokens=max_words + 1,
                       stop_tokens=[vocabulary.eos], greedy=True)  # fmt: skip
        out += [" ".join(vocabulary.words(row)) for row in ids.tolist()]
    return out


def beam_captions(model: Captioner, grids: torch.Tensor, vocabulary: Vocabulary, *,
                  beams: int, max_words: int, length_penalty: float) -> list[str]:  # fmt: skip
    """Beam search's likeliest caption of each image (one image at a time)."""
    return [
        " ".join(vocabulary.words(beam_search(
            ImageConditioned(model, grids[i : i + 1]), [vocabulary.bos], beams=beams,
            max_new_tokens=max_words + 1, stop_tokens=[vocabulary.eos],
            length_penalty=length_penalty,
        )[0].tolist()))
        for i in range(len(grids))
    ]  # fmt: skip
