"""Procedural scenes with exact depth and normals, written in the real datasets' on-disk formats."""

from datamodules.synthetic.training import write_training_scenes

__all__ = ["write_training_scenes"]
