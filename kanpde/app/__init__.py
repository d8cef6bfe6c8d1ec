"""The application: a Hydra/OmegaConf configuration turned into a run (the only package that imports Hydra)."""
