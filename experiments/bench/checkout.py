"""Importing another checkout's code next to this one's, for the benches' before/after columns."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def import_from_checkout(base: str | Path, module: str, attr: str):
    """`attr` of `module` (e.g. 'lightning_modules.metrics', 'DepthMetrics') as the checkout at `base`
    defines it. The module's top-level package is imported with `base` first on sys.path; then this
    checkout's modules of that package are put back in sys.modules (the base objects keep their own
    module globals). Raises ValueError if `base` has no such module file."""
    root = Path(base).resolve()
    parts = module.split(".")
    if not ((root / Path(*parts)).with_suffix(".py").is_file() or (root / Path(*parts) / "__init__.py").is_file()):
        raise ValueError(f"--base {root}: not a checkout of this project (no {module})")
    package = parts[0]
    importlib.import_module(module)  # this checkout's, to be put back

    def ours(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    saved = {k: sys.modules.pop(k) for k in [k for k in sys.modules if ours(k)]}
    sys.path.insert(0, str(root))
    try:
        return getattr(importlib.import_module(module), attr)
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if ours(k)]:
            del sys.modules[k]
        sys.modules.update(saved)
