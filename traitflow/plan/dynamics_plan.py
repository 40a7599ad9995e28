"""Which vectors each trait's dynamics reads (the config's dynamics section), at parse time.

A method with no vector for some traits is left out of those traits' dynamics with
a warning; the per-token arithmetic itself is traitflow.outputs.dynamics.
"""

import os
import sys

from ..core.errors import TraitflowError
from ..experiment.vectors import EXTRACTED_METHODS, list_vectors


def resolve_methods(plan, trait, methods, layer):
    """Which vector each dynamics method uses, and whether the all-layers capture already holds its scores.

    'auto' is the trait's own method (the one its all-layers capture projected).
    Every method uses its vector at the trait's vector layer, so methods compare
    like for like; layer is where the residual is read (None: the vector layer).
    Returns (layer, [{"method", "vector", "reuse"}]); raises TraitflowError for a
    layer out of range or a method with no vector.
    """
    layer = trait.layer if layer is None else layer
    if not 0 <= layer < plan.n_layers:
        raise TraitflowError("config dynamics.layer", f"layer {layer} does not exist "
                             f"(the model has layers 0-{plan.n_layers - 1})", "pick one of those, or null")
    vectors_dir = f"{plan.exp_dir}/{trait.name}/extraction/vectors"
    on_disk = trait.vectors if trait.vectors is not None else list_vectors(vectors_dir)  # a layout's, else the folder's
    resolved = []
    for name in dict.fromkeys(trait.method if m == "auto" else m for m in methods):
        if name == trait.method:
            path = trait.vector_path
        elif trait.extract and name in EXTRACTED_METHODS:
            # made by the extract rule, beside the trait's own (in its vector.position's folder)
            path = f"{os.path.dirname(trait.vector_path)}/{name}_layer{trait.layer}.pt"
        elif (name, trait.layer) in on_disk:
            path = on_disk[(name, trait.layer)]
        else:
            raise TraitflowError(vectors_dir, f"dynamics method '{name}' of trait '{trait.name}' has no vector "
                                 f"at layer {trait.layer} ({name}_layer{trait.layer}.pt)",
                                 f"add that vector, or remove '{name}' from dynamics.methods")
        resolved.append({"method": name, "vector": path, "reuse": name == trait.method})
    return layer, resolved


def plan_dynamics(plan, cfg):
    """{trait: {"layer", "methods"}} for every runnable trait, from the config's dynamics section.

    A method with no vector for some traits is left out of those traits' dynamics
    (with a warning), so one trait that brings only its own vector does not stop
    the others; a method no trait has is a config mistake and stops the plan.
    """
    planned, missing = {}, {}
    for trait in plan.ok_traits:
        layer, methods = resolve_methods(plan, trait, [], cfg["layer"])
        for name in cfg["methods"]:
            try:
                methods += [m for m in resolve_methods(plan, trait, [name], cfg["layer"])[1] if m not in methods]
            except TraitflowError as err:
                missing.setdefault(name, []).append(err)
        planned[trait.name] = {"layer": layer, "methods": methods}
    for errors in missing.values():
        if len(errors) == len(plan.ok_traits):
            raise errors[0]
        for err in errors:
            print(f"traitflow [plan] warning: {err.where}: {err.problem} (left out of its dynamics)", file=sys.stderr)
    return planned
