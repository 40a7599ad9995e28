"""The package's shape, read from the source with ast (nothing imported, nothing run):
no import circle, no import from a lower layer to a higher one, no file over 400 lines.

docs/architecture.md describes the layers; LAYERS below is their machine-readable form.
A new module goes into LAYERS at the layer of the concept it holds.
"""

import ast
import functools
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "traitflow")
MAX_LINES = 400

# module -> layer; a module may import from its own layer or any lower one, never a higher one.
LAYERS = {
    # 0: names everything shares
    "constants": 0, "errors": 0,
    # 1: small helpers with no traitflow dependency beyond layer 0
    "arch": 1, "batching": 1, "config_check": 1, "config_files": 1, "damage": 1, "demo": 1, "demo_corpus": 1,
    "demo_files": 1, "layouts": 1, "manifests": 1, "prompt_columns": 1, "writable": 1,
    # 2: low-level file I/O (atomic writes, JSON text, safe loads) that formats and shared both use
    "fileio": 2,
    # 3: file formats and data read from disk, model facts (no model in memory)
    "fingerprints": 3, "formats": 3, "hooks": 3, "lens": 3, "model_facts": 3, "modeling": 3, "prompts": 3,
    "shared": 3, "tables": 3, "vectors": 3,
    # 4: compute with a model: generation, capture, extraction, dynamics, the single-layer deep dive
    "capture": 4, "decomposition": 4, "demo_train": 4, "dynamics": 4, "extract": 4, "generate": 4,
    "layer_weights": 4, "single_layer": 4,
    # 5: the plan the Snakefile builds at parse time
    "capture_set": 5, "declared": 5, "orphans": 5, "prompt_sets": 5, "traits": 5, "workflow": 5,
    # 6: outputs built from finished files, checks of them, scripts' glue, serving, the public facade
    "__init__": 6, "overview": 6, "plots": 6, "projections_table": 6, "report_tables": 6, "scripting": 6,
    "seed_export": 6, "serve": 6, "summary": 6, "verify": 6, "verify_outputs": 6, "viewer_index": 6,
}


def _modules():
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(PACKAGE, "*.py")))


def _imports(module, modules, package=PACKAGE):
    """The traitflow modules `module` imports, anywhere in the file (function-level imports included)."""
    with open(os.path.join(package, f"{module}.py"), encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level > 1 or (node.level == 0 and not (node.module or "").startswith("traitflow")):
                continue
            parts = (node.module or "").split(".")
            if node.level == 0:
                parts = parts[1:]  # traitflow.x -> x
            if parts and parts[0]:
                found.add(parts[0])
            else:  # from . import x, y: submodules, or names of the package root
                names = {a.name for a in node.names}
                found |= (names & set(modules)) or {"__init__"}
                if names - set(modules):
                    found.add("__init__")
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("traitflow.")}
    found.discard(module)
    return found


@functools.lru_cache(maxsize=None)
def _graph():
    modules = _modules()
    return {m: _imports(m, modules) for m in modules}


def test_every_module_has_a_layer():
    missing = [m for m in _modules() if m not in LAYERS]
    stale = [m for m in LAYERS if m not in _modules()]
    assert not missing, f"traitflow modules without a layer: {missing}; fix: add them to LAYERS in {__file__}"
    assert not stale, f"LAYERS names modules that no longer exist: {stale}; fix: remove them"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = [f"{m} (layer {LAYERS[m]}) imports {d} (layer {LAYERS[d]})"
              for m, deps in _graph().items() for d in sorted(deps)
              if m in LAYERS and d in LAYERS and LAYERS[d] > LAYERS[m]]
    assert upward == []


def test_no_import_circle():
    graph = _graph()
    circles, state = [], {}

    def visit(m, path):
        state[m] = "open"
        for d in sorted(graph.get(m, ())):
            if state.get(d) == "open":
                circles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = "done"

    for m in graph:
        if m not in state:
            visit(m, [m])
    assert circles == []


def test_the_checker_sees_function_level_and_package_root_imports(tmp_path):
    """The rules above rest on _imports seeing every form; a circle hidden in a function counts."""
    (tmp_path / "a.py").write_text("from . import SUBLAYERS\nfrom .b import f\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n    import traitflow.c\n    from . import a\n")
    (tmp_path / "c.py").write_text("from traitflow.constants import SUBLAYERS\nimport os\n")
    modules = ["a", "b", "c", "constants"]
    assert _imports("a", modules, str(tmp_path)) == {"__init__", "b"}
    assert _imports("b", modules, str(tmp_path)) == {"a", "c"}
    assert _imports("c", modules, str(tmp_path)) == {"constants"}


def test_no_source_file_over_400_lines():
    patterns = ["traitflow/*.py", "benchmarks/*.py", "scripts/*.py", "rules/*.smk", "Snakefile", "viewer/**/*.js"]
    long = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            with open(path, encoding="utf-8") as fh:
                n = sum(1 for _ in fh)
            if n > MAX_LINES:
                long.append(f"{os.path.relpath(path, ROOT)}: {n} lines")
    assert long == [], f"over {MAX_LINES} lines (split along the concepts, see docs/architecture.md): {long}"
