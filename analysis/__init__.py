"""Analysis of finished runs: nothing here trains or evaluates, it reads what runs wrote.

- `analysis.curves`: TensorBoard event files -> pandas (`load_scalars`), TensorBoard-style smoothing,
  the editor-vs-generator loss plot with an inset on the first epochs.
- `analysis.tables`: depth / normal / ablation tables from `metrics.json` beside the published rows
  of SPEC section 8 (`published.csv`), with average ranks.
- `analysis.writers`: Markdown / CSV / LaTeX writers (one decimal, dagger on published rows, a
  caption saying what our rows ran on).
- `analysis.features`: block feature-norm maps and the feature figure.
- `analysis.report`: one call per result file (table files, loss plot, feature figure) for the CLI.
"""
