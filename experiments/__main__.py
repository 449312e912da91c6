"""Command line: `python -m experiments {train,evaluate,predict,generate,synth,preprocess,cache-prompt,plot-curves,table,report-ablation,report-paradigms,report-study} ...`.

Each sub-command lives in `experiments/commands/`; this file only parses arguments and dispatches.
Config-taking commands accept YAML files (`--config`, repeatable) and trailing `key=value` overrides.
"""

from __future__ import annotations

from experiments import thread_policy

thread_policy.apply_defaults()  # before anything imports torch

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

COMMANDS = {
    "train": ("train", "fine-tune a backbone (FE2E editor, T2I generator, GenPercept) from YAML config + key=value"),
    "evaluate": ("evaluate", "score a run or checkpoint on zero-shot benchmarks; writes metrics.json + CSVs"),
    "predict": ("predict", "depth/normal maps for an image or a folder of images"),
    "generate": ("generate", "sample images from a MERGE run's frozen generator (converters off): PNG grid"),
    "synth": ("synth", "write procedural scenes in every real on-disk format (Hypersim, VKITTI, benchmarks)"),
    "preprocess": ("preprocess", "build the fast Hypersim cache from the raw HDF5 release"),
    "cache-prompt": ("cache_prompt", "cache the empty-prompt text conditioning of a real backbone"),
    "plot-curves": ("plot_curves", "training-loss curves of runs from their TensorBoard event files"),
    "table": ("table", "depth or normal benchmark table (ours + published rows, average rank)"),
    "report-ablation": ("report_ablation", "table, loss curves and feature figure of an ablation experiment"),
    "report-paradigms": ("report_paradigms", "FE2E, T2I, GenPercept and MERGE side by side: depth table, curves, cost"),
    "report-study": ("report_study", "editor-vs-generator study over arms x seeds: verdict, curves, probe"),
}


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every sub-command, with the arguments of those in `commands` (default: all).

    Each sub-command's arguments come from its module, which imports what its `run` needs (torch,
    Lightning, ...): `main` builds them only for the command it runs, so `--help` imports none.
    """
    parser = argparse.ArgumentParser(prog="python -m experiments",
                                     description="FE2E-Lightning: editor vs generator fine-tuned for dense geometry.")
    parser.add_argument("--log-level", default="INFO", help="python logging level (default INFO)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        if commands is None or name in commands:
            importlib.import_module(f"experiments.commands.{module}").add_arguments(cmd)
    return parser


def requested_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in `argv` (the first word that is not an option or --log-level's value)."""
    skip = False
    for word in argv:
        if skip:
            skip = False
        elif word == "--log-level":
            skip = True
        elif not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = requested_command(argv)
    args = build_parser([command] if command else []).parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    module = importlib.import_module(f"experiments.commands.{COMMANDS[args.command][0]}")
    from experiments.config_loading import ConfigError

    try:
        module.run(args)
    except (ConfigError, FileNotFoundError, FileExistsError, KeyError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
