"""The editor-vs-generator study over arms x seeds: numbers, figure and verdict from the run folders.

A study is an experiment folder with one run per (arm, seed), named `{arm}-s{seed}`, each holding
TensorBoard events (train/loss, val/{benchmark}/abs_rel), `metrics.json` and
`eval/{benchmark}/per_sample.csv` (written by `evaluate`). Nothing is re-run here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.curves import load_scalars
from analysis.stats import curve_area, oscillation, paired_bootstrap, steps_to_threshold, verdict

log = logging.getLogger(__name__)

TOY_SCALE_NOTE = ("Toy scale: miniature priors pretrained on procedural scenes; this result neither confirms "
                  "nor refutes FE2E's editor-vs-generator finding at 12B scale.")


def run_name(arm: str, seed: int) -> str:
    return f"{arm}-s{seed}"


def study_runs(experiment: str | Path, arms: Sequence[str], seeds: Sequence[int]) -> dict[tuple[str, int], Path]:
    """{(arm, seed): run folder}; FileNotFoundError listing every run without metrics.json."""
    runs = {(a, s): Path(experiment) / run_name(a, s) for a in arms for s in seeds}
    missing = [str(p) for p in runs.values() if not (p / "metrics.json").is_file()]
    if missing:
        raise FileNotFoundError(f"study runs without metrics.json (train and evaluate them first): {missing}")
    return runs


def per_image(run: Path, benchmark: str, metric: str = "abs_rel") -> pd.Series:
    """Per-image metric of one run on one benchmark, indexed by sample name (eval/{benchmark}/per_sample.csv)."""
    path = run / "eval" / benchmark / "per_sample.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run `python -m experiments evaluate --checkpoint {run} "
                                f"--benchmarks {benchmark}`)")
    df = pd.read_csv(path)
    if metric not in df.columns or "name" not in df.columns:
        raise ValueError(f"{path}: expected columns 'name' and '{metric}', got {list(df.columns)}")
    return df.set_index("name")[metric]


def paired_matrix(runs: Mapping[tuple[str, int], Path], arm: str, other: str, seeds: Sequence[int],
                  benchmark: str, metric: str = "abs_rel") -> tuple[np.ndarray, np.ndarray]:
    """(seeds, images) arrays of two arms on the images every one of their runs scored (dropped ones logged)."""
    series = {(a, s): per_image(runs[(a, s)], benchmark, metric) for a in (arm, other) for s in seeds}
    common = sorted(set.intersection(*(set(x.index) for x in series.values())))
    total = max(len(x) for x in series.values())
    if len(common) < total:
        log.warning("%s: %d of %d images were not scored by every run of %s and %s; compared on %d",
                    benchmark, total - len(common), total, arm, other, len(common))
    if not common:
        raise ValueError(f"{benchmark}: no image scored by every run of {arm} and {other}")
    a = np.stack([series[(arm, s)].loc[common].to_numpy() for s in seeds])
    b = np.stack([series[(other, s)].loc[common].to_numpy() for s in seeds])
    return a, b


def convergence(runs: Mapping[tuple[str, int], Path], arms: Sequence[str], seeds: Sequence[int],
                primary: str, reference_arm: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-run numbers, per-arm mean and std).

    Per run: curve area and oscillation of train/loss, final val/{primary}/abs_rel, and the first step
    at which its val AbsRel reaches the reference arm's final AbsRel (mean over its seeds).
    """
    scalars = load_scalars({run_name(a, s): p for (a, s), p in runs.items()},
                           tags=["train/loss", f"val/{primary}/abs_rel"])
    rows = []
    for a in arms:
        for s in seeds:
            part = scalars[scalars["run"] == run_name(a, s)]
            loss = part[part["tag"] == "train/loss"].sort_values("step")
            val = part[part["tag"] == f"val/{primary}/abs_rel"].sort_values("step")
            rows.append({"arm": a, "seed": s,
                         "loss_area": curve_area(loss["step"], loss["value"]) if len(loss) > 1 else np.nan,
                         "loss_oscillation": oscillation(loss["value"]) if len(loss) > 2 else np.nan,
                         "final_loss": float(loss["value"].iloc[-1]) if len(loss) else np.nan,
                         "val_abs_rel_final": float(val["value"].iloc[-1]) if len(val) else np.nan,
                         "_val": val})
    per_run = pd.DataFrame(rows)
    threshold = per_run.loc[per_run["arm"] == reference_arm, "val_abs_rel_final"].mean()
    per_run["steps_to_reference"] = [steps_to_threshold(v["step"], v["value"], threshold) if len(v) else np.nan
                                     for v in per_run["_val"]]
    per_run = per_run.drop(columns="_val")
    numeric = per_run.drop(columns=["seed"]).groupby("arm", sort=False)
    summary = numeric.mean().add_suffix("_mean").join(numeric.std(ddof=1).add_suffix("_std"))
    return per_run, summary.loc[list(arms)]


def final_metrics(runs: Mapping[tuple[str, int], Path], arms: Sequence[str], seeds: Sequence[int],
                  benchmarks: Sequence[str]) -> pd.DataFrame:
    """Per arm and benchmark: AbsRel and delta1 (x100) mean and std over seeds, from metrics.json."""
    rows = []
    for a in arms:
        for b in benchmarks:
            vals = {"abs_rel": [], "delta1": []}
            for s in seeds:
                depth = json.loads((runs[(a, s)] / "metrics.json").read_text()).get("depth", {})
                if b not in depth:
                    raise KeyError(f"{runs[(a, s)] / 'metrics.json'}: no depth results for '{b}'")
                for k in vals:
                    vals[k].append(100.0 * depth[b][k])
            rows.append({"arm": a, "benchmark": b,
                         **{f"{k}_mean": float(np.mean(v)) for k, v in vals.items()},
                         **{f"{k}_std": float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for k, v in vals.items()}})
    return pd.DataFrame(rows)


def compute_by_arm(runs: Mapping[tuple[str, int], Path], arms: Sequence[str], seeds: Sequence[int]) -> pd.DataFrame:
    """Per arm: training and evaluation seconds summed over its seeds, and per run (mean), from the
    'cost' entry of each run's metrics.json (NaN where a run has none, or its training was resumed)."""
    rows = []
    for a in arms:
        train, evaluate = [], []
        for s in seeds:
            cost = json.loads((runs[(a, s)] / "metrics.json").read_text()).get("cost", {})
            train.append(np.nan if cost.get("train_resumed") else cost.get("train_seconds", np.nan))
            evaluate.append(cost.get("eval_seconds", np.nan))
        rows.append({"arm": a, "runs": len(seeds), "train_s": float(np.sum(train)), "eval_s": float(np.sum(evaluate)),
                     "train_s_per_run": float(np.mean(train)), "eval_s_per_run": float(np.mean(evaluate))})
    return pd.DataFrame(rows)


def plot_loss_bands(runs: Mapping[tuple[str, int], Path], arms: Sequence[str], seeds: Sequence[int],
                    out_png: str | Path, tag: str = "train/loss") -> Path:
    """Mean over seeds of `tag` per arm, with a min-max band over seeds, against the step."""
    scalars = load_scalars({run_name(a, s): p for (a, s), p in runs.items()}, tags=[tag])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for i, a in enumerate(arms):
        curves = [scalars[(scalars["run"] == run_name(a, s)) & (scalars["tag"] == tag)].set_index("step")["value"]
                  for s in seeds]
        frame = pd.concat(curves, axis=1).sort_index().dropna()
        if frame.empty:
            log.warning("plot_loss_bands: arm %s has no common steps of %s", a, tag)
            continue
        ax.plot(frame.index, frame.mean(axis=1), color=f"C{i}", lw=1.3, label=f"{a} (mean of {len(seeds)} seeds)")
        ax.fill_between(frame.index, frame.min(axis=1), frame.max(axis=1), color=f"C{i}", alpha=0.2)
    ax.set_xlabel("step")
    ax.set_ylabel(tag)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Fine-tuning loss per arm (band: min-max over seeds)")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=120)
    plt.close(fig)
    return out_png


def study_verdict(runs: Mapping[tuple[str, int], Path], seeds: Sequence[int], primary: str,
                  arm: str = "editor", other: str = "generator", n_boot: int = 10_000) -> tuple[str, dict]:
    """The pre-registered verdict (final AbsRel on `primary`, `arm` vs `other`) and its numbers."""
    a, b = paired_matrix(runs, arm, other, seeds, primary)
    diff = paired_bootstrap(a, b, n_boot=n_boot)
    return verdict(diff, arm, other), {"mean": diff.mean, "ci_low": diff.low, "ci_high": diff.high,
                                       "std_error": diff.std_error, "mde": diff.minimal_detectable_effect,
                                       "n_seeds": diff.n_seeds, "n_images": diff.n_images}
