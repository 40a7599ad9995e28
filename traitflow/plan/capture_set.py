"""Which traits the per-shard jobs serve: the chosen ones, plus those their finished jobs already cover.

One capture pass per prompt shard projects every trait at once, so the set of traits
is part of each capture job's params. If it were only `config traits`, choosing a
subset (`--config 'traits=[refusal]'`) would change every capture job and recapture
every shard, and going back to all traits would recapture again. So the per-shard
jobs (capture, dynamics, single-layer decomposition) serve the chosen traits plus
every trait their manifests already list that is still usable:

- choosing a subset of an up-to-date experiment reruns no model job: only the cheap
  experiment-wide aggregates (viewer index and overview, tables, cross-trait figure)
  follow the choice;
- going back to all traits reruns nothing either;
- a trait chosen for the first time joins every shard's job: one capture pass per shard,
  as adding a trait always cost;
- the price: a trait once captured stays in the shard jobs (its files kept up to date,
  at a small per-trait cost in each pass) until its folder is removed or it becomes
  unusable; `make clean` starts afresh.

On a cold experiment a subset captures only the subset.
"""

import sys
from dataclasses import replace

from .dynamics_plan import plan_dynamics
from ..core.errors import TraitflowError
from ..experiment.layouts import resolve_layout
from ..experiment.traits import plan_trait
from ..experiment.vectors import vector_problems


def kept_traits(plan, captured):
    """{name: TraitPlan} of the traits among captured that config did not choose and that can still run."""
    names = [n for n in dict.fromkeys(captured) if n not in plan.traits]
    if not names:
        return {}
    settings = plan.settings
    layout = resolve_layout(settings.inputs.layout)
    kept = {n: plan_trait(plan.exp_dir, n, settings.vector, plan.n_layers, plan.model, layout) for n in names}
    kept = {n: t for n, t in kept.items() if t.error is None}
    bad = vector_problems([t.vector_path for t in kept.values()], plan.hidden_size)
    return {n: t for n, t in kept.items() if t.vector_path not in bad}


def kept_dynamics(plan, kept, cfg):
    """plan_dynamics for the kept traits ({} and a warning when their dynamics cannot be planned)."""
    if not kept:
        return {}
    try:
        return plan_dynamics(replace(plan, traits=dict(kept)), cfg)
    except TraitflowError as err:
        print(f"traitflow [plan] warning: {err.where}: {err.problem} (traits captured before are dropped from the "
              "shard jobs)", file=sys.stderr)
        return None
