"""What `train` does with a run folder that already exists: keep, resume, or move aside and retrain.

Nothing here deletes a file. A run is *finished* when `FINISHED.json` (written last by `train`)
exists; its *resolved config* is its config.yaml minus the keys that only steer this decision
(`RUN_CONTROL_KEYS`), with the protocol table's pre-move path (older runs) read as the packaged
table. The policy is the config key `existing_run`:

- 'refuse'  an existing run is an error (what a hand-typed `train` does without resume=...);
- 'keep'    (Make) unchanged config + finished -> keep it, train nothing; unchanged + unfinished
            -> resume from checkpoints/last.ckpt; changed config -> move aside, train fresh;
- 'retrain' (Make's FORCE=1) move aside, train fresh.

Moving aside renames `{run}` to the sibling `{run}.replaced-{YYYYmmdd-HHMMSS}` (a counter is
appended if that exists too); `is_replaced_run` lets folder scans skip those.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from datamodules.benchmarks.protocol import is_legacy_protocol_file
from experiments.config import ExperimentConfig
from experiments.config_loading import to_yaml
from lightning_modules.files import write_json_atomic

log = logging.getLogger(__name__)

FINISHED_FILE = "FINISHED.json"
RUN_CONTROL_KEYS = ("resume", "overwrite", "existing_run")
"""Config keys that say how to start, not what to train: ignored when comparing configs."""
SPEED_KEYS = ("data.sample_cache_mb", "data.latent_cache_mb")
"""Dotted config keys that change how fast a run trains, never what it computes (the caches are
exact): ignored when comparing configs, so runs trained before they existed are kept."""
REPLACED_TAG = ".replaced-"


@dataclass(frozen=True)
class RunPlan:
    """The decision for one `train` call.

    action: 'fresh' (train from scratch), 'resume' (from `checkpoint`) or 'keep' (train nothing).
    moved_to: where an old run was moved, or None. reason: one line for the log.
    """

    action: str
    checkpoint: Path | None = None
    moved_to: Path | None = None
    reason: str = ""


def is_replaced_run(name: str) -> bool:
    """True for the folder name of a run that was moved aside by a retrain."""
    return REPLACED_TAG in name


def holds_run(run_dir: Path) -> bool:
    """True when `run_dir` exists and is not empty."""
    return run_dir.is_dir() and any(run_dir.iterdir())


def comparable_config(yaml_text: str) -> dict:
    """The resolved config as a plain dict without RUN_CONTROL_KEYS (ValueError if not YAML)."""
    try:
        data = OmegaConf.to_container(OmegaConf.create(yaml_text), resolve=True)
    except Exception as err:  # omegaconf/yaml errors: the caller names the file
        raise ValueError(str(err)) from None
    if not isinstance(data, dict):
        raise ValueError("not a mapping")
    for key in RUN_CONTROL_KEYS:
        data.pop(key, None)
    evaluation = data.get("evaluation")
    if isinstance(evaluation, dict) and is_legacy_protocol_file(evaluation.get("protocol_file")):
        evaluation["protocol_file"] = None  # older runs froze the packaged table's pre-move path: the same table
    for dotted in SPEED_KEYS:
        *parents, leaf = dotted.split(".")
        section = data
        for name in parents:
            section = section.get(name) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(leaf, None)
    return data


def config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (sorted)."""
    out = []
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def changed_keys(cfg: ExperimentConfig) -> list[str] | None:
    """Keys whose value differs from the run folder's config.yaml; None when that file is missing or unreadable."""
    path = cfg.run_dir / "config.yaml"
    if not path.is_file():
        return None
    try:
        old = comparable_config(path.read_text())
    except (OSError, ValueError):
        return None
    return config_differences(old, comparable_config(to_yaml(cfg)))


def move_aside(run_dir: Path) -> Path:
    """Rename `run_dir` to a free sibling `{name}.replaced-{timestamp}[-k]`; returns the new path."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}{REPLACED_TAG}{stamp}")
    k = 1
    while target.exists():
        k += 1
        target = run_dir.with_name(f"{run_dir.name}{REPLACED_TAG}{stamp}-{k}")
    run_dir.rename(target)
    return target


def plan_run(cfg: ExperimentConfig) -> RunPlan:
    """Decide what to do with cfg.run_dir (no side effects); see the module docstring.

    Raises FileExistsError under policy 'refuse' when the folder holds a run.
    """
    run_dir = cfg.run_dir
    if not holds_run(run_dir):
        return RunPlan("fresh", reason=f"{run_dir} is new")
    policy = "retrain" if cfg.overwrite else cfg.existing_run
    if policy == "refuse":
        raise FileExistsError(
            f"{run_dir} already holds a run: resume it with resume=last, or pass existing_run=keep (keep it if "
            "finished, resume it if not) or existing_run=retrain (move it aside and start fresh)")
    if policy == "retrain":
        return RunPlan("fresh", reason="existing_run=retrain")
    changed = changed_keys(cfg)
    if changed is None:
        return RunPlan("fresh", reason=f"{run_dir}/config.yaml is missing or unreadable")
    if changed:
        return RunPlan("fresh", reason="the config changed: " + ", ".join(changed[:8])
                       + (" ..." if len(changed) > 8 else ""))
    if (run_dir / FINISHED_FILE).is_file():
        return RunPlan("keep", reason=f"{run_dir} is finished and its config is unchanged")
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        return RunPlan("resume", checkpoint=last, reason=f"{run_dir} is unfinished: resuming from {last}")
    return RunPlan("fresh", reason=f"{run_dir} is unfinished and has no checkpoint yet")


def apply_plan(cfg: ExperimentConfig, plan: RunPlan) -> RunPlan:
    """Carry out the only side effect a plan has: moving an old run aside before a fresh start."""
    if plan.action != "fresh" or not holds_run(cfg.run_dir):
        return plan
    moved = move_aside(cfg.run_dir)
    log.warning("%s: %s; the old run was moved (not deleted) to %s", cfg.run_dir, plan.reason, moved)
    return RunPlan("fresh", moved_to=moved, reason=plan.reason)


def mark_finished(cfg: ExperimentConfig, steps: int) -> Path:
    """Write {run}/FINISHED.json (steps, time): a later 'keep' keeps this run."""
    return write_json_atomic(cfg.run_dir / FINISHED_FILE,
                             {"steps": int(steps), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
