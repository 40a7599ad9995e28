"""The package's shape, read from the source with ast (nothing imported, nothing run).

Subpackages are stacked in LAYERS: a module imports from its own subpackage or a lower one,
never a higher one; there is no import circle between modules, not even through imports
inside functions; no subpackage holds more than MAX_MODULES modules, the package root at most
MAX_TOP, and no source file is over MAX_LINES lines. docs/architecture.md describes the layers.
"""

import ast
import functools
import glob
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "traitflow")
MAX_LINES = 400
MAX_MODULES = 15
MAX_TOP = 6

# subpackage -> layer (bottom first). "" is the package root, the public facade above everything.
LAYERS = {"core": 0, "demo": 1, "experiment": 1, "model": 2, "plan": 3, "outputs": 4,
          "steering": 5, "variants": 6, "": 7}


def _modules(package=PACKAGE):
    """Dotted names relative to the package: 'core.errors', 'model', '' (the root's __init__)."""
    names = []
    for path in glob.glob(os.path.join(package, "**", "*.py"), recursive=True):
        rel = os.path.relpath(path, package)[:-3].replace(os.sep, ".")
        names.append(rel[: -len(".__init__")] if rel.endswith(".__init__") else ("" if rel == "__init__" else rel))
    return sorted(names)


def _source(module, package):
    base = os.path.join(package, *module.split(".")) if module else package
    return base + ".py" if os.path.isfile(base + ".py") else os.path.join(base, "__init__.py")


def _imports(module, modules, package=PACKAGE):
    """The traitflow modules `module` imports, anywhere in the file (function-level imports included)."""
    path = _source(module, package)
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    is_pkg = path.endswith("__init__.py")
    here = module.split(".") if module else []
    pkg_parts = here if is_pkg else here[:-1]
    known = set(modules)
    found = set()

    def add(parts):
        # the longest known prefix: traitflow.core.errors.X -> core.errors
        for n in range(len(parts), -1, -1):
            name = ".".join(parts[:n])
            if name in known:
                found.add(name)
                return

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if not (node.module or "").startswith("traitflow"):
                    continue
                base = (node.module or "").split(".")[1:]
            else:
                base = pkg_parts[: len(pkg_parts) - (node.level - 1)] + ([*node.module.split(".")] if node.module else [])
            for alias in node.names:
                name = ".".join(base + [alias.name])
                add(base + [alias.name]) if name in known else add(base)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("traitflow."):
                    add(alias.name.split(".")[1:])
    found.discard(module)
    return found


def _subpackage(module):
    return module.split(".")[0] if "." in module or module in LAYERS else ""


@functools.lru_cache(maxsize=None)
def _graph():
    modules = _modules()
    return {m: _imports(m, modules) for m in modules}


def test_every_module_lives_in_a_known_subpackage():
    subs = {os.path.basename(os.path.dirname(p)) for p in glob.glob(os.path.join(PACKAGE, "*", "__init__.py"))}
    assert subs - set(LAYERS) == set(), f"subpackages without a layer; fix: add them to LAYERS in {__file__}"
    top = [m for m in _modules() if m and "." not in m and m not in subs]
    assert len(top) <= MAX_TOP - 1, f"modules at traitflow/'s top level: {top}; fix: move them into a subpackage"


def test_no_import_from_a_lower_layer_to_a_higher_one():
    upward = [f"{m} imports {d}" for m, deps in _graph().items() for d in sorted(deps)
              if LAYERS[_subpackage(d)] > LAYERS[_subpackage(m)]
              or (LAYERS[_subpackage(d)] == LAYERS[_subpackage(m)] and _subpackage(d) != _subpackage(m))]
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


def test_the_checker_sees_every_import_form(tmp_path):
    """The rules above rest on _imports seeing every form; a circle hidden in a function counts."""
    for sub in ("core", "model"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "__init__.py").write_text("")
    (tmp_path / "__init__.py").write_text("from .core.a import X\n")
    (tmp_path / "core" / "a.py").write_text("def f():\n    from ..model import b\n    from . import c\n")
    (tmp_path / "core" / "c.py").write_text("import traitflow.model.b\nimport os\n")
    (tmp_path / "model" / "b.py").write_text("from ..core.a import f\nfrom traitflow.core import c\nfrom .. import X\n")
    modules = _modules(str(tmp_path))
    assert modules == ["", "core", "core.a", "core.c", "model", "model.b"]
    assert _imports("", modules, str(tmp_path)) == {"core.a"}
    assert _imports("core.a", modules, str(tmp_path)) == {"model.b", "core.c"}
    assert _imports("core.c", modules, str(tmp_path)) == {"model.b"}
    assert _imports("model.b", modules, str(tmp_path)) == {"core.a", "core.c", ""}


def test_no_subpackage_over_its_module_limit():
    counts = {}
    for m in _modules():
        if "." in m:
            counts[m.split(".")[0]] = counts.get(m.split(".")[0], 0) + 1
    assert {s: n for s, n in counts.items() if n > MAX_MODULES} == {}, \
        f"split the subpackage by concern (at most {MAX_MODULES} modules each)"


def test_no_source_file_over_400_lines():
    patterns = ["traitflow/**/*.py", "benchmarks/*.py", "scripts/*.py", "rules/*.smk", "Snakefile", "viewer/**/*.js"]
    long = []
    for pattern in patterns:
        for path in sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True)):
            with open(path, encoding="utf-8") as fh:
                n = sum(1 for _ in fh)
            if n > MAX_LINES:
                long.append(f"{os.path.relpath(path, ROOT)}: {n} lines")
    assert long == [], f"over {MAX_LINES} lines (split along the concepts, see docs/architecture.md): {long}"
