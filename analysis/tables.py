"""Result tables: our `metrics.json` rows beside the published rows of SPEC sections 8-10, ranked together.

Units in every table DataFrame are the DISPLAY units: AbsRel, delta1 and the normal "% below"
fractions are multiplied by 100 (metrics.json stores fractions); normal mean/median/RMSE stay in
degrees. Published values (analysis/published.csv) are already in these units.

Ranking (`average_rank`): each metric column is ranked over the rows of the table with
`pandas.Series.rank(method="average")` (ties share the mean of their ranks); a missing/NaN cell is
EXCLUDED from that column's ranking (it neither takes nor shifts a rank); a row's average rank is the
mean over the columns it has. The tables rank values rounded to the one decimal they display, so
equal printed numbers tie. Published avg ranks come from the paper's larger tables and are shown
separately as "rank (paper)"; "rank" is recomputed over the rows shown.

The writers (markdown / CSV / LaTeX in `analysis.writers`) mark published rows with a dagger and
print a caption saying what OUR rows ran on (backbone, data, steps), so a smoke-scale table cannot
be mistaken for the paper's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.writers import to_csv, to_latex, to_markdown  # noqa: F401  (re-exported)

logger = logging.getLogger(__name__)

PUBLISHED_CSV = Path(__file__).resolve().parent / "published.csv"

DEPTH_DATASETS = {"nyuv2": "NYUv2", "kitti": "KITTI", "eth3d": "ETH3D", "scannet": "ScanNet", "diode": "DIODE"}
NORMAL_DATASETS = {
    "nyuv2_normal": "NYUv2",
    "scannet_normal": "ScanNet",
    "ibims_normal": "iBims-1",
    "sintel_normal": "Sintel",
}
# metric key -> (column label, better direction, factor from metrics.json to display units)
DEPTH_METRICS = {"abs_rel": ("AbsRel", "lower", 100.0), "delta1": ("delta1", "higher", 100.0)}
NORMAL_METRICS = {
    "mean": ("mean", "lower", 1.0),
    "median": ("median", "lower", 1.0),
    "rmse": ("rmse", "lower", 1.0),
    "a5": ("<5", "higher", 100.0),
    "a7_5": ("<7.5", "higher", 100.0),
    "a11_25": ("<11.25", "higher", 100.0),
    "a22_5": ("<22.5", "higher", 100.0),
    "a30": ("<30", "higher", 100.0),
}
ABLATION_FLAGS = ("cv", "fs", "dl", "je")
# backbone preset -> the ablation table's foundation (used to find a run's row id)
FOUNDATION = {"step1x-edit": "Step1X-Edit", "tiny-editor": "Step1X-Edit", "flux-dev": "FLUX", "tiny-generator": "FLUX"}


def average_rank(df: pd.DataFrame, columns: Mapping[str, str]) -> pd.Series:
    """Mean per-row rank over `columns` ({column: "lower"|"higher"}, which values are better).

    Rank 1 is best. Ties share the mean rank (method="average"). NaN cells are excluded from their
    column's ranking; a row's result is the mean over the columns where it has a value (NaN if none).
    """
    ranks = {}
    for col, better in columns.items():
        if col not in df.columns:
            raise KeyError(f"average_rank: column '{col}' not in table (have {list(df.columns)})")
        if better not in ("lower", "higher"):
            raise ValueError(f"average_rank: column '{col}' direction must be 'lower' or 'higher', got {better!r}")
        values = pd.to_numeric(df[col], errors="coerce")
        ranks[col] = values.rank(method="average", ascending=(better == "lower"), na_option="keep")
    return pd.DataFrame(ranks, index=df.index).mean(axis=1, skipna=True)


def load_published(path: str | Path = PUBLISHED_CSV) -> pd.DataFrame:
    """The long-format published table: one row per (table, method, dataset, metric), values as printed."""
    df = pd.read_csv(path, dtype={"id": str}, keep_default_na=False, na_values=[""])
    need = {"table", "method", "dataset", "metric", "value", "source"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: expected columns {sorted(need)}, got {list(df.columns)}")
    return df


def load_metrics(run_dirs: Iterable[str | Path]) -> list[dict]:
    """Read `metrics.json` from each run folder (or a path to the file itself)."""
    rows = []
    for run_dir in run_dirs:
        path = Path(run_dir)
        path = path / "metrics.json" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: metrics.json not found (expected runs/<experiment>/<run>/metrics.json)")
        with open(path) as f:
            rows.append(json.load(f))
    return rows


def _meta(row: Mapping, index: int) -> dict:
    meta = row.get("meta")
    if not isinstance(meta, Mapping) or "method" not in meta:
        raise ValueError(f"metrics row {index}: expected a 'meta' dict with at least 'method', got {meta!r}")
    return dict(meta)


def _label(meta: Mapping) -> str:
    return str(meta.get("label") or (f"{meta['method']} ({meta['run']})" if meta.get("run") else meta["method"]))


def describe_run(meta: Mapping) -> str:
    """'backbone=..., data=..., steps=...' from a metrics.json meta dict ('?' where a key is missing)."""
    return f"backbone={meta.get('backbone', '?')}, data={meta.get('data', '?')}, steps={meta.get('steps', '?')}"


def ran_on(rows: Iterable[Mapping]) -> str:
    """Caption fragment: what each of our rows ran on (backbone, data, steps)."""
    parts, synthetic = [], False
    for i, row in enumerate(rows):
        meta = _meta(row, i)
        synthetic |= meta.get("data") == "synthetic"
        parts.append(f"{_label(meta)}: {describe_run(meta)}")
    if not parts:
        return "No rows of ours."
    text = "Our rows ran on - " + "; ".join(parts) + "."
    if synthetic:
        text += " SMOKE SCALE (synthetic data): not comparable with the published rows."
    return text


def _wide_published(table: str, metric_cols: dict[tuple[str, str], str], path) -> pd.DataFrame:
    pub = load_published(path)
    pub = pub[pub["table"] == table]
    out = []
    for method, grp in pub.groupby("method", sort=False):
        first = grp.iloc[0]
        rec = {"method": method, "published": True, "source": first["source"]}
        for key in ("train_data", "id", "foundation", "q", *ABLATION_FLAGS):
            if key in grp.columns:
                rec[key] = "" if pd.isna(first[key]) else str(first[key])
        for (dataset, metric), col in metric_cols.items():
            hit = grp[(grp["dataset"] == dataset) & (grp["metric"] == metric)]
            rec[col] = float(hit["value"].iloc[0]) if len(hit) else np.nan
        hit = grp[grp["metric"] == "avg_rank"]
        rec["rank (paper)"] = float(hit["value"].iloc[0]) if len(hit) else np.nan
        out.append(rec)
    return pd.DataFrame(out)


def ablation_config(meta: Mapping, published_csv: str | Path | None = PUBLISHED_CSV) -> dict:
    """A run's ablation-table cells {id, foundation, cv, fs, dl, je, q} from its metrics.json meta.

    Flags come from meta["objective"] (kind == "consistent_velocity" -> CV; fixed_start under CV ->
    FS; dispersive_weight > 0 -> DL; joint_estimation -> JE), overridden by explicit meta keys
    cv/fs/dl/je; q from meta "q" or "quantization"; foundation is the backbone name. id is
    meta["ablation_id"], else the published row (1-9) with the same flags, q and foundation family
    (FOUNDATION), else "" (logged).
    """
    obj = meta.get("objective") or {}
    cv = obj.get("kind") == "consistent_velocity"
    flags = {"cv": cv, "fs": cv and bool(obj.get("fixed_start")), "dl": float(obj.get("dispersive_weight") or 0) > 0,
             "je": bool(obj.get("joint_estimation"))}
    for flag in ABLATION_FLAGS:
        if flag in meta:
            flags[flag] = meta[flag] in (True, "x")
    cfg = {k: "x" if v else "" for k, v in flags.items()}
    cfg["q"] = str(meta.get("q") or meta.get("quantization") or "")
    cfg["foundation"] = str(meta.get("foundation") or meta.get("backbone") or "")
    cfg["id"] = str(meta.get("ablation_id") or "")
    if not cfg["id"] and published_csv is not None:
        pub = load_published(published_csv)
        pub = pub[pub["table"] == "ablation"].drop_duplicates("id").fillna("")
        family = FOUNDATION.get(cfg["foundation"], cfg["foundation"])
        hit = pub[(pub["foundation"] == family) & (pub["q"] == cfg["q"])]
        for flag in ABLATION_FLAGS:
            hit = hit[hit[flag] == cfg[flag]]
        if len(hit) == 1:
            cfg["id"] = str(hit["id"].iloc[0])
        else:
            logger.info("%s: no ablation row matches %s, id left empty", meta.get("run", "?"), cfg)
    return cfg


def _ours(rows, task: str, metric_cols: dict[tuple[str, str], str], factors: dict[str, float]) -> pd.DataFrame:
    out = []
    for i, row in enumerate(rows):
        meta = _meta(row, i)
        results = row.get(task) or {}
        source = f"ours: {describe_run(meta)}"
        rec = {"method": _label(meta), "published": False, "source": source, "train_data": meta.get("data", "")}
        rec.update(ablation_config(meta))
        missing = 0
        for (dataset, metric), col in metric_cols.items():
            value = (results.get(dataset) or {}).get(metric)
            missing += value is None
            rec[col] = np.nan if value is None else float(value) * factors[metric]
        if missing:
            logger.warning("%s: %d of %d %s cells missing, shown as '-'", rec["method"], missing, len(metric_cols), task)
        out.append(rec)
    return pd.DataFrame(out)


def _build(rows, task, table, datasets, metrics, keep, front, rank, published_csv):
    metric_cols = {(d, m): f"{datasets[d]} {metrics[m][0]}" for d in datasets for m in keep}
    factors = {m: metrics[m][2] for m in keep}
    rows = list(rows)
    parts = [_wide_published(table, metric_cols, published_csv)] if published_csv is not None else []
    parts.append(_ours(rows, task, metric_cols, factors))
    df = pd.concat([p for p in parts if len(p)], ignore_index=True)
    cols = list(metric_cols.values())
    if rank:
        directions = {col: metrics[m][1] for (d, m), col in metric_cols.items()}
        df["rank"] = average_rank(df[cols].astype(float).round(1), directions)
    tail = ["rank", "rank (paper)"] if rank else []
    df = df.reindex(columns=front + cols + tail + ["published", "source"])
    df["published"] = df["published"].astype(bool)
    if rank and df["rank (paper)"].isna().all():
        df = df.drop(columns=["rank (paper)"])
    caption = ran_on(rows)
    if df["published"].any():
        sources = "; ".join(dict.fromkeys(df.loc[df["published"], "source"]))
        caption += f" {chr(8224)} published: {sources}."
    if rank:
        caption += " rank: average rank over the metric columns, recomputed over the rows shown (missing cells excluded)"
        caption += "; rank (paper): the paper's, over its larger table." if "rank (paper)" in df else "."
    df.attrs["caption"] = caption
    return df


def depth_table(rows: Iterable[Mapping], published_csv: str | Path | None = PUBLISHED_CSV,
                metrics: tuple[str, ...] = ("abs_rel", "delta1")) -> pd.DataFrame:
    """Zero-shot depth table (x100) over NYUv2/KITTI/ETH3D/ScanNet/DIODE with avg rank over all cells.

    rows: metrics.json dicts. published_csv=None leaves the published rows out. The caption is in
    `df.attrs["caption"]`.
    """
    return _build(rows, "depth", "depth", DEPTH_DATASETS, DEPTH_METRICS, metrics, ["method", "train_data"], True,
                  published_csv)


def normal_table(rows: Iterable[Mapping], published_csv: str | Path | None = PUBLISHED_CSV,
                 metrics: tuple[str, ...] = ("mean", "a11_25")) -> pd.DataFrame:
    """Zero-shot normal table (mean error in degrees, % below 11.25 deg) with avg rank.

    Published rows only have mean and <11.25; extra `metrics` are NaN for them (excluded from ranks).
    """
    return _build(rows, "normal", "normal", NORMAL_DATASETS, NORMAL_METRICS, metrics, ["method"], True, published_csv)


def ablation_table(rows: Iterable[Mapping], published_csv: str | Path | None = PUBLISHED_CSV) -> pd.DataFrame:
    """KITTI and ETH3D AbsRel/delta1 (x100) for the ablation rows, published rows 1-9 as reference.

    Our rows' configuration and id come from their meta (see `ablation_config`). Sorted by id, the
    published row first, rows without an id last; no rank column (the paper's ablation has none).
    """
    datasets = {k: DEPTH_DATASETS[k] for k in ("kitti", "eth3d")}
    front = ["id", "method", "foundation", *ABLATION_FLAGS, "q"]
    df = _build(rows, "depth", "ablation", datasets, DEPTH_METRICS, ("abs_rel", "delta1"), front, False,
                published_csv)
    caption = df.attrs["caption"]
    df[front] = df[front].fillna("").astype(str)
    order = pd.to_numeric(df["id"], errors="coerce").fillna(np.inf)
    df = df.assign(_o=order, _p=~df["published"]).sort_values(["_o", "_p"], kind="stable")
    df = df.drop(columns=["_o", "_p"]).rename(columns={k: k.upper() for k in (*ABLATION_FLAGS, "q")})
    df = df.reset_index(drop=True)
    df.attrs["caption"] = caption
    return df
