"""traitflow: watch trait vectors move through a language model, token by token and layer by layer.

The package root stays free of torch so that the Snakefile can import the
workflow helpers at parse time without paying torch's start-up cost.
"""

from .constants import SUBLAYERS, __version__  # noqa: F401 (public names: traitflow.SUBLAYERS)


def load_seed_format(path):
    """The seed scripts' full dict for a per-trait all-layers or single-layer .pt (attention included).

    Our files keep trait-independent data once per prompt (docs/formats.md); this
    joins a per-trait file with its shared data so seed notebooks work unchanged.
    """
    import re

    if re.search(r"_layer\d+\.pt$", str(path)):
        from .single_layer import load_seed_format as single_layer
        return single_layer(path)
    from .formats import load_seed_format as all_layers
    return all_layers(path)


def load_capture(path):
    """Projections, residual norms and cosine ([T, L, 3] numpy) of a per-trait all-layers .pt."""
    from .formats import load_capture as load
    return load(path)
