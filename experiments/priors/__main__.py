"""`python -m experiments.priors --out DIR`: pretrain and write the miniature priors (see __init__)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from experiments import thread_policy

thread_policy.apply_defaults()  # before anything imports torch

from experiments.priors.pretrain import PriorPlan, pretrain_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.priors", description=__doc__)
    parser.add_argument("--out", required=True, help="folder for mini_prior_{arm}.safetensors/.json")
    for f in dataclasses.fields(PriorPlan):
        if f.type in ("int", "float"):
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=int if f.type == "int" else float,
                                default=f.default, help=f"default {f.default}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    plan = PriorPlan(**{f.name: getattr(args, f.name) for f in dataclasses.fields(PriorPlan)
                        if f.type in ("int", "float")})
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: --out {out} exists and is not a folder", file=sys.stderr)
        return 2
    results = pretrain_all(plan, out)
    for arm, info in results.items():
        verdict = "prior formed" if info["gate"]["formed"] else "prior NOT formed"
        print(f"{arm}: held-out loss / mean predictor = {info['held_out']['ratio']:.3f}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
