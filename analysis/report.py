"""One call per result artefact, from run folders to files under results/ (used by the CLI / Makefile)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from analysis import curves, features, tables, writers

logger = logging.getLogger(__name__)

BUILDERS = {"depth": tables.depth_table, "normal": tables.normal_table, "ablation": tables.ablation_table}


def write_table(kind: str, run_dirs: Sequence[str | Path], out_dir: str | Path,
                published: bool = True) -> dict[str, Path]:
    """Build the `kind` table ('depth', 'normal' or 'ablation') from the runs' metrics.json files and
    write `{out_dir}/{kind}.md`, `.csv` and `.tex`. published=False leaves the paper's rows out.
    Returns {"md": path, "csv": path, "tex": path}."""
    if kind not in BUILDERS:
        raise ValueError(f"write_table: kind must be one of {sorted(BUILDERS)}, got {kind!r}")
    rows = tables.load_metrics(run_dirs)
    df = BUILDERS[kind](rows, published_csv=tables.PUBLISHED_CSV if published else None)
    out = Path(out_dir)
    paths = {"md": out / f"{kind}.md", "csv": out / f"{kind}.csv", "tex": out / f"{kind}.tex"}
    writers.to_markdown(df, path=paths["md"])
    writers.to_csv(df, path=paths["csv"])
    writers.to_latex(df, path=paths["tex"], label=f"tab:{kind}")
    logger.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def _metas(runs: Mapping[str, str | Path]) -> dict[str, dict]:
    metas = {}
    for label, run_dir in runs.items():
        path = Path(run_dir) / "metrics.json"
        if path.is_file():
            metas[label] = tables.load_metrics([path])[0].get("meta", {})
        else:
            logger.warning("%s missing: the plot footnote says '?' for run '%s'", path, label)
            metas[label] = {}
    return metas


def write_loss_plot(runs: Mapping[str, str | Path], out_png: str | Path, tag: str = "train/loss",
                    inset_epochs: float = 2, smoothing: float = 0.0, title: str | None = None,
                    steps_per_epoch: float | None = None) -> Path:
    """Loss curves of {label: run folder} over epochs, footnoted with what each run ran on (its meta)."""
    df = curves.load_scalars(runs, tags=[tag, "epoch"])
    return curves.plot_loss_curves(df, out_png, tag=tag, inset_epochs=inset_epochs, smoothing=smoothing,
                                   title=title or f"{tag}: " + " vs ".join(runs), runs=list(runs),
                                   footnote=curves.run_footnote(_metas(runs)), steps_per_epoch=steps_per_epoch)


def write_feature_figure(runs: Mapping[str, str | Path], out_png: str | Path,
                         blocks: Sequence[str] | None = None) -> Path:
    """Feature-norm figure (first and last epoch of each run) from the FeatureProbe snapshots."""
    entries = features.load_feature_entries(runs, blocks=blocks)
    title = "per-token L2 norm of block outputs (each panel min-max normalised); " + curves.run_footnote(_metas(runs))
    return features.plot_feature_grid(entries, out_png, title=title)


def cost_table(runs: Mapping[str, str | Path]):
    """DataFrame, one row per run: trainable parameters, training milliseconds per sample and inference
    milliseconds per image, from the 'cost' entry `train` and `evaluate` write into metrics.json (NaN where
    missing; a resumed training call is not per-sample comparable and is left NaN)."""
    import math

    import pandas as pd

    rows = []
    for label, run_dir in runs.items():
        cost = tables.load_metrics([run_dir])[0].get("cost", {})
        train = (1000 * cost["train_seconds"] / cost["train_samples"]
                 if cost.get("train_samples") and not cost.get("train_resumed") else math.nan)
        infer = 1000 * cost["eval_seconds"] / cost["eval_images"] if cost.get("eval_images") else math.nan
        rows.append({"run": label, "trainable_parameters": cost.get("trainable_parameters", math.nan),
                     "train_ms_per_sample": train, "inference_ms_per_image": infer})
    return pd.DataFrame(rows)
