"""`make demo` leaves a clean clone: everything a run writes is ignored by git, and nothing tracked is generated."""

import os
import shutil
import subprocess

import pytest
from conftest import REPO


def git(*args, cwd=REPO):
    return subprocess.run(["git", *args], cwd=cwd, text=True, capture_output=True)


@pytest.fixture
def tracked():
    """What the project tracks, and the new files git would offer to add (inputs not committed yet)."""
    files = git("ls-files").stdout.split()
    if not files:
        pytest.skip("not a git checkout")
    return set(files) | set(git("ls-files", "--others", "--exclude-standard").stdout.split())


def test_the_editable_install_leaves_no_tracked_or_unignored_files(tracked):
    assert not [f for f in git("ls-files").stdout.split() if ".egg-info/" in f]  # `pip install -e .` rewrites them
    assert git("check-ignore", "-q", "--no-index", "traitflow.egg-info/SOURCES.txt").returncode == 0


def test_every_file_a_demo_run_writes_is_ignored(demo_run, tracked, tmp_path):
    """The demo's workdir, as a git repository with the project's .gitignore: git status lists only the
    files the project tracks (its inputs), never an output."""
    copy = tmp_path / "clone"
    shutil.copytree(demo_run["dir"], copy, ignore=shutil.ignore_patterns(".snakemake"))
    shutil.copy(os.path.join(REPO, ".gitignore"), copy / ".gitignore")
    assert git("init", "-q", cwd=copy).returncode == 0
    status = git("status", "--porcelain", "--untracked-files=all", cwd=copy).stdout.splitlines()
    shown = {line[3:] for line in status} - {".gitignore"}
    assert sorted(shown - tracked) == []
