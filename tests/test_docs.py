"""Docs that agree with the repository: every link and path they name exists, every config key they
name is in the schema, no file cites a document that is not in the repository, one figure per fact."""

import glob
import os
import re
import subprocess

import pytest
import yaml
from conftest import REPO

DOCS = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A path named in prose or code: docs/..., scripts/... and other top-level folders (not viewer/: experiments have one).
OUTSIDE = "DESIGN" + ".md"  # the design notes the project started from: not in the repository (spelled so
# that this file does not cite it)
PATH = re.compile(r"(?<![\w./{-])((?:docs|scripts|benchmarks|schemas|rules|tests|profiles)/[\w./-]*\w)")


def text(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as fh:
        return fh.read()


def schema():
    with open(os.path.join(REPO, "schemas", "config.schema.yaml"), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def key_exists(key, node):
    for part in key.split("."):
        props = node.get("properties", {})
        if part not in props:
            return False
        node = props[part]
    return True


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_exists(doc):
    folder = os.path.dirname(os.path.join(REPO, doc))
    missing = [link for link in LINK.findall(text(doc))
               if not re.match(r"^[a-z]+:|^#", link) and not os.path.exists(os.path.join(folder, link.split("#")[0]))]
    assert missing == [], f"{doc} links to files that do not exist"


@pytest.mark.parametrize("doc", DOCS)
def test_every_repository_path_named_exists(doc):
    named = {p.rstrip(".") for p in PATH.findall(text(doc))}
    missing = sorted(p for p in named if not glob.has_magic(p) and not os.path.exists(os.path.join(REPO, p)))
    assert missing == [], f"{doc} names paths that do not exist"


def test_no_file_cites_a_document_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, text=True, capture_output=True).stdout.split()
    if not tracked:
        pytest.skip("not a git checkout")
    citing = []
    for rel in tracked:
        path = os.path.join(REPO, rel)
        if rel.endswith((".png", ".pt", ".safetensors", ".bin")) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            if OUTSIDE in fh.read():
                citing.append(rel)
    assert citing == [], f"these cite {OUTSIDE}, which is not in the repository (docs/design.md is)"


def test_every_config_key_the_readme_names_is_in_the_schema():
    readme, root = text("README.md"), schema()
    table = re.findall(r"^\| `([a-z_.]+)` \|", readme, re.M)
    assert len(table) > 20  # the configuration table
    dotted = {k for k in re.findall(r"`([a-z_]+(?:\.[a-z_]+)+)`", readme) if k.split(".")[0] in root["properties"]}
    missing = sorted(k for k in set(table) | dotted if not key_exists(k, root))
    assert missing == []


def test_make_bench_takes_one_duration_everywhere():
    durations = {(doc, d) for doc in DOCS
                 for d in re.findall(r"make bench\b[^\n(]{0,70}\((~?\d+(?:-\d+)?) min", text(doc))}
    assert len({d for _, d in durations}) == 1, durations


def test_every_ratio_a_benchmark_page_cites_is_in_its_tables():
    page = text("docs/benchmarks.md")
    cited = re.findall(r"the (\d+(?:\.\d+)?)x row", page)
    assert cited and [r for r in cited if f"| {r}x faster |" not in page] == []


def test_the_readme_benchmark_glob_finds_category_traits(tmp_path):
    snippet = re.search(r'glob\.glob\("(logs/NAME/benchmarks/[^"]+)"(, recursive=True)?\)', text("README.md"))
    for rel in ("generate/shard0.tsv", "extract_vectors/refusal.tsv", "extract_vectors/behavioral/sycophancy.tsv"):
        path = tmp_path / "logs" / "NAME" / "benchmarks" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("s\tmax_rss\n1\t2\n")
    found = glob.glob(str(tmp_path / snippet[1]), recursive=bool(snippet[2]))
    assert len(found) == 3
