"""What the Snakefile computes at parse time: the plan, what each job declares, what reruns.

Cheap and torch-free. May import core, demo, experiment and model facts (model_facts,
arch), never the outputs.
"""
