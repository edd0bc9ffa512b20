"""Post-training quantization techniques as units: one module per technique (its name,
options, statistics and steps: :class:`.base.Technique`), a registry by name
(:mod:`.registry`) and recipes, ordered lists of technique configurations
(:mod:`.recipe`), which the engine (:mod:`edgemobile.quantization.engine`) runs."""
