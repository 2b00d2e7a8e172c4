"""The run store: one folder per run, written so that a reader or a crash never sees half a file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest

from deepscape.runs import Run, RunNotFound, RunStore, default_home, write_atomic

DIGITS = "vision/101/digits"


def test_default_home_follows_the_environment(home, monkeypatch):
    assert default_home() == home
    assert RunStore().root == home
    monkeypatch.delenv("DEEPSCAPE_HOME")
    assert default_home().as_posix() == "runs"


def test_create_records_config_and_a_running_summary(store):
    run = store.create(DIGITS, {"lr": 0.1, "model": "mlp"}, target="test_accuracy >= 0.99")
    assert run.dir.parent == store.root
    assert DIGITS.replace("/", "-") in run.id
    assert run.config == {"lr": 0.1, "model": "mlp"}
    summary = run.summary
    assert summary["id"] == run.id
    assert summary["lab"] == DIGITS
    assert summary["status"] == "running"
    assert summary["target"] == "test_accuracy >= 0.99"
    assert summary["process"]["host"] == socket.gethostname()
    assert run.status == "running"  # this very process is alive
    assert not list(run.dir.glob("*.tmp"))


def test_runs_get_distinct_ids_even_within_one_second(store):
    runs = [store.create(DIGITS, {}) for _ in range(20)]
    assert len({r.id for r in runs}) == 20


def test_get_by_id_and_by_unique_fragment(store):
    first = store.create(DIGITS, {})
    second = store.create("vision/101/other", {})
    assert store.get(first.id).dir == first.dir
    assert store.get(first.id[-4:]).dir == first.dir  # the random suffix
    assert store.get("other").dir == second.dir


def test_an_ambiguous_fragment_is_not_a_run(store):
    store.create(DIGITS, {})
    store.create(DIGITS, {})
    with pytest.raises(RunNotFound):
        store.get("digits")


def test_run_not_found_names_the_store_and_suggests(store):
    run = store.create(DIGITS, {})
    with pytest.raises(RunNotFound) as error:
        store.get(run.id[:-1] + "X")
    message = str(error.value)
    assert message.startswith(f"no run '{run.id[:-1]}X' in {store.root}")
    assert f"did you mean '{run.id}'" in message


def test_run_not_found_in_an_empty_store(store):
    with pytest.raises(RunNotFound, match=r"no run 'nope' in .* \(see `deepscape runs`\)"):
        store.get("nope")
    with pytest.raises(RunNotFound):
        store.get("")
    with pytest.raises(RunNotFound):
        store.get("../elsewhere")


def test_list_is_oldest_first_filters_by_lab_and_skips_stray_folders(store, monkeypatch):
    # made in one second, their random suffixes sorting the other way round
    suffixes = iter(["ffff", "8888", "0000"])
    monkeypatch.setattr("deepscape.runs.secrets.token_hex", lambda _: next(suffixes))
    monkeypatch.setattr("deepscape.runs.time.strftime", lambda fmt, *a: "20261202-120000")
    runs = []
    for lab in (DIGITS, "vision/101/x", DIGITS):
        runs.append(store.create(lab, {}))
        time.sleep(0.02)  # file times tick in milliseconds
    (store.root / "not-a-run").mkdir()
    (store.root / "stray.txt").write_text("hi")
    assert [r.id for r in store.list()] == [r.id for r in runs]
    assert {r.id for r in store.list(DIGITS)} == {runs[0].id, runs[2].id}
    assert store.list("vision/201/none") == []


def test_list_of_a_missing_store_is_empty(tmp_path):
    assert RunStore(tmp_path / "nowhere").list() == []


def test_update_summary_merges_and_leaves_no_temporary_file(store):
    run = store.create(DIGITS, {}, target="t")
    returned = run.update_summary(status="finished", metrics={"test_accuracy": 0.9})
    assert returned == run.summary
    assert run.summary["status"] == "finished"
    assert run.summary["target"] == "t"  # untouched keys stay
    assert run.summary["metrics"] == {"test_accuracy": 0.9}
    assert sorted(p.name for p in run.dir.iterdir()) == ["config.json", "summary.json"]


def test_write_atomic_replaces_the_whole_file(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("x" * 1000)
    write_atomic(path, '{"a": 1}')
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(path, b"not text")  # type: ignore[arg-type]
    assert path.read_text() == "old"


def test_logged_records_reach_disk_only_when_committed(store):
    run = store.create(DIGITS, {})
    history_file = run.dir / "history.jsonl"
    run.log({"kind": "step", "step": 0, "loss": 2.0})
    run.log({"kind": "epoch", "epoch": 0})
    assert not history_file.exists()
    assert len(run.history()) == 2  # pending records are visible to this process
    assert Run(run.dir).history() == []  # but not to another reader
    run.commit_history()
    assert len(history_file.read_text().splitlines()) == 2
    assert Run(run.dir).history("step") == [{"kind": "step", "step": 0, "loss": 2.0}]
    assert Run(run.dir).history("epoch") == [{"kind": "epoch", "epoch": 0}]
    run.commit_history()  # nothing pending: nothing appended
    assert len(history_file.read_text().splitlines()) == 2


def test_discarded_records_never_reach_disk(store):
    run = store.create(DIGITS, {})
    run.log({"kind": "step", "step": 0})
    run.commit_history()
    run.log({"kind": "step", "step": 1})
    run.discard_pending()
    assert run.history() == [{"kind": "step", "step": 0}]
    run.commit_history()
    assert Run(run.dir).history() == [{"kind": "step", "step": 0}]


def test_commits_append(store):
    run = store.create(DIGITS, {})
    for step in range(3):
        run.log({"kind": "step", "step": step})
        run.commit_history()
    assert [r["step"] for r in Run(run.dir).history()] == [0, 1, 2]


def test_a_truncated_last_history_line_is_skipped(store):
    run = store.create(DIGITS, {})
    good = [{"kind": "step", "step": 0}, {"kind": "epoch", "epoch": 0}]
    text = "".join(json.dumps(r) + "\n" for r in good)
    (run.dir / "history.jsonl").write_text(text + '{"kind": "step", "st')
    assert Run(run.dir).history() == good
    assert Run(run.dir).history("epoch") == good[1:]


def test_figures_are_the_pngs_of_the_figures_folder(store):
    run = store.create(DIGITS, {})
    assert run.figures() == []
    path = run.figure_path("curves")
    assert path == run.dir / "figures" / "curves.png"
    path.write_bytes(b"png")
    (run.dir / "figures" / "notes.txt").write_text("not a figure")
    assert run.figures() == [path]
    assert run.weights_path == run.dir / "model.safetensors"
    assert run.checkpoint_path == run.dir / "checkpoint.pt"


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_running_run_whose_process_died_is_interrupted(store):
    run = store.create(DIGITS, {})
    run.update_summary(process={"pid": _dead_pid(), "host": socket.gethostname()})
    assert run.summary["status"] == "running"  # the record says running...
    assert run.status == "interrupted"  # ...but nobody is running it


def test_a_run_of_another_machine_is_trusted(store):
    run = store.create(DIGITS, {})
    run.update_summary(process={"pid": _dead_pid(), "host": "some-other-host"})
    assert run.status == "running"


def test_a_run_without_process_record_is_interrupted(store):
    run = store.create(DIGITS, {})
    run.update_summary(process={"host": socket.gethostname()})
    assert run.status == "interrupted"


@pytest.mark.parametrize("status", ["finished", "failed", "interrupted"])
def test_a_recorded_final_status_is_kept(store, status):
    run = store.create(DIGITS, {})
    run.update_summary(status=status, process={"pid": _dead_pid(), "host": socket.gethostname()})
    assert run.status == status
