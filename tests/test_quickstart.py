"""The README's quickstart, walked as written, and the near misses a new user hits on the way.

The commands come out of the README itself: if the README changes, this test runs the new text.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, make_workdir, snakemake

README = os.path.join(REPO, "README.md")


def readme_blocks(section, lang):
    """The ```lang code blocks of one README section (### heading), in order."""
    text = open(README, encoding="utf-8").read()
    body = text.split(f"### {section}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(rf"```{lang}\n(.*?)```", body, re.S)


def run_shell(workdir, line):
    """One README shell line, with the repo's .venv/bin/snakemake standing for this interpreter's snakemake."""
    line = line.replace(".venv/bin/snakemake", f"{sys.executable} -m snakemake")
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]}
    return subprocess.run(["bash", "-c", line], cwd=workdir, env=env, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=900)


@pytest.fixture(scope="module")
def walked(tmp_path_factory):
    """A fresh workflow copy after the quickstart's shell block (all but `make view`, a server)."""
    work = make_workdir(str(tmp_path_factory.mktemp("quickstart")))
    outputs = []
    for line in readme_blocks("Your own experiment in five minutes", "bash")[0].splitlines():
        command = line.split("  #")[0].strip()
        if not command or command.startswith("make view"):
            continue
        proc = run_shell(work, command)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-4000:]}"
        outputs.append(proc.stdout)
    return work, "\n".join(outputs)


def test_the_quickstart_runs_as_written_and_its_pandas_lines_work(walked):
    work, out = walked
    assert "traitflow summary for experiments/myexp" in out
    row = next(line for line in out.splitlines() if line.startswith("honesty "))
    assert row.split()[3] == "0"  # nothing missing
    # two examples a side: a run, with a warning that says what is wrong and what to do
    assert ("traitflow [plan] warning: trait 'honesty': experiments/myexp/honesty/extraction: only 2 positive "
            "examples and 2 negative examples: the vector will be mostly noise") in out
    python = readme_blocks("Your own experiment in five minutes", "python")[0]
    cwd = os.getcwd()
    os.chdir(work)
    try:
        scope = {}
        exec(compile(python, "README quickstart", "exec"), scope)
        result = eval(python.strip().splitlines()[-1], scope)
    finally:
        os.chdir(cwd)
    assert list(result.index) == ["honesty"] and result.notna().all()


def plan_output(work, *config):
    return snakemake(work, "-n", "--quiet", "rules", "--config", "experiment=myexp", *config, check=False)


def test_near_misses_each_get_one_line_naming_the_file_and_the_fix(walked, tmp_path):
    work = str(tmp_path / "w")
    shutil.copytree(walked[0], work, symlinks=True)
    exp = f"{work}/experiments/myexp"
    os.makedirs(f"{exp}/candor/extracton")  # a typo in extraction/
    os.makedirs(f"{exp}/warmth")
    for side in ("positive.txt", "negative.txt"):  # examples placed beside extraction/, not in it
        shutil.copy(f"{exp}/honesty/extraction/{side}", f"{exp}/warmth/{side}")
    os.makedirs(f"{exp}/own/extraction/vectors")
    shutil.copy(f"{exp}/honesty/extraction/vectors/probe_layer2.pt", f"{exp}/own/extraction/vectors/byo_vector.pt")
    os.makedirs(f"{exp}/lonely/extraction")
    with open(f"{exp}/lonely/extraction/positive.txt", "w") as fh:
        fh.write("Only one example.\n")
    shutil.copy(f"{exp}/honesty/extraction/negative.txt", f"{exp}/lonely/extraction/negative.txt")

    out = plan_output(work).stdout
    lines = [line for line in out.splitlines() if line.startswith("traitflow [plan]")]
    assert ("traitflow [plan] warning: experiments/myexp/candor: not a trait: it has extracton/, not extraction/; "
            "fix: rename experiments/myexp/candor/extracton to extraction") in lines
    assert ("traitflow [plan] warning: experiments/myexp/warmth: not a trait: positive.txt, negative.txt must sit in "
            "warmth/extraction/, not directly in the trait folder; fix: move positive.txt and negative.txt into "
            "experiments/myexp/warmth/extraction/") in lines
    assert ("traitflow [plan] warning: trait 'own' left out: experiments/myexp/own/extraction/vectors: byo_vector.pt "
            "is not named {method}_layer{L}.pt; fix: rename it, e.g. probe_layer2.pt (methods: probe, mean_diff, "
            "ica, gradient; .safetensors works too)") in lines
    assert ("traitflow [plan] warning: trait 'lonely' left out: experiments/myexp/lonely/extraction/positive.txt: "
            "1 example, need at least 2; fix: add one example per line") in lines

    typo = plan_output(work, "traits=[honesty, honsty]").stdout
    assert ("traitflow [plan] warning: trait 'honsty' left out: config traits: no trait 'honsty' in experiments/myexp; "
            "fix: did you mean 'honesty'? traits found: honesty, lonely, own") in typo
    wrong_exp = snakemake(work, "-n", "--config", "experiment=myexq", check=False).stdout
    assert wrong_exp.strip().splitlines()[-1].startswith(
        "traitflow [plan] error: config experiment 'myexq': experiments/myexq not found; fix: did you mean 'myexp'? "
        "experiments that exist: ")


def test_a_noop_run_still_prints_the_summary_with_the_left_out_traits(walked, tmp_path):
    work = str(tmp_path / "w")
    shutil.copytree(walked[0], work, symlinks=True)
    os.makedirs(f"{work}/experiments/myexp/empty/extraction")
    snakemake(work, "--cores", "1", "--config", "experiment=myexp")  # the viewer index names the left-out trait
    out = snakemake(work, "--cores", "1", "--config", "experiment=myexp").stdout
    assert "Nothing to be done" in out
    summary = out.split("traitflow summary for experiments/myexp", 1)[1]
    row = next(line for line in summary.splitlines() if line.startswith("empty "))
    assert "[plan] experiments/myexp/empty/extraction: no vectors and no extraction examples" in row
    assert "why jobs ran, per stage:\nnothing ran: every output is up to date" in summary


def test_the_summary_says_why_jobs_reran(walked, tmp_path):
    work = str(tmp_path / "w")
    shutil.copytree(walked[0], work, symlinks=True)
    # The README's form of a nested key on the command line; the run stops at the capture (what the lines name)
    out = snakemake(work, "--cores", "2", "manifests/myexp/_shared/capture_shard0.json",
                    "--config", "experiment=myexp", "generation={max_new_tokens: 12}").stdout
    why = out.split("why jobs ran, per stage:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert "generate (1 job): params changed (generation)" in why
    assert any(line.startswith("capture (1 job): upstream job reran") for line in why)


def test_generated_files_are_git_ignored_and_inputs_are_not(walked):
    work = walked[0]
    shutil.copy(os.path.join(REPO, ".gitignore"), work)
    subprocess.run(["git", "init", "-q"], cwd=work, check=True)
    generated = ["experiments/myexp/inference/responses/prompt_0.json",
                 "experiments/myexp/inference/shared/prompt_0.safetensors",
                 "experiments/myexp/honesty/inference/residual_stream_activations/prompt_0.pt",
                 "experiments/myexp/honesty/extraction/vectors/probe_layer2.pt",
                 "experiments/myexp/honesty/extraction/vectors/mean_diff_layer0_metadata.json",
                 "experiments/myexp/viewer/index.json", "experiments/myexp/tables/dynamics_tokens.csv"]
    inputs = ["experiments/myexp/inference_prompts.txt", "experiments/myexp/honesty/extraction/positive.txt",
              "experiments/myexp/inference/prompts/harmful.txt", "experiments/myexp/mine/extraction/vectors/probe_layer2.pt"]
    assert all(os.path.exists(os.path.join(work, p)) for p in generated)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *generated, *inputs], cwd=work, text=True,
                             capture_output=True).stdout.split()
    assert ignored == generated


def test_make_clean_deletes_one_experiments_generated_files_and_keeps_its_inputs(walked, tmp_path):
    work = str(tmp_path / "w")
    shutil.copytree(walked[0], work, symlinks=True)
    os.makedirs(f"{work}/experiments/myexp/mine/extraction/vectors")
    shutil.copy(f"{work}/experiments/myexp/honesty/extraction/vectors/probe_layer2.pt",
                f"{work}/experiments/myexp/mine/extraction/vectors/probe_layer2.pt")  # a vector the user brings
    recipe = open(os.path.join(REPO, "Makefile")).read().split("\nclean:", 1)[1].split("\n\n", 1)[0]
    for line in recipe.splitlines()[1:]:
        command = (line.strip().replace("$(BIN)/snakemake", f"{sys.executable} -m snakemake")
                   .replace("$(BIN)/python", sys.executable)
                   .replace("$(EXP)", "myexp").replace("$$", "$"))
        assert run_shell(work, command).returncode == 0, command
    left = sorted(os.path.relpath(os.path.join(d, f), f"{work}/experiments/myexp")
                  for d, _, files in os.walk(f"{work}/experiments/myexp") for f in files)
    assert left == ["honesty/extraction/negative.txt", "honesty/extraction/positive.txt", "inference_prompts.txt",
                    "mine/extraction/vectors/probe_layer2.pt"]
    assert not os.path.exists(f"{work}/logs/myexp") and not os.path.exists(f"{work}/manifests/myexp")
    assert os.path.exists(f"{work}/experiments/demo/inference_prompts.json")  # other experiments untouched
