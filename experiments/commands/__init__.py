"""One module per sub-command of `python -m experiments`: each has add_arguments(parser) and run(args)."""

from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, config_help: str) -> None:
    """The repeatable `--config FILE` option and the trailing `key=value` overrides every config-taking command has."""
    parser.add_argument("--config", action="append", default=[], metavar="FILE", help=config_help)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. trainer.max_steps=10")
