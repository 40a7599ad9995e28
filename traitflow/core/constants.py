"""Names every layer shares: the package version and the residual-stream points in file order.

Kept out of the package root so that modules low in the layering can import them
without importing traitflow/__init__.py (the public facade, which imports them).
"""

__version__ = "0.1.0"

# Residual-stream points recorded at every layer, in file order (docs/formats.md).
SUBLAYERS = ("residual_in", "after_attn", "residual_out")
