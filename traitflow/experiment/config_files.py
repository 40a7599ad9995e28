"""Config files checked before Snakemake reads them (its `configfile:` names no file on an error).

The Snakefile loads config.yaml and an experiment's own config.yaml with
`configfile:`. Snakemake then says only "Config file must be given as JSON or YAML
with keys at top level" for an empty file, a list or a scalar, "not valid JSON or
YAML" for a syntax error, and lets a key given twice silently take its last value.
config_file_settings(path) reads the file the way Snakemake will (JSON first, then
YAML) and turns each of those into one line naming the file.
"""

import json
import os

from ..core.errors import TraitflowError

EXAMPLE = "e.g. `capture:` then `  batch_size: 4` on the next line"


class _DuplicateKey(Exception):
    def __init__(self, key, line, first_line):
        self.key, self.line, self.first_line = key, line, first_line


def _yaml_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

        def construct_mapping(self, node, deep=False):
            seen = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:
                        raise _DuplicateKey(key, key_node.start_mark.line + 1, seen[key])
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                seen[key] = key_node.start_mark.line + 1
            return super().construct_mapping(node, deep)

    return UniqueKeyLoader


def _json_pairs(pairs):
    keys = [k for k, _ in pairs]
    for k in keys:
        if keys.count(k) > 1:
            raise _DuplicateKey(k, None, None)
    return dict(pairs)


def _kind(value):
    if isinstance(value, list):
        return f"a list ({len(value)} item{'s' if len(value) != 1 else ''})"
    return f"a single value ({value!r:.40})"


def config_file_settings(path):
    """The settings a config file holds: {} for an empty one, None when it does not exist.

    Raises a TraitflowError naming the file for one that is not UTF-8, not valid YAML
    (or JSON), not a mapping of settings, or that gives a key twice.
    """
    import yaml

    if not os.path.isfile(path):
        return None
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise TraitflowError(f"{path}:{line}", f"not valid UTF-8 (byte 0x{raw[err.start]:02x} at offset {err.start})",
                             "re-save the file as UTF-8") from None
    try:
        try:
            data = json.loads(text, object_pairs_hook=_json_pairs)  # Snakemake tries JSON first, too
        except ValueError:
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except _DuplicateKey as dup:
        where = f" on lines {dup.first_line} and {dup.line}" if dup.line else ""
        raise TraitflowError(path, f"key '{dup.key}' is given twice{where} (only the last would count)",
                             "keep one of them") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise TraitflowError(path, f"{line}not valid YAML ({problem})",
                             "fix that line (indent with spaces, not tabs; `key: value` per line), or empty the "
                             "file") from None
    if data is None:
        return {}  # empty, or only comments: no settings of its own
    if not isinstance(data, dict):
        raise TraitflowError(path, f"holds {_kind(data)}, not settings (`key: value` lines)",
                             f"write the settings that differ from config.yaml as keys, {EXAMPLE}; or empty the file")
    return data


def config_has_settings(path):
    """For the Snakefile, before `configfile: path`: True when it has settings to merge, False when it is
    missing or empty; any other problem is one line on stderr and exit status 1 (no Snakemake message)."""
    from ..core.errors import exit_with_error

    try:
        return bool(config_file_settings(path))
    except TraitflowError as err:
        exit_with_error("plan", err)
