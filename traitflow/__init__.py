"""traitflow: watch trait vectors move through a language model, token by token and layer by layer.

The package root stays free of torch so that the Snakefile can import the
workflow helpers at parse time without paying torch's start-up cost.
"""

__version__ = "0.1.0"

# Residual-stream points recorded at every layer, in file order (DESIGN.md section 3).
SUBLAYERS = ("residual_in", "after_attn", "residual_out")
