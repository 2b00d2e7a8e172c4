"""Weights & Biases: every run can also be logged to W&B (`--wandb`); the run store stays the truth.

A tracker subscribes to the run's `log`, so W&B sees every metric as it is recorded; at the end it
uploads the figures, the summary and the weights (as a model artifact), and keeps the W&B run's id
and URL in deepscape's summary. Without a login (or with WANDB_MODE=offline) W&B runs offline
and says how to sync later. Nothing here may fail a run: W&B errors become one warning.
"""

from __future__ import annotations

import netrc
import os
from collections.abc import Callable
from typing import Any

from deepscape.runs import Run

PROJECT = os.environ.get("WANDB_PROJECT", "deepscape")


def logged_in() -> bool:
    """Whether W&B has credentials here (an API key in the environment or in ~/.netrc)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def chosen_mode() -> str:
    mode = os.environ.get("WANDB_MODE", "").lower()
    if mode in ("offline", "disabled", "dryrun"):
        return "offline" if mode == "dryrun" else mode
    return "online" if logged_in() else "offline"


class WandbTracker:
    def __init__(self, run: Run, *, lab: str, warn: Callable[[str], None]):
        self.run, self.warn, self.wandb_run = run, warn, None
        try:
            import wandb

            mode = chosen_mode()
            self.wandb_run = wandb.init(
                project=PROJECT,
                name=run.id,
                # a run started by a sweep agent (`deepscape agent`) is the sweep's: the agent
                # chose its W&B id (WANDB_RUN_ID), which W&B reads when none is given
                id=None if os.environ.get("WANDB_SWEEP_ID") else run.id.replace(".", "-"),
                group=lab,
                config=run.config,
                dir=str(run.dir),
                mode=mode,
                resume="allow",
                settings=wandb.Settings(silent=True, console="off"),
            )
            run.log_listeners.append(self.log)
            info = {"id": self.wandb_run.id, "mode": mode, "project": PROJECT}
            if mode == "offline":
                info["sync_with"] = f"wandb sync {self.wandb_run.dir.rsplit('/files', 1)[0]}"
                warn(
                    f"W&B is offline (no login, or WANDB_MODE=offline): sync later with "
                    f"`{info['sync_with']}`"
                )
            else:
                info["url"] = self.wandb_run.url
            run.update_summary(wandb=info)
        except Exception as error:  # W&B must never fail a run
            self._give_up(error)

    def log(self, record: dict[str, Any]) -> None:
        if self.wandb_run is None:
            return
        try:
            flat = {
                f"{record['kind']}/{k}": v
                for k, v in record.items()
                if k not in ("kind", "update_ratio") and isinstance(v, int | float)
            }
            for name, ratio in record.get("update_ratio", {}).items():
                flat[f"update_ratio/{name}"] = ratio
            self.wandb_run.log(flat, step=int(record.get("step", 0)))
        except Exception as error:
            self._give_up(error)

    def finish(self, status: str) -> None:
        """Upload figures, summary and weights, and close the W&B run."""
        if self.wandb_run is None:
            return
        try:
            import wandb

            figures = {f"figures/{p.stem}": wandb.Image(str(p)) for p in self.run.figures()}
            if figures:
                self.wandb_run.log(figures)
            summary = self.run.summary
            flat = {f"best/{k}": v for k, v in (summary.get("best") or {}).items()}
            flat.update(summary.get("metrics") or {})
            flat["status"] = status
            target = summary.get("target") or {}
            flat["target_reached"] = target.get("reached")
            self.wandb_run.summary.update(flat)
            if self.run.weights_path.exists():
                artifact = wandb.Artifact(
                    f"model-{self.wandb_run.id}",
                    type="model",
                    metadata={"lab": summary["lab"], "run": self.run.id},
                )
                artifact.add_file(str(self.run.weights_path))
                self.wandb_run.log_artifact(artifact)
            self.wandb_run.finish(exit_code=0 if status == "finished" else 1)
        except Exception as error:
            self._give_up(error)
        finally:
            self.wandb_run = None

    def _give_up(self, error: Exception) -> None:
        self.warn(
            f"W&B logging stopped ({type(error).__name__}: {error}); the run goes on, "
            "recorded in the run store as always"
        )
        if self.log in self.run.log_listeners:
            self.run.log_listeners.remove(self.log)
        self.wandb_run = None
