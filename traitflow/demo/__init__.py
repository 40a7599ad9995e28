"""The shipped demo chat model: its spec, the synthetic corpus and its grammar, training, build records.

May import only traitflow.core. The model folders it makes load through the same
from_pretrained path as any real model.
"""
