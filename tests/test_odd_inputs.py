"""Odd inputs: scaled, complex and dangling vectors, experiment config files, traits too deep.

Each problem is one line naming the file and the fix. Library-level where possible; the two cases
that Snakemake itself would report (a config file, a dangling symlink) run `snakemake -n` in one
unbuilt workdir.
"""

import os

import pytest
import torch
from conftest import make_workdir, snakemake
from test_bad_input import experiment, left_out, make_config  # noqa: F401 (experiment is a fixture)

from traitflow.experiment.config_files import config_file_settings
from traitflow.core.errors import TraitflowError
from traitflow.plan.workflow import make_plan

EXP = "experiments/demo"


# ---- vectors --------------------------------------------------------------------------------


@pytest.mark.parametrize("scale, dtype", [(1e30, torch.float32), (1e-30, torch.float32), (1e300, torch.float64),
                                          (1e-300, torch.float64), (1.0, torch.bfloat16)])
def test_scaled_vectors_project_like_the_original(tmp_path, scale, dtype):
    from traitflow.model.capture import unit_vectors
    from traitflow.experiment.vectors import load_vector

    torch.manual_seed(0)
    v, h = torch.randn(64), torch.randn(7, 64)
    expected = h @ (v / v.norm())
    path = str(tmp_path / "probe_layer2.pt")
    torch.save((v.double() * scale).to(dtype), path)
    got = h @ unit_vectors(load_vector(path, 64)[None], "cpu")[0]
    tol = 1e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    big = h @ unit_vectors((v * 1e30)[None], "cpu")[0]  # the capture's own normalisation, on float32 input
    torch.testing.assert_close(big, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("vector, problem", [
    (torch.complex(torch.ones(64), torch.ones(64)),
     "vector has a complex dtype (complex64); a trait direction is real; fix: save the real vector (e.g. v.real, "
     "if the imaginary part is noise)"),
    (torch.full((64,), float("inf")), "vector contains NaN or infinite values; fix: re-extract the vector"),
    (torch.tensor([1e-300] * 63 + [float("nan")], dtype=torch.float64),
     "vector contains NaN or infinite values; fix: re-extract the vector"),
    (torch.zeros(64, dtype=torch.float64), "vector is all zeros (no direction to project on); fix: re-extract the vector"),
])
def test_unusable_vectors_are_refused_with_one_line(tmp_path, vector, problem):
    from traitflow.experiment.vectors import load_vector, vector_problems

    path = str(tmp_path / "probe_layer2.pt")
    torch.save(vector, path)
    with pytest.raises(TraitflowError) as info:
        load_vector(path, 64)
    assert str(info.value) == f"{path}: {problem}"
    assert vector_problems([path], 64, str(tmp_path / "checks.json")) == {path: f"{path}: {problem}"}


def test_vector_verdicts_follow_the_content_not_the_path_or_mtime(tmp_path, monkeypatch):
    """A copied, moved or re-dated vector reuses its verdict (no torch at plan time); changed bytes are checked."""
    import traitflow.experiment.vectors as vectors

    checks, good, bad = str(tmp_path / "checks.json"), str(tmp_path / "good.pt"), str(tmp_path / "bad.pt")
    torch.save(torch.ones(64), good)
    torch.save(torch.zeros(64), bad)
    assert vectors.vector_problems([good, bad], 64, checks) == {
        bad: f"{bad}: vector is all zeros (no direction to project on); fix: re-extract the vector"}
    moved = tmp_path / "copy"
    moved.mkdir()
    for name in ("good.pt", "bad.pt"):
        os.link(tmp_path / name, moved / name)
        os.utime(moved / name, (1, 1))
    loads = []
    monkeypatch.setattr(vectors, "load_vector", lambda path, d: loads.append(path))
    copied = [str(moved / "good.pt"), str(moved / "bad.pt")]
    assert vectors.vector_problems(copied, 64, checks) == {
        copied[1]: f"{copied[1]}: vector is all zeros (no direction to project on); fix: re-extract the vector"}
    assert loads == []  # the verdicts came from the cache, under the new paths
    assert vectors.vector_problems(copied, 32, checks) == {} and loads == copied  # another width: checked again
    torch.save(torch.ones(64) * 2, good)
    vectors.vector_problems([good], 64, checks)
    assert loads[-1] == good  # new bytes at a known path: checked again


def test_a_dangling_vector_symlink_leaves_out_only_its_trait(experiment, capsys):
    vectors = experiment / EXP / "own/extraction/vectors"
    vectors.mkdir(parents=True)
    os.symlink(experiment / "gone/probe_layer2.pt", vectors / "probe_layer2.pt")
    plan = make_plan(make_config(vector={"method": "probe", "layer": 2}))
    assert left_out(plan, "own", capsys) == (
        f"{EXP}/own/extraction/vectors/probe_layer2.pt: a symlink to {experiment}/gone/probe_layer2.pt, which does "
        "not exist; fix: restore the file it points to, or replace the link with the vector")
    assert plan.traits["refusal"].error is None


# ---- config files ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, problem", [
    ("- a\n- b\n", "holds a list (2 items), not settings (`key: value` lines); fix: write the settings that differ "
                   "from config.yaml as keys, e.g. `capture:` then `  batch_size: 4` on the next line; or empty the file"),
    ("42\n", "holds a single value (42), not settings"),
    ("capture: [\n", "line 2: not valid YAML (expected the node content, but found '<stream end>'); fix: fix that "
                     "line (indent with spaces, not tabs; `key: value` per line), or empty the file"),
    ("capture:\n\tbatch_size: 4\n", "line 2: not valid YAML (found character '\\t' that cannot start any token)"),
    ("capture:\n  batch_size: 4\ncapture:\n  prompts_per_job: 2\n",
     "key 'capture' is given twice on lines 1 and 3 (only the last would count); fix: keep one of them"),
    ("capture:\n  batch_size: 4\n  batch_size: 8\n", "key 'batch_size' is given twice on lines 2 and 3"),
    ('{"model": "a", "model": "b"}', "key 'model' is given twice (only the last would count)"),
    (b"generation:\n  seed: 1 # caf\xe9\n", ":2: not valid UTF-8 (byte 0xe9 at offset 27); fix: re-save the file as UTF-8"),
])
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, text, problem):
    path = tmp_path / "config.yaml"
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    with pytest.raises(TraitflowError) as info:
        config_file_settings(str(path))
    assert str(info.value).startswith(f"{path}{'' if problem.startswith(':') else ': '}{problem}"), str(info.value)


def test_an_empty_config_file_is_simply_empty(tmp_path):
    for text in ("", "\n", "# nothing of my own yet\n"):
        (tmp_path / "config.yaml").write_text(text)
        assert config_file_settings(str(tmp_path / "config.yaml")) == {}
    assert config_file_settings(str(tmp_path / "missing.yaml")) is None


@pytest.fixture(scope="module")
def unbuilt(tmp_path_factory):
    return make_workdir(str(tmp_path_factory.mktemp("damage_plan")))


def test_the_workflow_reports_a_bad_experiment_config_in_one_line_and_runs_with_an_empty_one(unbuilt):
    exp_config = os.path.join(unbuilt, EXP, "config.yaml")
    with open(exp_config) as fh:
        saved = fh.read()
    try:
        with open(exp_config, "w") as fh:
            fh.write("- capture\n")
        proc = snakemake(unbuilt, "-n", check=False)
        assert proc.returncode == 1 and "Traceback" not in proc.stdout
        errors = [line for line in proc.stdout.splitlines() if "error" in line.lower()]
        assert errors == [f"traitflow [plan] error: {EXP}/config.yaml: holds a list (1 item), not settings (`key: "
                          "value` lines); fix: write the settings that differ from config.yaml as keys, e.g. "
                          "`capture:` then `  batch_size: 4` on the next line; or empty the file"], proc.stdout
        with open(exp_config, "w") as fh:
            fh.write("")
        assert snakemake(unbuilt, "-n", "--quiet", check=False).returncode == 0
    finally:
        with open(exp_config, "w") as fh:
            fh.write(saved)


def test_a_dangling_vector_symlink_does_not_stop_the_other_traits(unbuilt):
    link = os.path.join(unbuilt, EXP, "own/extraction/vectors/probe_layer2.pt")
    os.makedirs(os.path.dirname(link))
    os.symlink("/nonexistent/probe_layer2.pt", link)
    try:
        proc = snakemake(unbuilt, "-n", "--config", "vector={method: probe, layer: 2}", check=False)
    finally:
        os.unlink(link)
    assert proc.returncode == 0 and "MissingInputException" not in proc.stdout, proc.stdout[-3000:]
    assert (f"traitflow [plan] warning: trait 'own' left out: {EXP}/own/extraction/vectors/probe_layer2.pt: a "
            "symlink to /nonexistent/probe_layer2.pt, which does not exist") in proc.stdout


# ---- traits too deep ------------------------------------------------------------------------


def test_a_trait_two_category_levels_down_is_named_with_the_fix(experiment, capsys):
    write_examples = experiment / EXP / "safety/harm/refusal2/extraction"
    write_examples.mkdir(parents=True)
    for name in ("positive.txt", "negative.txt"):
        (write_examples / name).write_text("a\nb\n")
    plan = make_plan(make_config())
    err = capsys.readouterr().err
    assert (f"traitflow [plan] warning: {EXP}/safety/harm/refusal2: not a trait: safety/harm/refusal2 is 2 category "
            "levels down; a trait sits directly in the experiment or one category folder down (CATEGORY/TRAIT); "
            f"fix: move it to {EXP}/safety/refusal2") in err
    assert list(plan.traits) == ["refusal"]
    plan = make_plan(make_config(traits=["refusal", "safety/harm/refusal2"]))
    assert left_out(plan, "safety/harm/refusal2", capsys) == (
        "trait name 'safety/harm/refusal2' is 2 category levels down; a trait sits directly in the experiment (TRAIT) "
        "or one category folder down (CATEGORY/TRAIT); fix: move the folder to safety/refusal2 and name it so")
