"""Everything built from finished files: dynamics, tables, report, viewer data, the export to the
original layout, the format verifiers, the job-script glue and the local server.

May import every layer below it (core, demo, experiment, model, plan).
"""
