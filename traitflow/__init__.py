"""traitflow: watch trait vectors move through a language model, token by token and layer by layer.

The package root stays free of torch so that the Snakefile can import the
workflow helpers at parse time without paying torch's start-up cost. Subpackages,
bottom first: core, demo and experiment, model, plan, outputs, steering, variants (docs/architecture.md).
"""

from .core.constants import SUBLAYERS, __version__  # noqa: F401 (public names: traitflow.SUBLAYERS)
from .outputs.seed_export import load_seed_format  # noqa: F401 (public: traitflow.load_seed_format)


def load_capture(path):
    """Projections, residual norms and cosine ([T, L, 3] numpy) of a per-trait all-layers .pt."""
    from .core.formats import load_capture as load
    return load(path)
