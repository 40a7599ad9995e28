"""Work with a model in memory: loading, the architecture table, hooks, generation, capture,
extraction, the logit lens and the single-layer deep dive.

May import core, demo and experiment; never the plan or the outputs.
"""
