"""Vision-language analyses: the synthetic world of scenes (:mod:`circuits.vision.world`), the
small vision-language model trained on it (``synth-llava``), and the vision-aware head methods."""
