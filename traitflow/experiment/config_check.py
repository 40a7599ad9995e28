"""The config check: validate the merged config against schemas/config.schema.yaml, and turn the first
problem into one line naming the key, where it came from (--config or a config file) and the fix.

Command-line values (--config key=value arrive as strings) are coerced to the schema's types first.
"""

import difflib
import os

from ..core.errors import TraitflowError


def check_config(config, schema_path, configfiles=(), overrides=None):
    """Validate config against the schema; the first problem becomes one line naming the key.

    Snakemake's own validate() prints the whole config and schema; this names
    where the key came from (--config, else the first of configfiles, in
    precedence order, that sets it), the key and the fix.
    """
    import jsonschema
    import yaml

    with open(schema_path, encoding="utf-8") as fh:
        schema = yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml: 0.3 s less per start
    _coerce_command_line(config, schema, overrides or {})
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if not errors:
        return
    err = errors[0]  # not best_match: it descends into oneOf branches and names one alternative only
    more = f" (and {len(errors) - 1} more problem{'s' * (len(errors) > 2)})" if len(errors) > 1 else ""
    path = list(err.absolute_path)
    key = ".".join(str(p) for p in path)
    if err.validator == "additionalProperties":
        known = sorted(err.schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(known))
        source = _config_source(path + extra[:1], configfiles, overrides or {})
        unknown = ", ".join(f"'{key + '.' if key else ''}{k}'" for k in extra)
        close = [m for k in extra for m in difflib.get_close_matches(k, known, n=1)]
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise TraitflowError(source, f"unknown config key {unknown}{more}",
                             f"{hint}known keys{' in ' + key if key else ''}: {', '.join(known)}")
    source = _config_source(path, configfiles, overrides or {})
    if err.validator == "required":
        raise TraitflowError(source, f"{err.message}{more}", "add it (see config.yaml in the repository)")
    where = f"{source}, key {key}"
    if err.validator == "uniqueItems":
        twice = next(x for i, x in enumerate(err.instance) if x in err.instance[:i])
        raise TraitflowError(where, f"{err.instance!r} lists {twice!r} twice{more}", f"list each value of {key} once")
    if err.instance == [] and any(e.validator == "minItems" for e in err.context or ()):  # traits: []
        raise TraitflowError(where, f"[] is an empty list{more}",
                             f"give {key} at least one value (it takes {_expected(err)})")
    verdict = "is out of range for" if err.validator in _BOUNDS else "is not"
    raise TraitflowError(where, f"{err.instance!r} {verdict} {_expected(err)}{more}",
                         f"set {key} to {_expected(err)} (schemas/config.schema.yaml lists every key)")


_BOUNDS = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}


def _coerce_command_line(config, schema, overrides):
    """Snakemake's --config reads values nested in {...} or [...] (and some top-level ones) as strings ('4', 'true'):
    where the schema wants a number, boolean or null, read them as YAML, as config.yaml would be."""
    for key, value in overrides.items():
        if isinstance(value, (dict, list, str)):  # a top-level 'check_output_sizes=false' too
            _merge(config, key, _from_command_line(value, schema.get("properties", {}).get(key, {})))


def _from_command_line(value, schema):
    import yaml

    if isinstance(value, dict):
        return {k: _from_command_line(v, schema.get("properties", {}).get(k, {})) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_command_line(v, schema.get("items", {})) for v in value]
    types = schema.get("type", [])
    types = types if isinstance(types, list) else [types]
    if isinstance(value, str) and "string" not in types:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if any(_is(parsed, t) for t in types):
            return parsed
    return value


def _merge(node, key, value):
    if isinstance(value, dict) and isinstance(node.get(key), dict):
        for k, v in value.items():
            _merge(node[key], k, v)
    else:
        node[key] = value


def _is(value, json_type):
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "null":
        return value is None
    python_types = {"integer": int, "number": (int, float)}.get(json_type, ())
    return not isinstance(value, bool) and isinstance(value, python_types)


def _config_source(path, configfiles, overrides):
    """Where the value at path came from: --config, or the first config file that sets it."""
    import yaml

    def sets(node):
        for part in path:
            in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)  # logit_lens_layers.0
            if not in_list and (not isinstance(node, dict) or part not in node):
                return False
            node = node[part]
        return True

    if sets(overrides):
        return "--config"
    files = list(dict.fromkeys(os.path.abspath(str(f)) for f in configfiles))
    for f in files:
        with open(f, encoding="utf-8") as fh:
            if sets(yaml.safe_load(fh)):
                return os.path.relpath(f)
    return " + ".join(os.path.relpath(f) for f in files) or "config"


def _expected(err):
    if err.validator in ("oneOf", "anyOf"):
        return " or ".join(_describe_schema(sub) for sub in err.validator_value)
    if err.validator == "pattern":
        return f"a string matching {err.schema['pattern']}"
    return _describe_schema(err.schema)


def _describe_schema(s):
    if "title" in s:  # a key taking several shapes names them itself (capture.logit_lens_layers)
        return s["title"]
    if "enum" in s:
        return repr(s["enum"][0]) if len(s["enum"]) == 1 else "one of " + ", ".join(repr(v) for v in s["enum"])
    types = s.get("type", "any value")
    types = types if isinstance(types, list) else [types]
    names = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
             "array": "a list", "object": "a mapping", "null": "null"}
    words = [names.get(t, t) for t in types]
    if "array" in types and "items" in s:
        item = _describe_schema(s["items"]).removeprefix("a ").removeprefix("an ")
        words[types.index("array")] = f"a list of {item}s"
    bounds = [f"{op} {s[k]}" for k, op in _BOUNDS.items() if k in s]
    return " or ".join(words) + (f" ({', '.join(bounds)})" if bounds else "")
