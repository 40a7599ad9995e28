"""Names, errors, the typed settings the plan reads the config into, and the on-disk formats every stage
reads and writes.

The bottom layer: imports nothing else from traitflow, and no torch at import time
(the Snakefile reads these at parse time). Atomic writes and safe loads live here.
"""
