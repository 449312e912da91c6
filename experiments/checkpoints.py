"""Finding a run's config and checkpoint from what a user passes on the command line."""

from __future__ import annotations

from pathlib import Path


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
