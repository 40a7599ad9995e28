"""Per-trait behaviour classifiers: does a response show the trait's behaviour?

The experiment's config names one per trait (steering.behaviour.{trait}), in one of two forms:
  {patterns: [regex, ...]}                      any pattern found (case-insensitive) in the response
  {function: package.module.name, equals: v}    function(response) == v (or truthy, without equals)
The demo uses its grammar's own style classifier, traitflow.demo.corpus.style_of, through the second.
Built at plan time, so a pattern that does not compile or a function that does not exist is one line
before any model loads.
"""

import importlib
import re

from ..core.errors import TraitflowError


def make_classifier(spec, where):
    """spec (a mapping from the config) -> a function(text) -> bool; where names the setting in errors."""
    if "patterns" in spec:
        compiled = []
        for k, pattern in enumerate(spec["patterns"]):
            try:
                compiled.append(re.compile(pattern, re.IGNORECASE))
            except re.error as err:
                raise TraitflowError(f"{where}.patterns[{k}]", f"{pattern!r} does not compile ({err})",
                                     "write a Python regular expression (escape ( [ . ? * + with a backslash)")
        return lambda text: any(p.search(text) for p in compiled)
    module, _, name = spec["function"].rpartition(".")
    try:
        function = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise TraitflowError(f"{where}.function", f"cannot import {spec['function']!r} ({err})",
                             "name an importable function as package.module.name")
    if "equals" in spec:
        return lambda text: function(text) == spec["equals"]
    return lambda text: bool(function(text))


def classifiers(behaviour, traits, where="config steering.behaviour"):
    """{trait: classifier or None} for the steered traits (None: no classifier named: behaviour is left empty)."""
    return {t: make_classifier(behaviour[t], f"{where}.{t}") if t in behaviour else None for t in traits}
