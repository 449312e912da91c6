"""LightningModules, backbones, objectives, encodings and the metric suite of the FE2E study."""
