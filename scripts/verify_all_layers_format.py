#!/usr/bin/env python
"""Check all-layers capture files (.pt or .json): one line per problem, exit 1 if any.

usage: python scripts/verify_all_layers_format.py experiments/EXP/TRAIT/inference/residual_stream_activations/prompt_0.pt ...
"""
import sys

from traitflow.outputs.verify import cli

if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:], "all_layers"))
