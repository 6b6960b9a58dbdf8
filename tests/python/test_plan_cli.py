"""`longwriter-zero plan`: the parameter counts equal transformers' (each model built on the meta
device from the same config.json), the per-GPU counts follow Megatron's layout computed here by
hand, the shipped 32B config fits 8 x 8 GPUs of 80 GiB and does not fit unsplit, a bad mesh is an
error naming the option and what would work, and the memory model matches the peak host memory
of real `train` runs on the CPU."""
import json
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen2ForSequenceClassification

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", ".")).resolve()
PROGRAM = BUILD / "examples" / "longwriter-zero"
ARCH = SOURCE / "examples" / "configs" / "architectures"
RM_72B = ARCH / "qwen2.5-72b-reward-model"
GIB = float(1 << 30)


def run_plan(*args):
    return subprocess.run([str(PROGRAM), "plan", *map(str, args)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def plan(*args):
    result = run_plan(*args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def transformers_count(folder):
    """sum(p.numel() for p in model.parameters()) of the model transformers builds from folder/config.json."""
    config_json = json.loads((folder / "config.json").read_text())
    config = Qwen2Config(**config_json)
    head = Qwen2ForSequenceClassification if config_json["architectures"] == ["Qwen2ForSequenceClassification"] \
        else Qwen2ForCausalLM
    with torch.device("meta"):
        model = head(config)
    return sum(p.numel() for p in model.parameters())


def megatron_rank_count(config_json, t):
    """Parameters one of t tensor-parallel ranks holds: q/k/v split by whole heads (a key/value head
    replicated when t exceeds their number), gate/up/down by MLP columns, embedding and lm_head by
    vocabulary rows, norms and the score head whole."""
    h, i, layers, v = (config_json[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"))
    heads, kv = config_json["num_attention_heads"], config_json["num_key_value_heads"]
    d = h // heads
    q_width = heads // t * d
    kv_width = (kv // t if kv >= t else 1) * d
    layer = (h * q_width + q_width) + 2 * (h * kv_width + kv_width) + q_width * h + 3 * h * (i // t) + 2 * h
    total = v // t * h + layers * layer + h
    if config_json["architectures"] == ["Qwen2ForSequenceClassification"]:
        total += len(config_json.get("id2label", {"0": 0})) * h
    elif not config_json.get("tie_word_embeddings", False):
        total += v // t * h
    return total


@pytest.mark.parametrize("policy", ["qwen2.5-0.5b", "qwen2.5-7b", "qwen2.5-32b"])
def test_parameter_counts_equal_transformers(policy):
    out = plan("--config", "qwen2.5-32b", "--gpus", 1, "--set", "parallel.tensor=1",
               "--set", f"policy.model={ARCH / policy}", "--set", f"rewards.writing.model={RM_72B}")
    assert out["parameters"]["policy"] == transformers_count(ARCH / policy)
    assert out["parameters"]["reward_model"] == transformers_count(RM_72B)
    assert out["parameters"]["policy_per_gpu"] == out["parameters"]["policy"]  # T = 1: one GPU holds it all


def test_parameter_counts_from_init_configs_equal_transformers(tmp_path):
    # The tiny config builds both models from "init.config" sections (its policy.model is a folder).
    tiny = json.loads((SOURCE / "examples" / "configs" / "tiny.json").read_text())
    for key in ("policy", "rm"):
        section = tiny["policy"] if key == "policy" else tiny["rewards"]["writing"]
        (tmp_path / key).mkdir()
        (tmp_path / key / "config.json").write_text(json.dumps(section["init"]["config"]))
    out = plan("--config", "tiny", "--gpus", 1, "--set", "policy.model=null")
    assert out["parameters"]["policy"] == transformers_count(tmp_path / "policy")
    assert out["parameters"]["reward_model"] == transformers_count(tmp_path / "rm")
    # policy.freeze holds the tied embedding: it gets no gradient and no AdamW moments
    embedding = tiny["policy"]["init"]["config"]["vocab_size"] * tiny["policy"]["init"]["config"]["hidden_size"]
    assert out["parameters"]["trained_per_gpu"] == out["parameters"]["policy"] - embedding


@pytest.mark.parametrize("t", [1, 2, 4, 8])
def test_per_gpu_counts_follow_megatron_layout(t):
    out = plan("--config", "qwen2.5-32b", "--gpus", 8 * t, "--set", f"parallel.tensor={t}")
    policy = json.loads((ARCH / "qwen2.5-32b" / "config.json").read_text())
    rm = json.loads((RM_72B / "config.json").read_text())
    assert out["mesh"] == {"tensor": t, "data": 8}
    assert out["parameters"]["policy_per_gpu"] == megatron_rank_count(policy, t)
    assert out["parameters"]["reward_model_per_gpu"] == megatron_rank_count(rm, t)
    assert out["settings"]["kv_heads_per_gpu"] == 8 // t
    # weights shrink by ~T (only the norms are replicated)
    whole = transformers_count(ARCH / "qwen2.5-32b") * 2 / GIB  # bfloat16
    assert out["gib_per_gpu"]["weights"] * t == pytest.approx(whole, rel=1e-3)


def test_replicated_key_value_heads():
    # tiny: 4 query heads, 2 key/value heads; on 4 ranks each holds 1 query head and a copy of 1 kv head
    out = plan("--config", "tiny", "--gpus", 4, "--set", 'parallel={"tensor": 4}')
    tiny = json.loads((SOURCE / "examples" / "data" / "tiny" / "base-policy" / "config.json").read_text())
    assert out["parameters"]["policy_per_gpu"] == megatron_rank_count(tiny, 4)
    assert out["settings"]["kv_heads_per_gpu"] == 1


def test_shipped_32b_config_fits_64_gpus_of_80_gib_and_not_unsplit():
    out = plan("--config", "qwen2.5-32b", "--gpus", 64, "--gpu-memory-gib", 80)
    assert out["mesh"] == {"tensor": 8, "data": 8}
    assert out["parameters"]["reward_model"] == transformers_count(RM_72B)  # the 72B writing reward model
    assert out["fits"] and out["total_gib"] <= 80
    settings, gib = out["settings"], out["gib_per_gpu"]
    assert settings["dtype"] == "bfloat16" and settings["master_weights"] and settings["shard_optimizer_state"]
    # KV cache by hand: 64 rows x (512 + 14,000) slots x (k, v) x 64 layers x 1 kv head x 128 x 2 bytes
    assert gib["kv_cache"] == pytest.approx(64 * (512 + 14000) * 2 * 64 * 1 * 128 * 2 / GIB, abs=1e-4)
    # optimizer state sharded over the 8 data-parallel copies: about 1/8 of the rank's tensors each
    assert out["parameters"]["optimizer_per_gpu"] == pytest.approx(out["parameters"]["trained_per_gpu"] / 8, rel=0.02)
    unsplit = plan("--config", "qwen2.5-32b", "--gpus", 64, "--gpu-memory-gib", 80, "--set", "parallel.tensor=1")
    assert unsplit["mesh"] == {"tensor": 1, "data": 64}
    assert not unsplit["fits"]
    assert unsplit["gib_per_gpu"]["weights"] > 60  # 32.8B bf16 parameters: 61 GiB before anything else


BAD = [
    # (arguments, words the message must hold)
    (["--gpus", 12], ["--gpus 12", "parallel.tensor = 8", "1, 2, 4"]),
    (["--gpus", 60, "--set", "parallel.tensor=3"], ["parallel.tensor", "num_attention_heads (40)", "1, 2, 4, 8"]),
    (["--gpus", 48, "--set", "parallel.tensor=16"], ["parallel.tensor", "num_attention_heads (40)", "1, 2, 4, 8"]),
    (["--gpus", 24], ["trainer.prompts_per_step", "D = 3"]),
    (["--gpus", 64, "--set", "parallel.tensor=0"], ["parallel.tensor"]),
    (["--gpus", 64, "--set", "parallel.pipeline=2"], ["parallel.pipeline", "unknown key"]),
    (["--gpus", 0], ["--gpus"]),
    (["--gpus", 64, "--gpu-memory-gib", 0], ["--gpu-memory-gib"]),
    (["--gpus", 32, "--set", f"policy.model={ARCH / 'qwen2.5-7b'}"], ["num_attention_heads (28)", "1, 2, 4"]),
    (["--gpus", 64, "--set", f"policy.model={RM_72B}"], ["Qwen2ForCausalLM"]),
]


@pytest.mark.parametrize("args,words", BAD)
def test_a_bad_mesh_is_an_error_naming_what_would_work(args, words):
    result = run_plan("--config", "qwen2.5-32b", *args)
    assert result.returncode != 0
    for w in words:
        assert w in result.stderr, (w, result.stderr)


def test_a_reward_model_that_does_not_split_names_it(tmp_path):
    rm = json.loads((RM_72B / "config.json").read_text())
    rm.update(hidden_size=1536, num_attention_heads=12, num_key_value_heads=2, intermediate_size=8960)
    (tmp_path / "config.json").write_text(json.dumps(rm))
    result = run_plan("--config", "qwen2.5-32b", "--gpus", 64, "--set", f"rewards.writing.model={tmp_path}")
    assert result.returncode != 0
    for w in ["the writing reward model", "num_attention_heads (12)", "split both the policy and the reward model: 1, 2, 4"]:
        assert w in result.stderr, (w, result.stderr)


# ---- the memory model against a real run's peak host memory --------------------------------------

def measured_run(tmp_path, name, layers, checkpointing):
    """A one-step `train` on the CPU: a random float32 policy (hidden 128, MLP 8192: activations
    weigh much more than weights), its tied embedding frozen, 4 samples of one 269-token prompt with
    4 new tokens each, all in one micro-batch of exactly 4 x 273 tokens. Returns the program's peak
    RSS (bytes) and the plan of the same config."""
    prompt = "Write a 300-word essay about tea. " + " ".join(["tea"] * 250)  # 269 tokens in the chatml frame
    (tmp_path / "prompts.jsonl").write_text(json.dumps({"prompt": prompt}) + "\n")
    config = {
        "output_dir": str(tmp_path / f"run-{name}"), "device": "cpu", "dtype": "float32", "seed": 0,
        "tokenizer": str(SOURCE / "examples" / "data" / "qwen2.5-tokenizer"), "prompts": str(tmp_path / "prompts.jsonl"),
        "policy": {
            "init": {"config": {
                "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936, "hidden_size": 128,
                "intermediate_size": 8192, "num_hidden_layers": layers, "num_attention_heads": 2, "num_key_value_heads": 1,
                "max_position_embeddings": 1024, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
                "tie_word_embeddings": True, "hidden_act": "silu", "bos_token_id": 151643, "eos_token_id": 151643}},
            "freeze": ["model\\.embed_tokens\\.weight"], "logprob_chunk_size": 64,
            "activation_checkpointing": checkpointing},
        "rewards": {"writing": {"batch_size": 2, "max_tokens": 64, "init": {"config": {
            "model_type": "qwen2", "architectures": ["Qwen2ForSequenceClassification"], "num_labels": 1,
            "vocab_size": 151936, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 1024, "rope_theta": 10000.0,
            "rms_norm_eps": 1e-6, "tie_word_embeddings": False, "hidden_act": "silu", "pad_token_id": 151643}}}},
        "trainer": {"steps": 1, "prompts_per_step": 1, "group_size": 4, "prompt_template": "chatml",
                    "sampling": {"max_new_tokens": 4}, "micro_batch_tokens": 4 * (269 + 4), "save_final": False,
                    "log_samples_every": 0}}
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(config))
    out = plan("--config", path, "--gpus", 1, "--prompt-tokens", 269)
    # glibc would keep freed blocks under its adaptive mmap threshold (up to 32 MiB) resident, so
    # the peak RSS would count freed memory; a fixed threshold returns every large block on free.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    log = open(tmp_path / f"{name}.log", "w")
    # A process's ru_maxrss also counts the memory image it was forked from (Linux folds the old
    # image's peak in at exec), and this test process holds torch and transformers: a small Python
    # in between forks `train` from its own image and reports the peak of that child alone.
    process = subprocess.Popen([sys.executable, "-c", MEASURE, str(PROGRAM), "train", "--config", str(path)],
                               stdout=subprocess.PIPE, stderr=log, env=env, stdin=subprocess.DEVNULL, text=True)
    return process, out


MEASURE = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdout=sys.stderr, stdin=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024)  # ru_maxrss: KiB on Linux
"""


def test_memory_model_matches_peak_host_memory_of_train(tmp_path):
    # Two depths of the same model, with and without checkpointing; the difference of their peaks
    # leaves out everything that does not grow with the layers (LibTorch, the tokenizer, the frozen
    # embedding, the reward model, the log-prob chunk). One step: the AdamW moments appear at the
    # optimizer step, after the backward, whose peak is the larger one here in every run:
    #   without checkpointing, at the start of the backward: weights + every layer's activations
    #   with checkpointing, at its end: weights + every gradient + one layer recomputed
    runs = {(layers, ckpt): measured_run(tmp_path, f"l{layers}-{'ckpt' if ckpt else 'full'}", layers, ckpt)
            for layers in (1, 4) for ckpt in (False, True)}
    peaks = {}
    for key, (process, _) in runs.items():
        report, _ = process.communicate(timeout=300)
        code, peak = map(int, report.split())
        assert code == 0, (tmp_path / f"l{key[0]}-{'ckpt' if key[1] else 'full'}.log").read_text()[-2000:]
        peaks[key] = peak
    gib = {key: out["gib_per_gpu"] for key, (_, out) in runs.items()}

    def grown(ckpt, items):
        return sum(gib[(4, ckpt)][i] - gib[(1, ckpt)][i] for i in items) * GIB

    measured_full = peaks[(4, False)] - peaks[(1, False)]
    measured_ckpt = peaks[(4, True)] - peaks[(1, True)]
    planned_full = grown(False, ["weights", "activations"])
    planned_ckpt = grown(True, ["weights", "gradients", "activations"])
    assert grown(False, ["activations"]) > 5 * grown(False, ["weights"])  # the activations are what is measured
    # Measured when written: 460.7 vs 462.2 MiB and 73.8 vs 74.7 MiB.
    mib = f"measured {measured_full / 2**20:.1f} vs {planned_full / 2**20:.1f} MiB, checkpointed " \
          f"{measured_ckpt / 2**20:.1f} vs {planned_ckpt / 2**20:.1f} MiB"
    print(mib)
    assert measured_full == pytest.approx(planned_full, rel=0.10), mib
    assert measured_ckpt == pytest.approx(planned_ckpt, rel=0.10), mib
