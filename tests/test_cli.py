"""The `deepscape` command: output for people, JSON for tools, exit codes 0 / 1 / 2 / 130."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import untimed
from typer.testing import CliRunner

from deepscape.cli import app
from deepscape.cli import common as cli_common
from deepscape.config import apply_overrides
from deepscape.labs.vision.l101_digits import Config
from deepscape.loop import Loop, track
from deepscape.runs import Run, RunStore

DEEPSCAPE = Path(sys.executable).parent / "deepscape"  # this venv's console script
DIGITS = "vision/101/digits"
RUN_KEYS = {"run_id", "run_dir", "status", "metrics", "target_reached", "wall_seconds"}


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


@pytest.fixture
def finished_run(cli, home) -> dict:
    """A real (short) run made through the CLI, as its --json report."""
    result = cli("run", "digits", "epochs=2", "model=mlp", "threads=1", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def wide(monkeypatch):
    """A 200-column terminal, so that tables keep run ids on one line."""
    monkeypatch.setattr(cli_common.out, "width", 200)


def _bad_input(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1  # one line, no traceback
    for fragment in fragments:
        assert fragment in result.stderr


# -- map and show ---------------------------------------------------------------------------------
def test_no_arguments_prints_help(cli):
    result = cli()
    assert result.exit_code in (0, 2)
    assert "map" in result.output and "run" in result.output and "show" in result.output


def test_map_shows_tracks_labs_and_next(cli):
    result = cli("map")
    assert result.exit_code == 0
    for text in ("Vision", "Language", "digits", "diffusion", "agents", "not run"):
        assert text in result.stdout
    assert "Next:" in result.stdout
    assert "deepscape run vision/101/digits" in result.stdout


def test_map_json_on_an_empty_store(cli):
    result = cli("map", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert len(data["labs"]) == 35
    assert data["next"] == DIGITS
    assert set(data["tracks"]) == {"vision", "language"}
    assert len(data["levels"]) == 6
    digits = data["labs"][0]
    assert digits["id"] == DIGITS and digits["status"] == "available"
    assert digits["progress"] == {"state": "not run", "runs": 0, "best": None}
    assert digits["target"] == "test_accuracy >= 0.99 on digits; 0.993 on mnist"


def test_map_reflects_a_reached_target(cli, store):
    run = store.create(DIGITS, {})
    run.update_summary(status="finished", metrics={"test_accuracy": 0.995})
    data = json.loads(cli("map", "--json").stdout)
    assert data["labs"][0]["progress"] == {"state": "reached", "runs": 1, "best": 0.995}
    assert data["next"] == "vision/101/experiments"  # the next lab that builds on digits
    text = cli("map").stdout
    assert "✓ reached (best" in text and "0.995" in text
    assert "Next: vision/101/experiments" in text


def test_map_honours_home_option(cli, store, tmp_path):
    run = store.create(DIGITS, {})
    run.update_summary(status="finished", metrics={"test_accuracy": 0.5})
    assert json.loads(cli("map", "--json").stdout)["labs"][0]["progress"]["runs"] == 1
    other = cli("map", "--json", "--home", str(tmp_path / "other"))
    assert json.loads(other.stdout)["labs"][0]["progress"]["runs"] == 0


def test_show_an_available_lab_lists_its_options_and_target(cli):
    result = cli("show", "digits")
    assert result.exit_code == 0
    out = result.stdout
    assert "Digits" in out and DIGITS in out
    assert "Target: test_accuracy >= 0.99 on digits" in out
    for option in ("batch_size", "epochs", "lr", "model", "dataset", "augment"):
        assert option in out
    assert "Not run yet: deepscape run vision/101/digits" in out


def test_show_json_lists_every_option(cli):
    data = json.loads(cli("show", DIGITS, "--json").stdout)
    assert [o["name"] for o in data["options"]] == [f.name for f in dataclasses.fields(Config)]
    assert data["target"]["value"] == 0.99
    assert data["prerequisites_reached"] == {}
    assert data["recent_runs"] == []


def test_show_a_planned_lab(cli):
    result = cli("show", "language/301/papers")
    assert result.exit_code == 0
    assert "planned" in result.stdout
    assert "Prerequisites:" in result.stdout and "language/201/papers" in result.stdout
    assert "Target: loss_prediction_error <= 0.05 on tinystories" in result.stdout
    assert "Options" not in result.stdout and "batch_size" not in result.stdout
    assert "Not run yet" not in result.stdout
    data = json.loads(cli("show", "language/301/papers", "--json").stdout)
    assert data["options"] == []
    assert data["prerequisites_reached"] == {"language/201/papers": False}


def test_show_an_unknown_or_ambiguous_lab(cli):
    _bad_input(cli("show", "digts"), "unknown lab 'digts'", "did you mean 'digits'")
    _bad_input(
        cli("show", "experiments"),
        "ambiguous",
        "vision/101/experiments",
        "language/101/experiments",
    )


# -- run ------------------------------------------------------------------------------------------
def test_run_json_prints_one_report(cli, home):
    result = cli("run", "digits", "epochs=2", "model=mlp", "threads=1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds exactly one JSON object
    assert set(report) == RUN_KEYS
    assert report["status"] == "finished"
    assert Path(report["run_dir"]) == home / report["run_id"]
    assert report["metrics"]["test_accuracy"] > 0.3
    assert report["target_reached"] is False
    assert report["wall_seconds"] > 0
    assert [r.id for r in RunStore(home).list()] == [report["run_id"]]


def test_progress_bars_draw_on_stderr_so_stdout_stays_one_json_document(capsys):
    assert list(track(range(3), description="counting")) == [0, 1, 2]
    out, err = capsys.readouterr()
    assert out == "" and "counting" in err


def test_run_for_people_names_the_result_and_figures(cli):
    result = cli("run", DIGITS, "epochs=1", "model=linear", "threads=1")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "vision/101/digits finished in" in out
    assert "test_accuracy = " in out and "(target >= 0.99)" in out
    assert "below target" in out
    assert out.count("figure: ") == 4


def test_runs_lists_filters_and_shows(cli, finished_run, store, wide):
    run_id = finished_run["run_id"]
    other = store.create("vision/101/experiments", {})
    other.update_summary(status="finished")

    listing = cli("runs")
    assert listing.exit_code == 0
    assert run_id in listing.stdout and other.id in listing.stdout

    only_digits = cli("runs", "--lab", "digits")
    assert only_digits.exit_code == 0
    assert run_id in only_digits.stdout and other.id not in only_digits.stdout

    as_json = json.loads(cli("runs", "--json").stdout)
    assert [s["id"] for s in as_json] == sorted([run_id, other.id])

    shown = cli("runs", "show", run_id[-4:])  # a unique fragment is enough
    assert shown.exit_code == 0
    assert run_id in shown.stdout and "finished" in shown.stdout
    assert "metrics: test_accuracy=" in shown.stdout
    assert "target: test_accuracy >= 0.99" in shown.stdout
    assert shown.stdout.count("figure: ") == 4

    data = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert data["id"] == run_id and data["status"] == "finished"
    assert data["metrics"] == finished_run["metrics"]
    assert data["config"]["epochs"] == 2
    assert len(data["figures"]) == 4


def test_runs_on_an_empty_store(cli):
    result = cli("runs")
    assert result.exit_code == 0
    assert "No runs yet" in result.stdout
    assert json.loads(cli("runs", "--json").stdout) == []


def test_runs_with_an_unknown_lab_or_run(cli):
    _bad_input(cli("runs", "--lab", "digts"), "did you mean 'digits'")
    _bad_input(cli("runs", "show", "nope"), "no run 'nope'")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["digts"], ["unknown lab 'digts'", "did you mean 'digits'"]),
        (["language/301/papers"], ["language/301/papers is planned"]),
        (["digits", "lrr=1"], ["unknown config key 'lrr'", "did you mean 'lr'"]),
        (["digits", "lr=abc"], ["lr='abc' is not a float"]),
        (["digits", "model=resnet"], ["model='resnet' is not one of linear, mlp, cnn"]),
        (["digits", "epochs"], ["'epochs' is not key=value"]),
        (["digits", "--resume", "nope"], ["no run 'nope'"]),
        (["digits", "dataset=mnist"], ["data_dir=", "mnist-5k"]),
        (["digits", "dataset=mnist", "data_dir=/nowhere/at/all"], ["data_dir=/nowhere/at/all"]),
    ],
    ids=[
        "unknown-lab",
        "planned-lab",
        "unknown-key",
        "bad-float",
        "bad-choice",
        "no-equals",
        "unknown-run",
        "mnist-offline",
        "missing-data-dir",
    ],
)
def test_bad_input_exits_2_with_one_line_and_leaves_no_run(cli, home, args, fragments):
    _bad_input(cli("run", *args), *fragments)
    assert RunStore(home).list() == []
    assert not home.exists() or not any(home.iterdir())


DIVERGE = ["epochs=1", "model=mlp", "threads=1", "lr=1e6", "optimizer=sgd", "schedule=constant"]
DIVERGE += ["warmup=0"]


def test_a_diverging_run_exits_1_with_one_line(cli, home):
    result = cli("run", "digits", *DIVERGE)
    assert result.exit_code == 1
    assert result.stdout == ""
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith("error: the loss became")
    assert last_line.endswith("lower lr (now 1e+06) or raise warmup (now 0)")
    assert "failed" in result.stderr
    (run,) = RunStore(home).list()
    assert run.status == "failed"


def test_a_diverging_run_json_report(cli, home):
    result = cli("run", "digits", *DIVERGE, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert set(report) == RUN_KEYS
    assert report["status"] == "failed" and report["target_reached"] is None


def test_runs_lists_and_shows_a_failed_run(cli, home, wide):
    cli("run", "digits", *DIVERGE)
    (run,) = RunStore(home).list()
    listing = cli("runs")
    assert listing.exit_code == 0 and run.id in listing.stdout and "failed" in listing.stdout
    shown = cli("runs", "show", run.id)
    assert shown.exit_code == 0 and "TrainingDiverged" in shown.stdout


def test_show_lists_a_failed_run_among_the_last_runs(cli, home, wide):
    cli("run", "digits", *DIVERGE)
    result = cli("show", "digits")
    assert result.exit_code == 0 and "Your last runs" in result.stdout


def _ctrl_c_after_first_epoch(monkeypatch) -> None:
    checkpoint = Loop.checkpoint

    def checkpoint_then_ctrl_c(self):
        checkpoint(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(Loop, "checkpoint", checkpoint_then_ctrl_c)


def test_ctrl_c_exits_130_with_the_resume_command(cli, home, monkeypatch):
    _ctrl_c_after_first_epoch(monkeypatch)
    result = cli("run", "digits", "epochs=3", "model=mlp", "threads=1", "checkpoint_every=0")
    assert result.exit_code == 130
    (run,) = RunStore(home).list()
    assert run.status == "interrupted"
    assert f"run {run.id}: interrupted" in result.stderr
    assert f"resume with: deepscape run {DIGITS} --resume {run.id}" in result.stderr


def test_ctrl_c_with_json_still_reports_and_exits_130(cli, home, monkeypatch):
    _ctrl_c_after_first_epoch(monkeypatch)
    result = cli(
        "run", "digits", "epochs=3", "model=mlp", "threads=1", "checkpoint_every=0", "--json"
    )
    assert result.exit_code == 130
    assert json.loads(result.stdout)["status"] == "interrupted"


def test_runs_show_an_interrupted_run_gives_the_resume_command(cli, home, monkeypatch):
    _ctrl_c_after_first_epoch(monkeypatch)
    cli("run", "digits", "epochs=3", "model=mlp", "threads=1", "checkpoint_every=0")
    (run,) = RunStore(home).list()
    shown = cli("runs", "show", run.id)
    assert shown.exit_code == 0
    assert f"resume with: deepscape run {DIGITS} --resume {run.id}" in shown.stdout


def test_resuming_a_corrupt_checkpoint_exits_1_with_one_line(cli, store):
    config = apply_overrides(Config(), ["epochs=1", "model=mlp", "threads=1"])
    run = store.create(DIGITS, dataclasses.asdict(config), target="t")
    run.checkpoint_path.write_bytes(b"\x00garbage\xff" * 10)
    run.update_summary(status="interrupted")
    result = cli("run", DIGITS, "--resume", run.id)
    assert result.exit_code == 1
    last_line = result.stderr.splitlines()[-1]
    assert last_line.startswith(f"error: checkpoint {run.checkpoint_path} cannot be read (")
    assert last_line.endswith("): start a new run instead of resuming this one")
    assert "Traceback" not in result.output
    assert Run(run.dir).status == "failed"


def test_resuming_a_finished_run_is_refused(cli, finished_run):
    run_id = finished_run["run_id"]
    _bad_input(
        cli("run", DIGITS, "--resume", run_id),
        f"run {run_id} is finished: only an interrupted run can be resumed",
    )


def test_resuming_a_run_of_another_lab_is_refused(cli, store):
    run = store.create("vision/101/experiments", {})
    run.update_summary(status="interrupted")
    _bad_input(
        cli("run", DIGITS, "--resume", run.id),
        "is a run of vision/101/experiments, not of vision/101/digits",
    )


# -- Ctrl-C and --resume, for real -----------------------------------------------------------------
# checkpoint after every epoch; batch_size=8 makes an epoch last ~0.25 s, long enough to land
# Ctrl-C well inside the next one
EPOCHS = 20  # many: on a busy machine the Ctrl-C can land several epochs after the 2nd
INTERRUPTIBLE = [f"epochs={EPOCHS}", "model=mlp", "batch_size=8", "threads=1", "seed=7"]
INTERRUPTIBLE += ["checkpoint_every=0"]


@pytest.fixture
def spawn():
    """Start `deepscape ARGS --home HOME` with its output in LOG.out / LOG.err; killed if left."""
    started: list[subprocess.Popen] = []

    def start(*args: str, home: Path, log: Path) -> subprocess.Popen:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        env.pop("DEEPSCAPE_HOME", None)
        with open(log.with_suffix(".out"), "w") as out, open(log.with_suffix(".err"), "w") as err:
            process = subprocess.Popen(
                [str(DEEPSCAPE), *args, "--home", str(home)], stdout=out, stderr=err, env=env
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _finish(process: subprocess.Popen, log: Path, timeout: float = 240) -> tuple[int, str, str]:
    code = process.wait(timeout=timeout)
    return code, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text()


def _epochs_done(home: Path) -> int:
    """Epochs checkpointed, from progress.txt's "steps done/steps"."""
    for progress in home.glob("*/progress.txt"):
        try:
            done, total = progress.read_text().split()[0].split("/")
            return int(done) * EPOCHS // int(total)
        except (OSError, ValueError):
            return 0
    return 0


def _wait_for_epochs(process: subprocess.Popen, home: Path, epochs: int) -> None:
    """Until `epochs` epochs of the run in `home` are checkpointed (the run still going)."""
    deadline = time.monotonic() + 180
    while _epochs_done(home) < epochs:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no checkpoint after 180 s"
        time.sleep(0.005)


@pytest.mark.slow
def test_ctrl_c_interrupts_a_run_started_with_sigint_ignored(tmp_path):
    """`deepscape run … &` from a script starts it with SIGINT ignored (no job control): Ctrl-C
    (kill -INT) must still interrupt it, marked and resumable."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    home = tmp_path / "home"
    process = subprocess.Popen(
        [str(DEEPSCAPE), "run", DIGITS, *INTERRUPTIBLE, "--home", str(home)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )  # fmt: skip
    _wait_for_epochs(process, home, 1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()
    (run,) = RunStore(home).list()
    assert run.status == "interrupted"


def test_ctrl_c_then_resume_ends_exactly_like_an_uninterrupted_run(tmp_path, cli, spawn):
    assert DEEPSCAPE.exists(), f"no console script at {DEEPSCAPE}"
    home, reference_home = tmp_path / "interrupted", tmp_path / "reference"

    # 1. start a run, and the same config uninterrupted beside it (one thread each: 2 cores)
    process = spawn("run", DIGITS, *INTERRUPTIBLE, home=home, log=tmp_path / "first")
    reference = spawn(
        "run", DIGITS, *INTERRUPTIBLE, "--json", home=reference_home, log=tmp_path / "reference"
    )
    # 2. press Ctrl-C once two epochs are checkpointed
    _wait_for_epochs(process, home, 2)
    process.send_signal(signal.SIGINT)
    code, out, err = _finish(process, tmp_path / "first")
    assert code == 130, err

    (run,) = RunStore(home).list()
    summary = run.summary
    assert summary["status"] == "interrupted" and run.status == "interrupted"
    assert summary["resume_with"] == f"deepscape run {DIGITS} --resume {run.id}"
    assert f"resume with: deepscape run {DIGITS} --resume {run.id}" in err
    assert run.checkpoint_path.exists()
    done = _epochs_done(home)
    assert 2 <= done < EPOCHS
    assert [e["epoch"] for e in run.history("epoch")] == list(range(done))  # as checkpointed
    assert "metrics" not in summary

    # 3. a resume may not change the config
    refused = cli("run", DIGITS, "lr=0.1", "--resume", run.id, "--home", str(home))
    _bad_input(refused, "a resumed run keeps its config: drop the key=value overrides")
    assert Run(run.dir).status == "interrupted"

    # 4. resume it to the end
    resumed = spawn(
        "run", DIGITS, "--resume", run.id[-4:], "--json", home=home, log=tmp_path / "resume"
    )
    code, out, err = _finish(resumed, tmp_path / "resume")
    assert code == 0, err
    resumed_report = json.loads(out)
    code, out, err = _finish(reference, tmp_path / "reference")
    assert code == 0, err
    reference_report = json.loads(out)

    assert resumed_report["run_id"] == run.id  # the same run, continued
    assert resumed_report["status"] == reference_report["status"] == "finished"
    for metric in ("test_accuracy", "test_loss", "val_accuracy", "parameters"):
        assert resumed_report["metrics"][metric] == pytest.approx(
            reference_report["metrics"][metric], abs=1e-6
        ), metric
    resumed_run = Run(run.dir)
    reference_run = Run(Path(reference_report["run_dir"]))
    assert untimed(resumed_run.history("epoch")) == untimed(reference_run.history("epoch"))
    assert resumed_run.history("step") == reference_run.history("step")
    assert untimed([resumed_run.summary["best"]]) == untimed([reference_run.summary["best"]])
    assert resumed_run.summary["wall_seconds"] > summary["wall_seconds"]  # time adds up
    assert resumed_run.summary["resume_with"] is None
    assert not resumed_run.checkpoint_path.exists()
    assert len(resumed_run.figures()) == 4
