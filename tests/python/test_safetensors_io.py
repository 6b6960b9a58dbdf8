"""What grpo writes loads in the Python references: safetensors 0.8 and transformers 5.24.

Runs the hidden Catch2 case "[python_export]" of grpo_io_tests (tests/io/safetensors_test.cpp),
which re-writes the reference checkpoints of tests/python/fixtures/safetensors.py with grpo's
writers into a scratch folder, then loads each result here and compares it with the original.
"""
import json
import os
import pathlib
import subprocess

import pytest
import torch
import transformers
from safetensors import safe_open
from safetensors.torch import load_file

FIXTURES = pathlib.Path(os.environ["GRPO_FIXTURE_DIR"]) / "safetensors"
BUILD = pathlib.Path(os.environ["GRPO_BUILD_DIR"])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("grpo_export")
    exe = BUILD / "tests" / "grpo_io_tests"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: build the grpo_io_tests target first")
    result = subprocess.run([str(exe), "[python_export]"], env={**os.environ, "GRPO_IO_EXPORT_DIR": str(out)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    return torch.equal(a.reshape(-1).contiguous().view(torch.uint8), b.reshape(-1).contiguous().view(torch.uint8))


def test_every_dtype_round_trips_byte_for_byte(exported):
    ours = exported / "roundtrip_all_dtypes.safetensors"
    assert ours.read_bytes() == (FIXTURES / "all_dtypes.safetensors").read_bytes()
    mine, ref = load_file(ours), load_file(FIXTURES / "all_dtypes.safetensors")
    assert mine.keys() == ref.keys()
    for name in ref:
        assert _same_bits(mine[name], ref[name]), name
    with safe_open(ours, "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_metadata_with_escapes_and_unicode(exported):
    with safe_open(exported / "metadata.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt", "note": "grpo \u2713", "quote": 'a "b"\n'}
        assert torch.equal(f.get_tensor("x"), torch.arange(6).reshape(2, 3))


def _weights(folder: pathlib.Path):
    return sorted(p.name for p in folder.iterdir() if ".safetensors" in p.name)


def test_sharded_checkpoint_matches_save_pretrained_and_loads(exported):
    ours, hf = exported / "ours_sharded", FIXTURES / "qwen2_sharded"
    assert _weights(ours) == _weights(hf)
    for name in _weights(hf):
        assert (ours / name).read_bytes() == (hf / name).read_bytes(), name
    model = transformers.Qwen2ForCausalLM.from_pretrained(ours)
    reference = transformers.Qwen2ForCausalLM.from_pretrained(hf)
    mine, ref = model.state_dict(), reference.state_dict()
    assert mine.keys() == ref.keys()
    for name in ref:
        assert _same_bits(mine[name], ref[name]), name
    assert model.config.rope_parameters["rope_theta"] == reference.config.rope_parameters["rope_theta"] == 1e6
    ids = torch.tensor([[1, 5, 9, 27, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_single_file_checkpoint_matches_save_pretrained(exported):
    ours, hf = exported / "ours_single", FIXTURES / "qwen2_single"
    assert _weights(ours) == ["model.safetensors"]
    assert (ours / "model.safetensors").read_bytes() == (hf / "model.safetensors").read_bytes()
    model = transformers.AutoModelForCausalLM.from_pretrained(ours)
    assert type(model).__name__ == "Qwen2ForCausalLM"


def test_tied_bf16_checkpoint_stays_bf16_and_ties(exported):
    ours, hf = exported / "ours_tied_bf16", FIXTURES / "qwen2_tied_bf16"
    with safe_open(ours / "model.safetensors", "pt") as f:
        assert "lm_head.weight" not in f.keys()
        assert f.get_tensor("model.embed_tokens.weight").dtype == torch.bfloat16
    model = transformers.AutoModelForCausalLM.from_pretrained(ours, dtype=torch.bfloat16)
    reference = transformers.AutoModelForCausalLM.from_pretrained(hf, dtype=torch.bfloat16)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    for name, tensor in reference.state_dict().items():
        assert _same_bits(model.state_dict()[name], tensor), name


def test_sequence_classification_checkpoint_loads_as_reward_model(exported):
    ours, hf = exported / "ours_seqcls", FIXTURES / "qwen2_seqcls"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(ours)
    reference = transformers.AutoModelForSequenceClassification.from_pretrained(hf)
    assert type(model).__name__ == "Qwen2ForSequenceClassification"
    assert model.config.num_labels == 1 and model.config.pad_token_id == 0
    assert model.config.eos_token_id == [2, 3]
    ids = torch.tensor([[1, 5, 9, 27, 0, 0], [1, 7, 7, 7, 7, 3]])
    with torch.no_grad():
        assert torch.equal(model(ids).logits, reference(ids).logits)


def test_config_written_from_cpp_values_loads_as_written(exported):
    config = transformers.AutoConfig.from_pretrained(exported / "config_programmatic")
    assert type(config).__name__ == "Qwen2Config"
    assert (config.vocab_size, config.hidden_size, config.intermediate_size) == (1000, 96, 200)
    assert (config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads) == (3, 6, 2)
    assert config.max_position_embeddings == 2048
    assert config.rope_parameters == {"rope_type": "default", "rope_theta": 1e6}
    assert config.rms_norm_eps == 1e-5 and config.tie_word_embeddings
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (3, [4, 5], 6)
    assert config.dtype == torch.bfloat16
    assert config.architectures == ["Qwen2ForSequenceClassification"] and config.num_labels == 1
    assert config.sliding_window is None and all(t == "full_attention" for t in config.layer_types)
    text = (exported / "config_programmatic" / "config.json").read_text()
    assert json.loads(text)["model_type"] == "qwen2"
    model = transformers.AutoModelForSequenceClassification.from_config(config)
    assert model.score.weight.shape == (1, 96)
    assert model.model.layers[0].self_attn.k_proj.weight.shape == (2 * 16, 96)
