"""A whole `train` command vs the bare training loop of the same model, on the study's embedded default.

    python -m experiments.bench.train [--epochs 10] [--repeats 2] [--base DIR] [--threads 1]

The configuration is the one `make ablation-editor-vs-t2i` trains for its 'editor' arm on the embedded
default (TRAIN_CONFIGS + TRAIN_OVERRIDES, seed 0), over --epochs (30 = the study's length; it
validates on KITTI every 5 epochs and at the last one), every process on --threads torch threads (1,
as the study's runs on the embedded default). Each repeat measures, interleaved:

- whole train: wall seconds of a `python -m experiments train` subprocess (interpreter start-up,
  imports, config, model build, data loading, training, validation at its cadence, checkpoints,
  metrics files) over its optimizer steps (read back from the run's FINISHED.json);
- bare loop: in a fresh subprocess, the same backbone and objective built from the same config,
  forward + loss + backward + gradient clipping (the config's 1.0) + AdamW step + LR schedule on the
  VAE latents of one epoch's batches, encoded once before the clock starts; no Lightning, no data
  loading, no validation. Seconds per step over all steps after one warm-up step;
- start-up: wall seconds of `python -m experiments --help` and `python -m experiments train --help`;
- evaluate: wall seconds of `python -m experiments evaluate --checkpoint RUN --benchmarks kitti,eth3d` on
  the run just trained, beside its test loop's own seconds (`cost.eval_seconds` in the run's
  metrics.json: data, model and scoring from the loop's start to the metrics written); the rest is
  start-up (interpreter, imports, config, model build, checkpoint load).

CPU seconds (user + system, all threads) are reported beside wall seconds: on a shared machine other
jobs stretch wall time far more than CPU time.

With --base DIR (a checkout of another commit holding data/ and the same configs, e.g. a worktree of
main), the whole train and the start-up are also measured on DIR's code in the same repeats, so
before/after figures share the machine's load. Prints the median of each figure, the whole/bare
ratio (the target: at most 2), and per-repeat before/after ratios. Runs go to a temporary folder
that is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from experiments import thread_policy

thread_policy.apply_defaults()  # the same OpenMP wait policy as the CLI, before torch loads

ROOT = Path(__file__).resolve().parents[2]
TRAIN_CONFIGS = ("experiments/configs/ablation/editor_vs_t2i/mini/editor.yaml", "experiments/configs/data/synthetic.yaml")
"""The editor arm of the miniature study on the procedural scenes (Makefile: ablation-editor-vs-t2i)."""
TRAIN_OVERRIDES = ("trainer.devices=1", "trainer.num_nodes=1", "trainer.strategy=auto", "trainer.precision=32-true",
                   "seed=0", "data.seed=0", "backbone.seed=0", "trainer.enable_progress_bar=false")
"""The Makefile's TRAIN_OVR and seed 0 (the progress bar off: it only costs terminal output here)."""


def train_command(epochs: int, runs_dir: str, run: str) -> list[str]:
    """argv of the `train` command this bench times."""
    args = [sys.executable, "-m", "experiments", "train"]
    for path in TRAIN_CONFIGS:
        args += ["--config", path]
    return args + [*TRAIN_OVERRIDES, f"trainer.max_epochs={epochs}", f"runs_dir={runs_dir}", f"run={run}",
                   "existing_run=retrain"]


def children_cpu() -> float:
    """CPU seconds (user + system) of this process's finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_whole_train(code_root: Path, epochs: int, runs_dir: str, run: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, optimizer steps) of one `train` command run in `code_root`."""
    start, cpu = time.perf_counter(), children_cpu()
    proc = subprocess.run(train_command(epochs, runs_dir, run), cwd=code_root, capture_output=True, text=True)
    seconds, cpu = time.perf_counter() - start, children_cpu() - cpu
    if proc.returncode != 0:
        raise RuntimeError(f"train in {code_root} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    finished = Path(runs_dir) / "ablation-editor-vs-t2i" / run / "FINISHED.json"
    return seconds, cpu, int(json.loads(finished.read_text())["steps"])


EVAL_BENCHMARKS = "kitti,eth3d"
"""What the timed `evaluate` scores (the issue's row: `evaluate` kitti+eth3d on the default)."""


def time_evaluate(code_root: Path, runs_dir: str, run: str) -> tuple[float, float]:
    """(wall seconds of `python -m experiments evaluate` of the trained run `run` on EVAL_BENCHMARKS, run in
    `code_root`; the seconds of its test loop, from the run's metrics.json cost.eval_seconds)."""
    run_dir = Path(runs_dir) / "ablation-editor-vs-t2i" / run
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "experiments", "evaluate", "--checkpoint", str(run_dir),
                           "--benchmarks", EVAL_BENCHMARKS], cwd=code_root, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"evaluate in {code_root} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, float(json.loads((run_dir / "metrics.json").read_text())["cost"]["eval_seconds"])


def time_help(code_root: Path, argv: list[str]) -> float:
    """Wall seconds of `python -m experiments ARGV` (a --help call) run in `code_root`."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "experiments", *argv], cwd=code_root, capture_output=True, check=True)
    return time.perf_counter() - start


def commit_of(root: Path) -> str:
    """Short commit of the checkout at `root` (+ '-dirty' with uncommitted changes to tracked files)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def bare_loop(epochs: int) -> dict:
    """Entry of the bare-loop child: the model of the whole train, trained without Lightning.

    Returns {"steps": timed steps, "seconds": their wall time, "cpu": their CPU time (all threads),
    "loss": the last loss}.
    """
    import lightning as L
    import torch

    from experiments.config import load_experiment
    from experiments.datasets import build_datamodule
    from experiments.runner import build_module
    from lightning_modules.optim import build_optimizer

    cfg = load_experiment([str(ROOT / p) for p in TRAIN_CONFIGS],
                          [*TRAIN_OVERRIDES, f"trainer.max_epochs={epochs}", "evaluation.benchmarks=[]"])
    L.seed_everything(cfg.seed)
    module = build_module(cfg)
    module.configure_model()
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    batches = list(datamodule.train_dataloader())
    gen = torch.Generator().manual_seed(cfg.seed)
    latents = [module.encode_batch(batch, gen, sample=True) for batch in batches]  # cached in memory
    params = [p for p in module.parameters() if p.requires_grad]
    total = epochs * len(batches)
    optim = build_optimizer(params, cfg.optim, total)
    opt, sched = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    clip = cfg.trainer.gradient_clip_val  # module modes as built, as Lightning leaves them

    def step(i: int) -> float:
        losses = module.objective.loss(module.backbone, latents[i % len(latents)], generator=gen)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()
        sched.step()
        return float(losses["loss"].detach())

    step(0)  # warm-up: allocator, thread pool, optimizer state
    start, cpu = time.perf_counter(), time.process_time()
    loss = 0.0
    for i in range(1, total):
        loss = step(i)
    return {"steps": total - 1, "seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu,
            "loss": loss}


def time_bare(epochs: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, steps) of the bare loop in a fresh child process."""
    proc = subprocess.run([sys.executable, "-m", "experiments.bench.train", "--child-bare", "--epochs", str(epochs)],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bare loop failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out["seconds"], out["cpu"], out["steps"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="training epochs of the timed runs (the study: 30)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats of every measurement")
    parser.add_argument("--base", default=None, help="checkout of another commit to time the same way ('before')")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of every timed process (OMP_NUM_THREADS); 1 = what the study's runs use "
                             "on the embedded default (Makefile STUDY_THREADS)")
    parser.add_argument("--child-bare", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_bare:
        print(json.dumps(bare_loop(args.epochs)))
        return
    if args.epochs < 1 or args.repeats < 1 or args.threads < 1:
        parser.error("--epochs, --repeats and --threads must be >= 1")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by every child: whole train, bare loop, --help
    roots = {"now": ROOT}
    if args.base:
        base = Path(args.base).resolve()
        if not (base / "experiments" / "__main__.py").is_file():
            parser.error(f"--base {base}: not a checkout of this project (no experiments/__main__.py)")
        roots = {"base": base, "now": ROOT}
    helps = {"--help": ["--help"], "train --help": ["train", "--help"]}
    rows: dict[str, list[float]] = {}
    print(f"whole `train` of {TRAIN_CONFIGS[0]} on the embedded default, {args.epochs} epochs, "
          f"{args.threads} torch thread(s); load average at start {os.getloadavg()[0]:.2f}", flush=True)
    for label, root in roots.items():
        print(f"  {label}: {root} at {commit_of(root)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        for r in range(args.repeats):
            for label, root in roots.items():
                for name, hargv in helps.items():
                    rows.setdefault(f"{label} {name} s", []).append(time_help(root, hargv))
                seconds, cpu, steps = time_whole_train(root, args.epochs, tmp, f"{label}-r{r}")
                rows.setdefault(f"{label} whole train s/step", []).append(seconds / steps)
                rows.setdefault(f"{label} whole train cpu/step", []).append(cpu / steps)
                print(f"  repeat {r}: {label} whole train {steps} steps in {seconds:.1f} s "
                      f"({steps / seconds:.2f} steps/s; CPU {cpu:.1f} s)", flush=True)
                seconds, loop = time_evaluate(root, tmp, f"{label}-r{r}")
                rows.setdefault(f"{label} evaluate s", []).append(seconds)
                rows.setdefault(f"{label} evaluate loop s", []).append(loop)
                print(f"  repeat {r}: {label} evaluate {EVAL_BENCHMARKS} {seconds:.1f} s, its test loop {loop:.1f} s",
                      flush=True)
            seconds, cpu, steps = time_bare(args.epochs)
            rows.setdefault("bare loop s/step", []).append(seconds / steps)
            rows.setdefault("bare loop cpu/step", []).append(cpu / steps)
            print(f"  repeat {r}: bare loop {steps} steps in {seconds:.1f} s ({steps / seconds:.2f} steps/s; "
                  f"CPU {cpu:.1f} s)", flush=True)
    med = {key: statistics.median(values) for key, values in rows.items()}
    bare, bare_cpu = med["bare loop s/step"], med["bare loop cpu/step"]
    print(f"\nmedians over {args.repeats} repeats (load average at end {os.getloadavg()[0]:.2f}):")
    print(f"  bare loop (forward+backward+clip+AdamW on cached latents): {1 / bare:.2f} steps/s "
          f"({bare_cpu * 1e3:.0f} ms CPU per step)")
    for label in roots:
        whole, whole_cpu = med[f"{label} whole train s/step"], med[f"{label} whole train cpu/step"]
        per_repeat = [w / b for w, b in zip(rows[f"{label} whole train s/step"], rows["bare loop s/step"])]
        print(f"  {label}: whole train {1 / whole:.2f} steps/s, whole / bare = {whole / bare:.2f}x wall time "
              f"(target <= 2; per repeat " + ", ".join(f"{x:.2f}x" for x in per_repeat) + f"), "
              f"{whole_cpu / bare_cpu:.2f}x CPU time; --help {med[f'{label} --help s']:.2f} s, train --help "
              f"{med[f'{label} train --help s']:.2f} s")
        total, loop = med[f"{label} evaluate s"], med[f"{label} evaluate loop s"]
        print(f"  {label}: evaluate {EVAL_BENCHMARKS} {total:.1f} s, its test loop {loop:.1f} s: "
              f"{100 * (total - loop) / total:.0f}% start-up")
    if "base" in roots:
        for key, what in (("whole train s/step", "whole train, wall"), ("whole train cpu/step", "whole train, CPU"),
                          ("--help s", "--help"), ("train --help s", "train --help"),
                          ("evaluate s", f"evaluate {EVAL_BENCHMARKS}")):
            ratios = [b / n for b, n in zip(rows[f"base {key}"], rows[f"now {key}"])]
            print(f"  base / now, {what}: per repeat " + ", ".join(f"{x:.2f}x" for x in ratios)
                  + f" (median {statistics.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
