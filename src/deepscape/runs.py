"""The run store: one folder per run, the only state deepscape keeps.

    runs/<run-id>/
        config.json        the resolved config (every knob, after overrides)
        summary.json       status, final and best metrics, target reached?, time, versions, machine
        history.jsonl      one JSON record per training step and per evaluation
        model.safetensors  the trained weights
        checkpoint.pt      the last checkpoint's training state, while a run can still be resumed
        progress.txt       "steps done/steps" at that checkpoint, for people and scripts to poll
        figures/*.png      what happened, drawn

Every whole-file write goes to a temporary file first and is renamed into place, so a reader (or
a crash) never sees half a file. History lines are appended only when a checkpoint is taken (or
the run ends), so on disk the history always matches the checkpoint a resume would start from.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deepscape.config import ConfigError, closest

STATUSES = ("running", "finished", "failed", "interrupted")


class RunNotFound(LookupError):
    """No run with that id in the store."""


class RunConflict(ConfigError):
    """A run to import has the id of a different run already in the store."""


def default_home() -> Path:
    """Where runs live: $DEEPSCAPE_HOME, else ./runs."""
    return Path(os.environ.get("DEEPSCAPE_HOME", "runs"))


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new one, never a mix."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as tmp:
        try:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        except BaseException:
            os.unlink(tmp.name)
            raise
    os.replace(tmp.name, path)


@dataclass
class Run:
    """One run's folder, with the small API the trainer and the labs write through."""

    dir: Path
    show_progress: bool = True  # how this process runs it (a sweep hides per-run bars); not stored
    log_listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list, repr=False)
    _pending: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def config(self) -> dict[str, Any]:
        return json.loads((self.dir / "config.json").read_text())

    def config_as(self, config_type: type) -> Any:
        """The saved config as `config_type` (a lab's Config), keys it no longer has left out;
        a tuple option, which JSON keeps as a list, is a tuple again."""
        known = {f.name: f for f in fields(config_type)}
        return config_type(
            **{
                k: tuple(v) if isinstance(known[k].default, tuple) else v
                for k, v in self.config.items()
                if k in known
            }
        )

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads((self.dir / "summary.json").read_text())

    @property
    def status(self) -> str:
        """The recorded status, or `interrupted` for a run whose process died without saying so."""
        summary = self.summary
        if summary["status"] == "running" and not _process_alive(summary.get("process", {})):
            return "interrupted"
        return summary["status"]

    @property
    def weights_path(self) -> Path:
        return self.dir / "model.safetensors"

    @property
    def checkpoint_path(self) -> Path:
        return self.dir / "checkpoint.pt"

    def figure_path(self, name: str) -> Path:
        (self.dir / "figures").mkdir(exist_ok=True)
        return self.dir / "figures" / f"{name}.png"

    def figures(self) -> list[Path]:
        return sorted((self.dir / "figures").glob("*.png"))

    def update_summary(self, **changes: Any) -> dict[str, Any]:
        summary = {**self.summary, **changes}
        write_atomic(self.dir / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary

    # -- metric history -------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        """Record metrics (kept in memory until `commit_history`; listeners see them at once)."""
        self._pending.append(record)
        for listener in self.log_listeners:
            listener(record)

    def commit_history(self) -> None:
        """Append the records logged since the last commit to history.jsonl."""
        if self._pending:
            with open(self.dir / "history.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in self._pending)
                f.flush()
                os.fsync(f.fileno())
            self._pending.clear()

    def keep_history(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Rewrite history.jsonl with only the committed records that `keep` accepts."""
        records = [r for r in self.history() if keep(r)]
        write_atomic(self.dir / "history.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def discard_pending(self) -> None:
        """Forget records logged after the last checkpoint (a resume will redo them)."""
        self._pending.clear()

    def evaluations(self) -> list[dict[str, Any]]:
        """The records of evaluations on validation: one per epoch, or every `eval_every` steps
        for a run counted in steps."""
        return self.history("epoch") or self.history("eval")

    def history(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Committed and pending records, optionally only those of one kind (`step`, `epoch`)."""
        path = self.dir / "history.jsonl"
        records = []
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash: the rest is intact
                    continue
        records += self._pending
        return [r for r in records if kind is None or r.get("kind") == kind]


def _creation_order(folder: Path) -> tuple[str, int]:
    """A run folder's name starts with the second it was made in; within one second (tiny runs
    on a fast machine) its config, written once when it was made, says which came first."""
    try:
        made = (folder / "config.json").stat().st_mtime_ns
    except OSError:
        made = 0
    return folder.name[: len("YYYYmmdd-HHMMSS")], made


class RunStore:
    """The folder of runs: create, find, list."""

    def __init__(self, root: Path | str | None = None):
        self.root = Path(root) if root is not None else default_home()

    def create(self, lab_id: str, config: dict[str, Any], **summary: Any) -> Run:
        self.root.mkdir(parents=True, exist_ok=True)
        slug = lab_id.replace("/", "-")
        while True:  # the random suffix makes clashes rare; mkdir makes them impossible
            run_dir = self.root / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{secrets.token_hex(2)}"
            try:
                run_dir.mkdir()
                break
            except FileExistsError:
                continue
        write_atomic(run_dir / "config.json", json.dumps(config, indent=2))
        write_atomic(
            run_dir / "summary.json",
            json.dumps(
                {
                    "id": run_dir.name,
                    "lab": lab_id,
                    "status": "running",
                    "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "process": current_process(),
                    **summary,
                },
                indent=2,
                default=str,
            ),
        )
        return Run(run_dir)

    def get(self, run_id: str) -> Run:
        run_dir = self.root / run_id
        if run_id and "/" not in run_id and (run_dir / "summary.json").exists():
            return Run(run_dir)
        ids = [r.id for r in self.list()]
        matches = [i for i in ids if run_id and run_id in i]
        if len(matches) == 1:  # a unique fragment of an id is enough
            return Run(self.root / matches[0])
        hint = closest(run_id, ids) or " (see `deepscape runs`)"
        raise RunNotFound(f"no run '{run_id}' in {self.root}{hint}")

    def list(
        self,
        lab: str | None = None,
        *,
        sweep: str | None = None,
        status: str | None = None,
        where: dict[str, str] | None = None,
    ) -> list[Run]:
        """Runs, oldest first; optionally only those of a lab, a sweep, a status, or whose config
        has each `where` key at that value (compared as text, so lr=0.01 matches 0.01)."""
        if not self.root.is_dir():
            return []
        folders = [d for d in self.root.iterdir() if (d / "summary.json").exists()]
        runs = [Run(d) for d in sorted(folders, key=_creation_order)]
        selected = []
        for run in runs:
            summary = run.summary
            if lab is not None and summary["lab"] != lab:
                continue
            if sweep is not None and (summary.get("sweep") or {}).get("id") != sweep:
                continue
            if status is not None and run.status != status:
                continue
            if where and not all(_same(run.config.get(k), v) for k, v in where.items()):
                continue
            selected.append(run)
        return selected

    def import_runs(self, folders: list[Path]) -> tuple[list[str], list[str]]:
        """Copy runs recorded elsewhere (another machine's store) into this one; returns the ids
        imported and those skipped because this store already holds them, byte for byte. Each
        folder is a run's folder or a store of runs. Nothing is copied when any run's id is
        taken here by a different run."""
        found = []
        for folder in map(Path, folders):
            if (folder / "summary.json").exists():
                found.append(folder)
            elif folder.is_dir() and (runs := RunStore(folder).list()):
                found += [run.dir for run in runs]
            else:
                raise RunNotFound(f"{folder} is neither a run's folder nor a folder of runs")
        new, same = [], []
        for source in found:
            here = self.root / source.name
            if not here.exists():
                new.append(source)
            elif _same_files(source, here):
                same.append(source.name)
            else:
                raise RunConflict(
                    f"run {source.name} is already in {self.root} with other content: "
                    "delete one of the two (deepscape runs delete) and import again"
                )
        self.root.mkdir(parents=True, exist_ok=True)
        for source in new:  # copied aside, then renamed: never a half-copied run in the store
            aside = self.root / f".importing-{source.name}"
            shutil.copytree(source, aside / source.name, dirs_exist_ok=True)
            os.replace(aside / source.name, self.root / source.name)
            aside.rmdir()
        return [source.name for source in new], same

    def delete(self, run: Run) -> None:
        """Remove a run's folder (renamed first, so a half-deleted run never looks like a run)."""
        trash = self.root / f".deleting-{run.id}"
        os.replace(run.dir, trash)
        shutil.rmtree(trash)


def _same_files(a: Path, b: Path) -> bool:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    return files(a) == files(b)


def _same(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return str(value).lower() == text.lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(text)
        except ValueError:
            return False
    return str(value) == text


def current_process() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname()}


def machine() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def _process_alive(process: dict[str, Any]) -> bool:
    if process.get("host") != socket.gethostname():
        return True  # another machine's run: we cannot tell, so trust its record
    try:
        os.kill(int(process["pid"]), 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
