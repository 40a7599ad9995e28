#!/usr/bin/env python
"""Check single-layer files (layer internals .pt, per-trait .pt or .json): one line per problem, exit 1 if any.

usage: python scripts/verify_single_layer_format.py experiments/EXP/TRAIT/inference/layer_internal_states/prompt_0_layer1.pt ...
"""
import sys

from traitflow.outputs.verify import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:], "single_layer"))
