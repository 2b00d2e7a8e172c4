"""Sweeps, comparisons and run filters: the experiment manager."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepscape.cli import app
from deepscape.compare import comparison
from deepscape.labs.vision.l101_digits import Config
from deepscape.runs import RunStore
from deepscape.sweep import Choices, Range, Sweep, SweepError, parse_spec, run_sweep

DIGITS = "vision/101/digits"
TINY = ["model=linear", "epochs=1", "threads=1"]  # a run of about a second


def spec(*items: str, **kwargs):
    return parse_spec(DIGITS, Config, list(items), **kwargs)


def cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


# -- the spec ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("items", "kwargs", "message"),
    [
        (["lrr=1,2"], {}, "unknown config key 'lrr' in 'lrr=1,2' — did you mean 'lr'?"),
        (["lr="], {}, "'lr=': empty value in the list"),
        (["lr=0.1,,0.2"], {}, "'lr=0.1,,0.2': empty value in the list"),
        (["lr=0.1,abc"], {}, "lr='abc' is not a float"),
        (["model=cnn,cnnn"], {}, "did you mean 'cnn'"),
        (["epochs=1,2.5"], {}, "epochs='2.5' is not an int"),
        (["lr=1..0.1"], {"random_draws": 2}, "the low end must be below the high end"),
        (["lr=a..b"], {"random_draws": 2}, "a range is LOW..HIGH[:log|:int], e.g. 1e-4..1e-1:log"),
        (["lr=0..1:log"], {"random_draws": 2}, "a log range must stay above 0"),
        (["lr=1e-4..1:cubic"], {"random_draws": 2}, "scale 'cubic' must be linear, log or int"),
        (["model=a..b"], {"random_draws": 2}, "ranges are for numbers"),
        (["lr=1e-4..1:log"], {}, "ranges need --random N"),
        (["lr=0.1,0.2", "lr=0.3,0.4"], {}, "'lr' is given twice"),
        (["seed=1,2"], {}, "--seeds K"),
        (["lr"], {}, "'lr' is not key=values"),
        (["lr=0.1,0.2"], {"seeds": 0}, "--seeds 0: need at least 1"),
    ],
)
def test_every_bad_spec_is_refused_naming_the_bad_part(items, kwargs, message):
    with pytest.raises(SweepError) as error:
        spec(*items, **kwargs)
    assert message in str(error.value)


def test_grid_plan_crosses_values_and_seeds_and_keeps_fixed_values():
    result = spec("lr=0.1,0.01", "model=mlp,cnn", "epochs=3", seeds=2)
    assert result.params == {"lr": Choices((0.1, 0.01)), "model": Choices(("mlp", "cnn"))}
    assert result.fixed == ("epochs=3",)
    plan = result.plan()
    assert len(plan) == 2 * 2 * 2
    assert {(p["lr"], p["model"], p["seed"]) for p in plan} == {
        (lr, m, s) for lr in (0.1, 0.01) for m in ("mlp", "cnn") for s in (0, 1)
    }


def test_random_plan_draws_inside_the_ranges_the_same_way_every_time():
    result = spec("lr=1e-4..1e-1:log", "width=16..256:int", "model=mlp,cnn", random_draws=20)
    assert result.params["lr"] == Range(1e-4, 1e-1, "log")
    plan = result.plan()
    assert len(plan) == 20 and plan == result.plan()
    assert all(1e-4 <= p["lr"] <= 1e-1 for p in plan)
    assert all(isinstance(p["width"], int) and 16 <= p["width"] <= 256 for p in plan)
    assert {p["model"] for p in plan} == {"mlp", "cnn"}
    # log-uniform: about as many draws below 3e-3 (the geometric middle) as above
    assert 5 <= sum(p["lr"] < 3.16e-3 for p in plan) <= 15


def test_a_spec_survives_its_json_record():
    result = spec("lr=1e-4..1e-1:log", "model=mlp,cnn", "epochs=2", random_draws=3, seeds=2)
    from deepscape.sweep import SweepSpec

    assert SweepSpec.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_a_sweep_of_nothing_is_refused(store):
    result = cli("sweep", "digits", "epochs=3")
    assert result.exit_code == 2 and "nothing to sweep" in result.stderr


def test_a_bad_spec_starts_no_run(store):
    result = cli("sweep", "digits", "lr=0.1,abc")
    assert result.exit_code == 2 and "lr='abc' is not a float" in result.stderr
    assert store.list() == [] and not (store.root / "sweeps").exists()


# -- running sweeps ------------------------------------------------------------------------------
def test_a_tiny_sweep_end_to_end(store, home):
    result = cli(
        "sweep", "digits", "model=linear,mlp", "epochs=2", "threads=1", "--seeds", "2", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total"] == 4 and report["finished"] == 4 and report["failed"] == 0
    runs = store.list(sweep=report["sweep_id"])
    assert len(runs) == 4 and all(r.status == "finished" for r in runs)
    assert sorted((r.config["model"], r.config["seed"]) for r in runs) == [
        ("linear", 0),
        ("linear", 1),
        ("mlp", 0),
        ("mlp", 1),
    ]
    assert report["best"] == max(r.summary["metrics"]["test_accuracy"] for r in runs)
    for figure in report["figures"]:  # curves and metric-vs-parameter, in the sweep's folder
        assert Path(figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert Path(figure).parent.name == report["sweep_id"]
    assert len(report["figures"]) == 2


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(store):
    sweep = Sweep.create(
        store,
        spec("lr=1e6,1e-2", "optimizer=sgd", "schedule=constant", "warmup=0", *TINY),
    )
    progress = run_sweep(sweep, store)
    assert (progress.done, progress.failed) == (1, 1)
    statuses = {run.config["lr"]: run.status for run in sweep.runs(store).values()}
    assert statuses == {1e6: "failed", 1e-2: "finished"}
    assert "TrainingDiverged" in store.list(status="failed")[0].summary["error"]


def test_resume_runs_only_what_is_left(store, monkeypatch):
    import deepscape.sweep as sweep_module

    sweep = Sweep.create(store, spec("lr=1e-3,3e-3,1e-2", *TINY))
    real, calls = sweep_module._run_one, []

    def stop_after_the_first(*args):
        if calls:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(sweep_module, "_run_one", stop_after_the_first)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, store)
    (first,) = sweep.runs(store).values()
    assert first.status == "finished"
    monkeypatch.setattr(sweep_module, "_run_one", real)

    result = cli("sweep", "--resume", sweep.id, "--json")
    assert result.exit_code == 0, result.output
    runs = sweep.runs(store)
    assert len(runs) == 3 and len(store.list()) == 3  # the finished run was not redone
    assert runs[0].id == first.id
    assert sorted(r.config["lr"] for r in runs.values()) == [1e-3, 3e-3, 1e-2]


def test_an_interrupted_run_of_a_sweep_is_resumed_from_its_checkpoint(store):
    sweep = Sweep.create(store, spec("lr=1e-3,1e-2", "model=linear", "epochs=3", "threads=1"))
    plan = sweep.spec.plan()
    # a run of place 0 that was interrupted after its first checkpoint
    from deepscape.lab import run_lab
    from deepscape.loop import Loop
    from deepscape.sweep import overrides_for

    checkpoint = Loop.checkpoint

    def interrupt(self):
        checkpoint(self)
        raise KeyboardInterrupt

    Loop.checkpoint = interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            run_lab(
                DIGITS,
                overrides_for(sweep.spec, plan[0], 1),
                store=store,
                show_progress=False,
                tags={"sweep": {"id": sweep.id, "index": 0}},
                notify=lambda m: None,
            )
    finally:
        Loop.checkpoint = checkpoint
    (interrupted,) = store.list()
    assert interrupted.status == "interrupted"
    run_sweep(sweep, store)
    runs = sweep.runs(store)
    assert runs[0].id == interrupted.id and runs[0].status == "finished"
    assert len(store.list()) == 2


@pytest.mark.slow
def test_concurrent_sweeps_and_a_run_share_one_store_intact(tmp_path):
    """Two sweeps (one with two worker processes) and a single run write to one store at once;
    afterwards every run is there, finished, with a whole config, summary and history."""
    home = tmp_path / "shared-store"
    deepscape = str(Path(sys.executable).parent / "deepscape")
    env_home = ["--home", str(home)]
    commands = [
        [
            deepscape,
            "sweep",
            "digits",
            "lr=1e-3,3e-3,1e-2",
            *TINY,
            "--jobs",
            "2",
            "--json",
            *env_home,
        ],
        [deepscape, "sweep", "digits", "lr=2e-3,5e-3", *TINY, "--json", *env_home],
        [deepscape, "run", "digits", *TINY, "--json", *env_home],
    ]
    processes = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    first, second, single = (json.loads(stdout) for stdout, _ in outputs)
    store = RunStore(home)
    runs = store.list()
    assert len(runs) == 3 + 2 + 1
    assert {r.id for r in store.list(sweep=first["sweep_id"])} == set(first["runs"])
    assert {r.id for r in store.list(sweep=second["sweep_id"])} == set(second["runs"])
    assert single["run_id"] in {r.id for r in runs}
    for run in runs:
        assert run.status == "finished"
        assert run.config["epochs"] == 1 and 0 <= run.summary["metrics"]["test_accuracy"] <= 1
        assert len(run.history("epoch")) == 1
        assert run.weights_path.stat().st_size > 0


# -- comparing -------------------------------------------------------------------------------------
@pytest.fixture
def three_runs(store):
    from deepscape.lab import run_lab

    return [
        run_lab(DIGITS, [*TINY, f"lr={lr}"], store=store, show_progress=False)
        for lr in (1e-3, 3e-2, 1e-2)
    ]


def test_comparison_keeps_only_what_differs_and_sorts_by_the_target(three_runs):
    result = comparison(three_runs)
    assert result.keys == ["lr"] and result.metric == "test_accuracy"
    accuracies = [row["test_accuracy"] for row in result.rows]
    assert accuracies == sorted(accuracies, reverse=True)
    assert {row["lr"] for row in result.rows} == {1e-3, 3e-2, 1e-2}


def test_compare_cli_table_json_and_png(three_runs, home):
    ids = [r.id for r in three_runs]
    table = cli("compare", *ids)
    assert table.exit_code == 0 and "best test_accuracy first" in table.stdout
    assert "lr" in table.stdout and ids[0].rsplit("-", 1)[-1] in table.stdout
    report = json.loads(cli("compare", *ids, "--json").stdout)
    assert report["keys"] == ["lr"] and len(report["rows"]) == 3
    assert report["figures"] == []
    drawn = json.loads(cli("compare", *ids, "--png", "--json").stdout)["figures"]
    assert len(drawn) == 2 and all(Path(f).stat().st_size > 10_000 for f in drawn)


def test_compare_unknown_id_is_a_one_line_error():
    result = cli("compare", "no-such-thing")
    assert result.exit_code == 2
    assert "'no-such-thing' is neither a run nor a sweep" in result.stderr


# -- runs: filters and delete ---------------------------------------------------------------------
def test_runs_filters_by_status_and_config(three_runs, store):
    report = json.loads(cli("runs", "--where", "lr=0.01", "--json").stdout)
    assert [r["id"] for r in report] == [three_runs[2].id]
    assert json.loads(cli("runs", "--status", "failed", "--json").stdout) == []
    assert len(json.loads(cli("runs", "--status", "finished", "--json").stdout)) == 3
    bad = cli("runs", "--status", "finishd")
    assert bad.exit_code == 2 and "did you mean 'finished'" in bad.stderr


def test_runs_delete_needs_confirmation_and_removes_only_what_it_names(three_runs, store):
    refused = cli("runs", "delete", three_runs[0].id)
    assert refused.exit_code == 2 and "add --yes" in refused.stderr
    assert len(store.list()) == 3
    done = cli("runs", "delete", three_runs[0].id, "--yes")
    assert done.exit_code == 0 and "Deleted 1 run." in done.stdout
    assert [r.id for r in store.list()] == [r.id for r in three_runs[1:]]
    by_filter = cli("runs", "delete", "--where", "lr=0.03", "--yes")
    assert by_filter.exit_code == 0 and [r.id for r in store.list()] == [three_runs[2].id]
    nothing = cli("runs", "delete", "--yes")
    assert nothing.exit_code == 2 and "name the runs to delete" in nothing.stderr


def test_a_relative_path_is_a_value_not_a_range():
    from deepscape.labs.language.l101_sentence_cnn import Config

    spec = parse_spec(
        "language/101/sentence-cnn", Config, ["data_dir=../data/sentclf", "lr=1e-3,3e-3"]
    )
    assert spec.fixed == ("data_dir=../data/sentclf",)
