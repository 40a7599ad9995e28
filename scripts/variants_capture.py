"""All-layers capture of one (variant, response source) shard: scripts/capture_all_layers.py, run with the
variant's model as the config's model (its hidden size checks the vectors; params carry the rest)."""

import os
import runpy


class VariantJob:
    """The snakemake object, except that config's model is the variant's (params.model)."""

    def __init__(self, smk):
        self._smk = smk
        self.config = {**smk.config, "model": smk.params.model}

    def __getattr__(self, name):
        return getattr(self._smk, name)


runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "capture_all_layers.py"),
               init_globals={"snakemake": VariantJob(snakemake)})  # noqa: F821
