"""Finding a run's config and checkpoint from what a user passes on the command line."""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path

import torch


def locate_run(path: str | Path) -> tuple[Path, Path | None]:
    """(run folder, checkpoint or None) for a run folder or a .ckpt inside `{run}/checkpoints/`.

    A run folder without checkpoints evaluates the untrained backbone (checkpoint None) only if its
    config.yaml exists; anything else raises FileNotFoundError naming what was expected.
    """
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        run_dir = path.parent.parent
        ckpt: Path | None = path
    elif path.is_dir():
        run_dir = path
        last = path / "checkpoints" / "last.ckpt"
        ckpt = last if last.is_file() else None
    else:
        raise FileNotFoundError(f"--checkpoint {path}: expected a run folder (with config.yaml) or a .ckpt file")
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"--checkpoint {path}: no config.yaml in the run folder {run_dir}")
    return run_dir, ckpt


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """The dict of a Lightning checkpoint, loaded with weights_only=True (no pickled code runs).

    mmap=True maps the tensors instead of reading them (a cheap validity check). Raises
    FileNotFoundError / ValueError naming `path` when it is missing, truncated, holds Python
    objects, or is not a Lightning checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise ValueError(f"{path}: refused: the checkpoint holds pickled Python objects besides tensors, which "
                         "could run code when loaded; only tensors-only checkpoints (as train writes) are read") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a loadable checkpoint (only plain tensors are accepted; truncated or "
                         f"holding Python objects?): {first_line(err)}") from None
    if not isinstance(state, dict) or "state_dict" not in state:
        raise ValueError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return state


def first_line(err: Exception, skip_header: bool = False) -> str:
    """The first informative line of an exception's message (skip_header: the second, for torch's
    size-mismatch text, whose first line is a header)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch colours some messages
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()] or [type(err).__name__]
    return lines[1] if skip_header and len(lines) > 1 else lines[0]
