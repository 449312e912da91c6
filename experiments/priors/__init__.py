"""Miniature priors (SPEC section 11): tiny FLUX DiTs pretrained on procedural scenes.

Arms, all ONE architecture (`lightning_modules.backbones.tiny.MINI_FLUX_CONFIG`):
- generator: class-conditioned flow-matching generation (class = scene kind x object count x hue);
  `generator` as shipped is the compute-matched control (its own training continued for as many
  steps as the editor's edit stage);
- editor: the generator's first stage, continued on edit pairs [target ; source] with an edit
  embedding (recolour, relight, move object, exposure), as FLUX.1-Kontext is made from FLUX.1-dev;
- editor-norelight: the same without relight edits (relighting leaks shading, hence geometry);
- random: no pretraining (built from a seed by the preset; nothing shipped).

`python -m experiments.priors --out lightning_modules/backbones/assets` (= `make priors`) re-creates
the shipped weights and their provenance from seeds.
"""
