"""The essential papers: the catalogue agrees with the map, our numbers are read (from runs and
from docs/benchmarks.md, never typed), and `deepscape papers` / `deepscape show PAPER` answer."""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepscape import landscape, papers
from deepscape.cli import app
from deepscape.lab_config import config_class
from deepscape.runs import RunStore

RESNET_CIFAR = {"arch": "resnet", "depth": 20, "dataset": "cifar10"}
EXCERPT = """# Benchmarks

<!-- sr -->
## super-resolution ×3, the ladder

Date: 2026-11-30

| method | Set5 PSNR / SSIM (gain) | parameters |
|---|---|---|
| bicubic | 30.41 dB / 0.8685 | — |
| srcnn | 31.67 dB / 0.8925 (+1.26) | 20,099 |

| method | Set5 PSNR / SSIM (gain) |
|---|---|
| srcnn | 29.00 dB |
<!-- /sr -->

<!-- one-row -->
## the attention lab

| test accuracy | training |
|---|---|
| **88.13%** | 10.1 min |

| model | parameters |
|---|---|
| cnn | 1,234,567 |
| vit | – |
<!-- /one-row -->
"""


@pytest.fixture(scope="module")
def catalogue() -> papers.Catalogue:
    return papers.load()


@pytest.fixture
def cli():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def finished(store: RunStore, lab: str, config: dict, **metrics: float) -> str:
    run = store.create(lab, config)
    run.update_summary(status="finished", metrics=metrics)
    return run.id


def resnet(catalogue: papers.Catalogue) -> papers.Paper:
    return catalogue.paper("resnet")


# -- the catalogue ---------------------------------------------------------------------------------
def test_the_catalogue_agrees_with_the_map(catalogue):
    the_map = landscape.load()
    assert catalogue.problems(the_map) == []
    labs = {lab.id for lab in the_map.labs}
    for paper in catalogue.papers:
        assert set(paper.labs) <= labs, paper.id
        assert paper.idea.count(". ") == 0 and paper.idea.endswith("."), paper.id  # one sentence
        assert str(paper.result), paper.id


def test_vision_201_has_its_essential_papers(catalogue):
    shelf = [paper.id for paper in catalogue.shelf("vision", 201)]
    assert 12 <= len(shelf) <= 20
    for essential in ("alexnet", "vgg", "resnet", "batch-norm", "adam", "dropout", "mobilenetv2",
                      "vit", "u-net", "srcnn", "edsr", "ddpm", "ddim", "classifier-free-guidance",
                      "show-and-tell", "distillation", "deep-compression", "lora", "fgsm",
                      "rethinking-generalization"):  # fmt: skip
        assert essential in shelf
    years = [catalogue.paper(p).year for p in shelf]
    assert years == sorted(years)  # oldest first


def test_every_run_reference_names_options_its_lab_has(catalogue):
    for paper in catalogue.papers:
        for ref in paper.ours:
            if isinstance(ref, papers.FromRuns):
                options = {f.name for f in dataclasses.fields(config_class(
                    landscape.load().lab(ref.lab)))}  # fmt: skip
                assert set(ref.where) <= options, (paper.id, set(ref.where) - options)


@pytest.mark.skipif(not papers.BENCHMARKS.is_file(), reason="an installed package: no docs/")
def test_every_benchmark_reference_finds_one_cell_in_the_shipped_benchmarks(catalogue):
    text = papers.BENCHMARKS.read_text()
    for paper in catalogue.papers:
        for ref in paper.ours:
            if isinstance(ref, papers.FromBenchmarks):
                cell, _, _ = papers.read_cell(text, ref.section, ref.row, ref.column)
                assert papers.NUMBER.search(cell), (paper.id, cell)


def test_a_broken_catalogue_is_refused_naming_each_problem():
    data = tomllib.loads(resources.files("deepscape").joinpath("papers.toml").read_text())
    the_map = landscape.load()
    broken = copy.deepcopy(data)
    entries = {entry["id"]: entry for entry in broken["papers"]}
    entries["resnet"]["labs"].append("vision/201/nowhere")
    planned = next(lab.id for lab in the_map.labs if not lab.available)
    entries["ddpm"]["labs"].append(planned)
    entries["ddpm"]["ours"] = [{"lab": planned, "metric": "fid", "what": "x"}]
    entries["vgg"]["ours"][0]["metric"] = "made_up_score"
    entries["adam"]["result"] = {}
    entries["vit"]["id"] = "digits"
    with pytest.raises(ValueError) as error:
        papers.parse(broken, the_map)
    for problem in ("resnet: unknown lab vision/201/nowhere",
                    f"ddpm: {planned} is planned, so it has no runs to read",
                    "vgg: made_up_score is not in the metrics registry: set best",
                    "adam: the paper's number, or a note saying why none",
                    "digits: a lab has that name too"):  # fmt: skip
        assert problem in str(error.value)
    assert papers.parse(data, the_map).ids == papers.load().ids


def test_unknown_paper_and_track_name_the_closest(catalogue):
    with pytest.raises(papers.UnknownPaper, match="unknown paper 'resnt' — did you mean 'resnet'"):
        catalogue.paper("resnt")
    with pytest.raises(papers.UnknownPaper, match="did you mean 'vision'"):
        catalogue.shelf("visoin")
    assert catalogue.shelf("vision", 301) == []


# -- our numbers, read ---------------------------------------------------------------------------
def test_ours_is_the_best_finished_run_with_the_papers_settings(catalogue, store):
    lab = "vision/201/architectures"
    assert papers.read([resnet(catalogue)], store, None)[0].first is None  # nothing recorded yet
    finished(store, lab, RESNET_CIFAR, test_accuracy=0.88)
    best = finished(store, lab, RESNET_CIFAR, test_accuracy=0.90)
    finished(store, lab, {**RESNET_CIFAR, "depth": 56}, test_accuracy=0.95)  # not ResNet-20
    finished(store, lab, {**RESNET_CIFAR, "arch": "vgg"}, test_accuracy=0.97)  # not a ResNet
    failed = store.create(lab, RESNET_CIFAR)
    failed.update_summary(status="failed", metrics={"test_accuracy": 0.99})  # does not count

    reading = papers.read([resnet(catalogue)], store, None)[0]
    assert reading.first == papers.Measured(0.90, "90.00%", f"your run {best}, best of 2")
    assert reading.yours == reading.first
    assert [m is None for _, m in reading.ours] == [False, True, True]  # no Fashion-MNIST run


def test_ours_follows_each_metrics_direction(catalogue, store):
    lab = "language/201/transformers"
    finished(store, lab, {"tokenizer": "char"}, val_bits_per_char=1.9)
    lowest = finished(store, lab, {"tokenizer": "char"}, val_bits_per_char=1.6)
    gpt2 = papers.read([catalogue.paper("gpt-2")], store, None)[0]
    assert gpt2.first.value == 1.6 and gpt2.first.text == "1.600 bits/char"
    assert gpt2.first.source == f"your run {lowest}, best of 2"
    bpe = papers.read([catalogue.paper("bpe")], store, None)[0]
    assert bpe.first is None  # only char-level runs: none of BPE


def test_a_benchmark_cell_is_read_by_section_row_and_column(tmp_path):
    cell = papers.read_cell(EXCERPT, "sr", {"method": "bicubic"}, "parameters")
    assert cell == ("—", "super-resolution ×3, the ladder", "2026-11-30")
    assert papers.read_cell(EXCERPT, "one-row", {}, "test accuracy")[0] == "**88.13%**"
    with pytest.raises(LookupError, match="2 cells match 'Set5 PSNR / SSIM"):  # two tables
        papers.read_cell(EXCERPT, "sr", {"method": "srcnn"}, "Set5 PSNR / SSIM (gain)")
    with pytest.raises(LookupError, match="no section 'nowhere'"):
        papers.read_cell(EXCERPT, "nowhere", {}, "x")
    with pytest.raises(LookupError, match="0 cells match"):
        papers.read_cell(EXCERPT, "sr", {"method": "edsr"}, "parameters")

    store = RunStore(tmp_path / "runs")
    read = lambda row, column, section="one-row": papers.measure(  # noqa: E731
        papers.FromBenchmarks(section, column, "x", row), store, EXCERPT
    )
    assert read({}, "test accuracy") == papers.Measured(
        88.13, "88.13%", "docs/benchmarks.md: the attention lab"
    )
    assert read({"model": "cnn"}, "parameters").value == 1_234_567
    assert read({"model": "vit"}, "parameters") is None  # an empty cell is not a number
    assert read({"method": "srcnn"}, "Set5 PSNR / SSIM (gain)", "sr") is None  # ambiguous


def test_your_runs_come_before_the_benchmarks(catalogue, store, tmp_path):
    benchmarks = tmp_path / "benchmarks.md"
    benchmarks.write_text(
        "<!-- vision_201_architectures_degradation -->\n## the degradation problem\n\n"
        "| net | test accuracy |\n|---|---|\n| resnet-20 | 80.66% |\n"
        "<!-- /vision_201_architectures_degradation -->\n"
    )
    reading = papers.read([resnet(catalogue)], store, benchmarks)[0]
    assert reading.first.text == "80.66%" and reading.yours is None
    assert isinstance(reading.beside[0], papers.FromBenchmarks)
    finished(store, "vision/201/architectures", {**RESNET_CIFAR, "dataset": "fashion-mnist"},
             test_accuracy=0.9)  # fmt: skip
    reading = papers.read([resnet(catalogue)], store, benchmarks)[0]
    assert reading.first.text == "90.00%" and reading.yours == reading.first
    assert papers.read([resnet(catalogue)], store, tmp_path / "absent.md")[0].first.value == 0.9


# -- the commands ----------------------------------------------------------------------------------
def test_papers_json_lists_the_shelf_with_our_numbers(cli, store):
    result = cli("papers", "--track", "vision", "--level", "201", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert len(listed) >= 10
    assert {p["track"] for p in listed} == {"vision"} and {p["level"] for p in listed} == {201}
    by_id = {p["id"]: p for p in listed}
    assert by_id["resnet"]["citation"].startswith("Kaiming He, Xiangyu Zhang")
    assert by_id["resnet"]["paper"]["value"] == 91.25
    assert by_id["resnet"]["ours"][0]["text"] == papers.NOT_MEASURED  # no CIFAR-10 run yet
    ddpm = by_id["ddpm"]["ours"]
    assert ddpm[0]["from"] == "runs" and ddpm[0]["text"] == papers.NOT_MEASURED  # none of yours

    run_id = finished(store, "vision/201/architectures", RESNET_CIFAR, test_accuracy=0.9125)
    listed = json.loads(cli("papers", "--track", "vision", "--json").stdout)
    ours = next(p for p in listed if p["id"] == "resnet")["ours"][0]
    assert (ours["from"], ours["value"], ours["source"]) == ("runs", 0.9125, f"your run {run_id}")
    every = json.loads(cli("papers", "--json").stdout)
    assert {(p["track"], p["level"]) for p in every} >= {("vision", 201), ("language", 101)}


def test_papers_table_and_a_papers_card(cli):
    table = cli("papers", "--track", "language")
    assert table.exit_code == 0
    assert "language 101" in table.stdout and "word2vec" in table.stdout
    card = cli("show", "resnet")
    assert card.exit_code == 0
    for text in ("Deep Residual Learning", "Idea:", "vision/201/architectures", "91.25 %"):
        assert text in card.stdout
    data = json.loads(cli("show", "resnet", "--json").stdout)
    assert data["id"] == "resnet" and data["labs"][0] == "vision/201/architectures"
    assert json.loads(cli("show", "digits", "--json").stdout)["id"] == "vision/101/digits"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("show", "resnt"), "unknown lab or paper 'resnt' — did you mean 'resnet'?"),
        (("show", "digts"), "unknown lab 'digts' — did you mean 'digits'?"),
        (("papers", "--track", "visoin"), "no papers for track 'visoin' — did you mean 'vision'?"),
        (("papers", "--level", "401"), "level 401 is not one of 101, 201, 301"),
    ],
)
def test_a_bad_name_is_one_line_naming_the_closest(cli, args, message):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr == f"error: {message}\n"


# -- the lab ---------------------------------------------------------------------------------------
def test_the_lab_counts_the_papers_your_runs_measured(store, tmp_path):
    from deepscape.lab import run_lab

    no_benchmarks = str(tmp_path / "absent.md")
    finished(store, "vision/201/architectures", RESNET_CIFAR, test_accuracy=0.91)
    finished(store, "vision/201/compression", {}, distillation_gain=0.011, sparse_size_ratio=4.7)
    run = run_lab("vision/201/papers", [f"benchmarks={no_benchmarks}"], store=store,
                  show_progress=False)  # fmt: skip
    summary = run.summary
    assert summary["status"] == "finished"
    assert summary["metrics"] == {
        "papers": 20,
        "papers_with_your_number": 3,  # resnet, distillation, deep-compression
        "papers_with_a_number": 3,
    }
    assert summary["target"]["reached"] is False  # the bar is 10
    assert [p["id"] for p in summary["papers"] if p["measured"]] == [
        "distillation", "resnet", "deep-compression"
    ]  # fmt: skip
    assert (Path(run.dir) / "figures" / "timeline.png").stat().st_size > 10_000
    progress = landscape.progress(landscape.load(), store)["vision/201/papers"]
    assert progress == landscape.LabProgress(landscape.BELOW, 1, 3)
