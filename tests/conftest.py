"""Suite-wide fixtures: one small procedural data root (every real on-disk format) per session, and the
session's one 2-process DDP launch whose results the multi-process tests assert on."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP: experiments/thread_policy.py

import pytest  # noqa: E402
import torch  # noqa: E402

# OMP_NUM_THREADS when set (`make test`: 1 per pytest-xdist process, 2 without xdist), else up to 2
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory):
    """A data root written by the 'test' preset: hypersim/, vkitti/ (64x192, no KB crop), eval/."""
    from experiments.synthetic_data import write_synthetic_root

    return write_synthetic_root(tmp_path_factory.mktemp("synthetic"), "test", seed=0)


@pytest.fixture(scope="session")
def data_overrides(synthetic_root):
    """key=value overrides pointing an experiment at the session's synthetic root, at test sizes."""
    r = synthetic_root
    return [
        f"data.hypersim_root={r}/hypersim", f"data.vkitti_root={r}/vkitti", "data.vkitti_crop=null",
        "data.vkitti_scenes=[Scene02]", "data.height=48", "data.width=64", "data.vkitti_height=48",
        "data.vkitti_width=144", "data.batch_size=2", "data.num_workers=0", "data.batches_per_epoch=2",
        f"data.vkitti_normal_cache_dir={r}/cache", f"evaluation.root={r}/eval", "evaluation.input_scale=0.125",
        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "trainer.log_every_n_steps=1",
    ]


# ---- the suite's one 2-process DDP launch ---------------------------------------------------------------------
# Every multi-process check runs in ONE launch of 2 worker processes (tests/ddp_checks.py), started as torchrun
# or a multi-node scheduler starts them (externally, with MASTER_ADDR/MASTER_PORT/WORLD_SIZE/RANK/LOCAL_RANK/
# NODE_RANK), so Lightning's externally-launched path is what is tested and each worker imports torch/Lightning
# once for all checks. Name -> (kind, config files under experiments/configs, extra overrides, asserted by).
DDP_CHECKS = {
    **{f"{method}_{kind}": (kind, [f"{method}.yaml"], ["evaluation.benchmarks=[kitti,nyuv2_normal]"],
                            "lightning_modules/test_module_ddp.py")
       for method in ("fe2e", "genpercept") for kind in ("validate", "fit")},
    "noise_start_validate": ("validate", ["ablation/editor_vs_t2i/editor.yaml",
                                          "ablation/editor_vs_t2i/direct_adapt.yaml"],
                             ["evaluation.benchmarks=[kitti]", "objective.num_inference_steps=2",
                              "evaluation.image_latent=sample"], "lightning_modules/test_module_ddp.py"),
    "merge_fit": ("fit", ["merge.yaml"], ["objective.num_inference_steps=2", "evaluation.benchmarks=[kitti]",
                                          "features.blocks=[]"], "lightning_modules/test_merge_module.py"),
    "metric_shards": ("metrics", [], [], "metrics/test_ddp.py"),
    "dispersive_gather": ("dispersive", [], [], "objectives/test_dispersive.py"),
}
DDP_TIMEOUT_S = 300  # the whole launch; a few seconds of work plus two imports of torch/Lightning


class DdpLaunch:
    """Two worker processes running every DDP_CHECKS entry, writing into `out_dir`; started once per test
    session (under pytest-xdist: once for all xdist workers, see `ddp_results`), waited for on first use.

    `DdpLaunch.start` launches them and a thread that waits for both and writes out_dir/done.json
    ({"returncodes": [...], "timed_out": bool}; killing them after DDP_TIMEOUT_S); `DdpLaunch.attach`
    reads a launch another process started. Either side reads results only once done.json exists."""

    def __init__(self, out_dir, spec: dict):
        from pathlib import Path

        self.out_dir = Path(out_dir)
        self.specs = {c["name"]: c for c in spec["checks"]}
        self.deadline = spec["deadline"]  # time.time() after which the launch is killed
        self.procs, self._results, self._done = [], None, None

    @classmethod
    def start(cls, out_dir, data_overrides) -> DdpLaunch:
        import socket
        import subprocess
        import sys
        import threading
        import time
        from pathlib import Path

        out_dir = Path(out_dir)
        spec = {"out_dir": str(out_dir), "deadline": time.time() + DDP_TIMEOUT_S, "checks": [
            {"name": name, "kind": kind, "configs": configs,
             "overrides": [*data_overrides, f"runs_dir={out_dir / 'runs' / name}", *extra]}
            for name, (kind, configs, extra, _) in DDP_CHECKS.items()]}
        launch = cls(out_dir, spec)
        (out_dir / "spec.json").write_text(json.dumps(spec))  # read by the workers (and by `attach`)
        with socket.socket() as s:  # a free port for the rendezvous (rank 0 listens on it)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        script = Path(__file__).with_name("ddp_checks.py")
        for rank in range(2):
            env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
                   "RANK": str(rank), "LOCAL_RANK": str(rank), "NODE_RANK": "0", "OMP_NUM_THREADS": "1"}
            with open(out_dir / f"rank{rank}.log", "wb") as log:
                launch.procs.append(subprocess.Popen([sys.executable, str(script), str(out_dir / "spec.json")],
                                                     cwd=script.parent.parent, env=env, stdout=log,
                                                     stderr=subprocess.STDOUT))
        threading.Thread(target=launch._reap, daemon=True).start()
        return launch

    @classmethod
    def attach(cls, out_dir) -> DdpLaunch:
        from pathlib import Path

        return cls(out_dir, json.loads((Path(out_dir) / "spec.json").read_text()))

    def _reap(self) -> None:
        """Wait for both workers (killing them at the deadline), then write done.json."""
        import subprocess
        import time

        timed_out = False
        for p in self.procs:
            try:
                p.wait(timeout=max(1.0, self.deadline - time.time()))
            except subprocess.TimeoutExpired:
                timed_out = True
                for q in self.procs:
                    q.kill()
                    q.wait()
        done = {"returncodes": [p.returncode for p in self.procs], "timed_out": timed_out}
        tmp = self.out_dir / "done.json.tmp"
        tmp.write_text(json.dumps(done))
        tmp.replace(self.out_dir / "done.json")

    def config(self, name: str, runs_dir):
        """The ExperimentConfig a check's workers load, with runs_dir moved (for the single-process reference)."""
        from experiments.config import CONFIG_DIR, load_experiment

        spec = self.specs[name]
        return load_experiment([CONFIG_DIR / c for c in spec["configs"]], [*spec["overrides"], f"runs_dir={runs_dir}"])

    def wait(self) -> dict:
        """done.json once the launch has ended (a few seconds past the deadline at most)."""
        import time

        done_file = self.out_dir / "done.json"
        while self._done is None:
            if done_file.is_file():
                self._done = json.loads(done_file.read_text())
            elif time.time() > self.deadline + 30:  # the launching process died without writing it
                self._done = {"returncodes": [None, None], "timed_out": True}
            else:
                time.sleep(0.1)
        return self._done

    def _results_by_rank(self) -> dict:
        if self._results is None:
            self.wait()
            self._results = {}
            for rank in range(2):
                f = self.out_dir / f"rank{rank}.json"
                self._results[rank] = json.loads(f.read_text()) if f.is_file() else {}
        return self._results

    def get(self, name: str) -> list:
        """[rank 0 result, rank 1 result] of check `name`; a clear test failure with the workers' logs if
        either rank did not finish it (error, crash, or the DDP_TIMEOUT_S limit)."""
        results = self._results_by_rank()
        per_rank = [results[r].get(name, {}) for r in range(2)]
        if all("result" in r for r in per_rank):
            return [r["result"] for r in per_rank]
        done = self.wait()
        lines = [f"DDP check {name!r} did not finish on both ranks (logs and spec in {self.out_dir})"]
        for rank, (returncode, r) in enumerate(zip(done["returncodes"], per_rank)):
            code = f"killed after DDP_TIMEOUT_S={DDP_TIMEOUT_S}" if done["timed_out"] else f"exit code {returncode}"
            log = (self.out_dir / f"rank{rank}.log").read_text(errors="replace")
            why = r.get("error") or ("no result before the timeout" if done["timed_out"] else
                                     "no result: the process died, or an earlier check failed (see its output)")
            lines += [f"--- rank {rank}: {code}; {why}",
                      f"--- rank {rank} output (tail):", log[-4000:]]
        pytest.fail("\n".join(lines), pytrace=False)


@pytest.fixture(scope="session")
def ddp_results(tmp_path_factory, data_overrides):
    """The one 2-process launch of every DDP_CHECKS entry (see DdpLaunch). Under pytest-xdist the xdist
    workers share it: the first to ask starts it in their common temporary folder (under a file lock),
    the others attach. The process that started it waits for its end at teardown (never killing a launch
    another worker still reads; the launch kills itself at its deadline)."""
    from filelock import FileLock

    if "PYTEST_XDIST_WORKER" in os.environ:
        shared = tmp_path_factory.getbasetemp().parent / "ddp"  # the xdist workers' common folder
        shared.mkdir(exist_ok=True)
        with FileLock(shared.parent / "ddp.lock"):
            launch = (DdpLaunch.attach(shared) if (shared / "spec.json").is_file()
                      else DdpLaunch.start(shared, data_overrides))
    else:
        launch = DdpLaunch.start(tmp_path_factory.mktemp("ddp"), data_overrides)
    yield launch
    if launch.procs:
        launch.wait()


@pytest.fixture(scope="session", autouse=True)
def _start_ddp_launch_early(request):
    """Start the launch with the session when a selected test uses it: it runs beside the first tests (most
    of them single-threaded) instead of being waited for by its first user. Under pytest-xdist every worker
    sees every item; the first one starts the launch, the others attach to it."""
    if any("ddp_results" in getattr(item, "fixturenames", ()) for item in request.session.items):
        request.getfixturevalue("ddp_results")
