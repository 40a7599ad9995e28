"""Model variants: one experiment, several named models (config `variants:`), the same prompts and vectors.

plan: the variants' config, checks and paths (no torch); tables: scores per (variant, response source),
differences on replayed text and the finetuning shift; behaviour: the demo grammar's behaviour rates of a model.
"""
