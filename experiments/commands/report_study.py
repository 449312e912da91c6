"""`report-study`: the editor-vs-generator study over arms x seeds: verdict, numbers, curves, probe.

Writes into --out: report.md (verdict first), summary.json, runs.csv, loss_curves.png, and
tensorboard/ (per-arm mean loss with a min-max band over seeds: TensorBoard's custom-scalar
'Margin' charts). Prints the verdict line.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("experiment", help="folder of the study's runs ({arm}-s{seed}), e.g. runs/ablation-editor-vs-t2i")
    parser.add_argument("--arms", default="random,generator,editor,editor-norelight", help="comma-separated arms")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated fine-tuning seeds")
    parser.add_argument("--primary", default="kitti", help="benchmark of the pre-registered primary metric (AbsRel)")
    parser.add_argument("--benchmarks", default="kitti,nyuv2,eth3d", help="benchmarks of the final-metrics table")
    parser.add_argument("--compare", default="editor,generator", help="the verdict's two arms, A,B (A - B)")
    parser.add_argument("--reference", default="random", help="arm whose final AbsRel defines 'steps to reach'")
    parser.add_argument("--probe", action="store_true", help="ridge-probe the mini-{arm} presets before fine-tuning")
    parser.add_argument("--priors", default=None, help="folder of the miniature priors (default: the shipped ones)")
    parser.add_argument("--out", required=True, help="results folder, e.g. results/ablation-editor-vs-t2i")


def _markdown(df, digits: int = 4) -> str:
    """Markdown table with floats to `digits` significant digits (the study's numbers are small)."""
    from analysis.writers import to_markdown

    def cell(v):
        return f"{v:.{digits}g}" if isinstance(v, float) and v == v else v

    return to_markdown(df.map(cell) if hasattr(df, "map") else df.applymap(cell))


def prior_gates(arms: list[str], folder: str | None) -> dict[str, str]:
    """{arm: 'prior formed (ratio r)' | 'prior not formed (ratio r)' | 'no prior' }, from the provenance files."""
    from lightning_modules.backbones.tiny import MINI_PRIOR_DIR

    gates = {}
    for arm in arms:
        path = Path(folder or MINI_PRIOR_DIR) / f"mini_prior_{arm}.json"
        if arm == "random" or not path.is_file():
            gates[arm] = "no prior (random init)" if arm == "random" else f"no provenance at {path}"
            continue
        info = json.loads(path.read_text())
        ratio = info["held_out"]["ratio"]
        gates[arm] = f"prior {'formed' if info['gate']['formed'] else 'NOT formed'} (held-out loss / mean predictor {ratio:.3f})"
    return gates


def write_tensorboard_bands(runs, arms, seeds, out: Path) -> None:
    """Per arm: study/{arm}/loss_mean, _min, _max over seeds at each step, charted as a Margin band."""
    import pandas as pd
    from torch.utils.tensorboard import SummaryWriter

    from analysis.curves import load_scalars
    from analysis.study import run_name

    scalars = load_scalars({run_name(a, s): p for (a, s), p in runs.items()}, tags=["train/loss"])
    writer = SummaryWriter(str(out))
    layout = {}
    for a in arms:
        frame = pd.concat([scalars[scalars["run"] == run_name(a, s)].set_index("step")["value"] for s in seeds],
                          axis=1).sort_index().dropna()
        for step, row in frame.iterrows():
            for stat, value in (("mean", row.mean()), ("min", row.min()), ("max", row.max())):
                writer.add_scalar(f"study/{a}/loss_{stat}", float(value), int(step))
        layout[a] = ["Margin", [f"study/{a}/loss_mean", f"study/{a}/loss_min", f"study/{a}/loss_max"]]
    writer.add_custom_scalars({"fine-tuning loss (band over seeds)": layout})
    writer.close()


def run(args: argparse.Namespace) -> None:
    from analysis.study import (
        TOY_SCALE_NOTE,
        compute_by_arm,
        convergence,
        final_metrics,
        plot_loss_bands,
        study_runs,
        study_verdict,
    )

    arms = [a for a in args.arms.split(",") if a]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    arm_a, arm_b = args.compare.split(",")
    for name in (arm_a, arm_b, args.reference):
        if name not in arms:
            raise ValueError(f"--compare/--reference: arm '{name}' is not in --arms {arms}")
    if len(seeds) < 3:
        log.warning("only %d seed(s): the verdict needs at least 3 to say anything about seed variation", len(seeds))
    runs = study_runs(args.experiment, arms, seeds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    line, numbers = study_verdict(runs, seeds, args.primary, arm_a, arm_b)
    per_run, summary = convergence(runs, arms, seeds, args.primary, args.reference)
    finals = final_metrics(runs, arms, seeds, args.benchmarks.split(","))
    compute = compute_by_arm(runs, arms, seeds)
    plot_loss_bands(runs, arms, seeds, out / "loss_curves.png")
    write_tensorboard_bands(runs, arms, seeds, out / "tensorboard")
    gates = prior_gates(arms, args.priors)
    probe = None
    if args.probe:
        probe = probe_arms(arms, args.priors)
    per_run.to_csv(out / "runs.csv", index=False)
    report = [f"# Editor vs generator: {len(arms)} arms x {len(seeds)} seeds", "",
              f"**Verdict (pre-registered: final AbsRel on procedural {args.primary}, paired bootstrap 95% CI over "
              f"seeds x images):** {line}", "", TOY_SCALE_NOTE, "", "## Priors", ""]
    report += [f"- {a}: {g}" for a, g in gates.items()]
    report += ["", "## Final metrics (x100, mean and std over seeds)", "", _markdown(finals), "",
               f"## Convergence (train/loss; steps to reach {args.reference}'s final {args.primary} AbsRel)", "",
               _markdown(summary.reset_index()), ""]
    report += ["## Compute (seconds in each run's process: training; evaluation on the benchmarks)", "",
               _markdown(compute), ""]
    if probe is not None:
        report += ["## Linear probe before fine-tuning (held-out R^2, target tokens -> per-token log depth)", "",
                   _markdown(probe.reset_index()), ""]
    (out / "report.md").write_text("\n".join(report))
    (out / "summary.json").write_text(json.dumps({"verdict": line, "primary": args.primary, **numbers,
                                                  "gates": gates, "arms": arms, "seeds": seeds,
                                                  "compute_seconds": compute.set_index("arm")[["train_s", "eval_s"]]
                                                  .to_dict(orient="index")}, indent=2))
    print(line)


def probe_arms(arms: list[str], priors: str | None):
    """DataFrame (arm x block) of held-out probe R^2 for the mini-{arm} presets, before fine-tuning."""
    import pandas as pd

    from experiments.probe import probe_backbone, probe_scenes
    from lightning_modules.backbones import BackboneConfig, build_backbone

    rgb, depth = probe_scenes()
    rows = {}
    for arm in arms:
        cfg = BackboneConfig(name=f"mini-{arm}", finetune="full", dit_dtype="float32", weights=priors)
        rows[arm] = probe_backbone(build_backbone(cfg).eval(), rgb, depth)
    return pd.DataFrame(rows).T.rename_axis("arm")
