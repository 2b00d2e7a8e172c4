"""The CLI answers at once where it only reads the map: `--help`, `map`, `show` and the one-line
errors for an unknown lab or key import no torch. A lab's options come from its Config read
from source (deepscape.lab_config), the same options importing the lab gives."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest

from deepscape import landscape
from deepscape.config import describe
from deepscape.lab_config import config_class, read_config

HEAVY = ("torch", "torchvision", "accelerate", "transformers", "matplotlib", "sklearn")

# Runs the app as the console script does, then names the heavy modules it imported.
PROBE = f"""
import sys
from deepscape.cli import app
try:
    app(sys.argv[1:], prog_name="deepscape")
finally:
    heavy = [name for name in {HEAVY!r} if name in sys.modules]
    print("heavy:", *heavy, file=sys.stderr)
"""


def deepscape(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60
    )


def answered_light(result: subprocess.CompletedProcess) -> str:
    """The command's stderr without the probe's line, after checking that line is empty."""
    *said, heavy = result.stderr.rstrip("\n").split("\n")
    assert heavy == "heavy:", f"imported {heavy.removeprefix('heavy: ')}"
    return "\n".join(said)


@pytest.mark.parametrize("args", [["--help"], ["map"], ["map", "--json"]])
def test_help_and_map_import_no_torch(args):
    result = deepscape(*args)
    assert result.returncode == 0, result.stderr
    answered_light(result)
    assert "vision/101/digits" in result.stdout or "show" in result.stdout


def test_show_digits_lists_its_options_without_importing_torch():
    result = deepscape("show", "vision/101/digits")
    assert result.returncode == 0, result.stderr
    assert answered_light(result) == ""
    for text in ("Digits", "Target:", "Options (key=value)", "model", "linear|mlp|cnn", "lr"):
        assert text in result.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "vision/999/x"], ["unknown lab 'vision/999/x'"]),
        (["show", "vision/999/x"], ["unknown lab 'vision/999/x'"]),
        (["run", "digits", "lrr=0.1"], ["unknown config key 'lrr'", "did you mean 'lr'?"]),
        (["run", "digits", "model=resnet"], ["model='resnet' is not one of linear, mlp, cnn"]),
        (["run", "digits", "lr"], ["'lr' is not key=value"]),
        (["sweep", "digits", "lrr=0.1,0.2"], ["unknown config key 'lrr'"]),
    ],
)
def test_bad_input_is_one_line_before_torch_loads(args, fragments):
    result = deepscape(*args)
    assert result.returncode == 2
    said = answered_light(result)
    assert said.startswith("error: ") and "\n" not in said and result.stdout == ""
    for fragment in fragments:
        assert fragment in said


def test_a_config_that_needs_a_heavy_name_comes_from_the_lab(tmp_path):
    source = tmp_path / "lab.py"
    source.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            from dataclasses import dataclass
            from deepscape.config import TrainConfig, option
            from heavy import DEFAULT  # not read: Config below needs it

            WIDTHS = (3, 4, 5)
            UNUSED = object()

            @dataclass
            class Config(TrainConfig):
                widths: tuple[int, ...] = option(WIDTHS, "filter widths")
                model: str = option(DEFAULT, "the model")
            """
        )
    )
    with pytest.raises(NameError, match="DEFAULT"):
        read_config(source, "lab")
    source.write_text(source.read_text().replace("DEFAULT,", "'cnn',"))
    options = {o["name"]: o for o in describe(read_config(source, "lab"))}
    assert options["widths"]["default"] == (3, 4, 5) and options["model"]["default"] == "cnn"
    assert options["lr"]["type"] == "float"  # TrainConfig's options come along


def test_a_planned_lab_has_no_config():
    planned = next(lab for lab in landscape.load().labs if not lab.available)
    with pytest.raises(landscape.LabNotAvailable):
        config_class(planned)


@pytest.mark.slow
@pytest.mark.parametrize(
    "lab", [lab for lab in landscape.load().labs if lab.available], ids=lambda lab: lab.id
)
def test_every_labs_config_reads_from_source_with_the_options_of_the_lab(lab):
    light = read_config(Path(find_spec(lab.module_name).origin), lab.module_name)  # no fallback
    assert describe(light) == describe(lab.module().Config)
