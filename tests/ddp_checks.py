"""One rank of the suite's single 2-process DDP launch (a script, not a test module).

tests/conftest.py (fixture `ddp_results`) starts this script twice, as `torchrun` or a cluster scheduler
would on a multi-node job: each process gets MASTER_ADDR, MASTER_PORT, WORLD_SIZE=2, RANK, LOCAL_RANK,
NODE_RANK=0 in its environment, so Lightning sees externally launched processes (strategy "ddp",
devices=2: it creates the gloo group from that environment and launches nothing). Each rank then runs
every check of the spec in order, on the same process group, and rewrites {out_dir}/rank{RANK}.json
after each one: {name: {"result": ...}} or {name: {"error": traceback}}. A failing check stops its rank
(exit code 1) so that the other rank's next collective fails instead of pairing with the wrong check.

Check kinds:
  validate    Trainer.validate of a config; result: the logged metrics {key: float}
  fit         Trainer.fit of a config for 2 steps; result: finished, global_step, train/loss
  metrics     tests/metrics/ddp_worker.py: this rank's shard of 7 images scored with synced metrics
  dispersive  tests/objectives/dispersive_ddp_worker.py: gathered dispersive loss and averaged gradients

Usage: python tests/ddp_checks.py SPEC.json   (the environment above must be set)
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

STARTED = time.perf_counter()
TESTS = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS.parent), str(TESTS / "metrics"), str(TESTS / "objectives")]
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP, as tests/conftest.py

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402


def _trainer(**extra):
    import lightning as L

    return L.Trainer(accelerator="cpu", devices=2, num_nodes=1, strategy="ddp", logger=False,
                     enable_progress_bar=False, use_distributed_sampler=False, enable_model_summary=False, **extra)


def _config(check: dict):
    from experiments.config import CONFIG_DIR, load_experiment

    return load_experiment([CONFIG_DIR / c for c in check["configs"]], check["overrides"])


def run_validate(check: dict) -> dict:
    from experiments.datasets import build_datamodule
    from experiments.runner import build_module, build_scorer

    cfg = _config(check)
    results = _trainer(callbacks=[build_scorer(cfg)]).validate(build_module(cfg), datamodule=build_datamodule(cfg),
                                                               verbose=False)
    return {k: float(v) for r in results for k, v in r.items()}


def run_fit(check: dict) -> dict:
    from experiments.datasets import build_datamodule
    from experiments.runner import build_module, build_scorer

    cfg = _config(check)
    trainer = _trainer(max_steps=2, limit_val_batches=0, enable_checkpointing=False, callbacks=[build_scorer(cfg)])
    trainer.fit(build_module(cfg), datamodule=build_datamodule(cfg))
    loss = trainer.callback_metrics.get("train/loss")
    return {"finished": bool(trainer.state.finished), "global_step": int(trainer.global_step),
            "train/loss": None if loss is None else float(loss)}


def _ensure_group() -> None:
    """The group Lightning created for an earlier check, or one from the same environment (env://)."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="env://")


def run_metrics(check: dict) -> dict:
    import ddp_worker

    _ensure_group()
    return ddp_worker.rank_result(dist.get_rank())


def run_dispersive(check: dict) -> dict:
    import dispersive_ddp_worker

    _ensure_group()
    return dispersive_ddp_worker.rank_result(dist.get_rank(), dist.get_world_size())


RUNNERS = {"validate": run_validate, "fit": run_fit, "metrics": run_metrics, "dispersive": run_dispersive}


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ["RANK"])
    torch.set_num_threads(1)
    out = Path(spec["out_dir"]) / f"rank{rank}.json"
    done: dict[str, dict] = {}
    code = 0
    for check in spec["checks"]:
        start = time.perf_counter()
        try:
            result = RUNNERS[check["kind"]](check)
            done[check["name"]] = {"result": result}
        except Exception:
            done[check["name"]] = {"error": traceback.format_exc()}
            code = 1
        out.write_text(json.dumps(done))
        print(f"[ddp_checks rank {rank}] {check['name']}: {'failed' if code else 'done'} in "
              f"{time.perf_counter() - start:.2f} s ({time.perf_counter() - STARTED:.2f} s since start)", flush=True)
        if code:
            break
    if dist.is_initialized():
        dist.destroy_process_group()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
