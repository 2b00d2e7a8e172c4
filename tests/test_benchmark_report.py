"""Benchmark tables name paths as a reader would type them, not as the folders of the machine
that ran them."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("_report", REPO / "benchmarks" / "_report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_paths_are_written_from_the_repository():
    scratch = Path(tempfile.gettempdir()).resolve() / "tmpk3j_x"
    text = (
        f"python {REPO}/benchmarks/language_101.py\n"
        f"deepscape run language/101/transfer data_dir={REPO.parent}/shared/data/sentclf\n"
        f"deepscape run vision/101/transfer data_dir={scratch}/cifar10-images`"
    )
    assert report.as_typed(text) == (
        "python benchmarks/language_101.py\n"
        "deepscape run language/101/transfer data_dir=../shared/data/sentclf\n"
        "deepscape run vision/101/transfer data_dir=cifar10-images`"
    )


def test_the_published_tables_name_no_folder_of_a_machine():
    text = (REPO / "docs" / "benchmarks.md").read_text()
    scratch = str(Path(tempfile.gettempdir()).resolve())
    for folder in (f"{REPO.parent}/", f"{scratch}/", "/tmp/"):
        assert folder not in text
