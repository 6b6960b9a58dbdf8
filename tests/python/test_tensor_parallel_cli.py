"""`longwriter-zero train` with the policy split over a tensor-parallel group (parallel.tensor),
launched by torchrun on the CPU (Gloo): T = 2 (two processes) and T = 2 x D = 2 (four). The
reference is the same config in one process: the same completions, metrics and weights (up to
the order of float sums), and checkpoints that are one process's (whole tensors, Hugging Face
format), which transformers loads with matching logits. Bad meshes fail naming what would work."""
import json
import pathlib

import pytest
import torch
from safetensors.torch import load_file

from test_distributed_cli import dp_config, rows, torchrun
from test_train_cli import run


def tp_run(tmp: pathlib.Path, config: pathlib.Path, name: str, nproc: int, tensor: int, dotted: bool = False):
    # dotted: --set parallel.tensor=T, which creates the section the config does not have
    mesh = f"parallel.tensor={tensor}" if dotted else f"parallel={json.dumps({'tensor': tensor})}"
    result = torchrun(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp / name))}",
                       "--set", mesh], nproc=nproc, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


def tp_config(tmp: pathlib.Path) -> pathlib.Path:
    """dp_config with top_k = 4: the fixture policy is random, so its next-token distribution over
    151,936 ids is nearly flat and a 1e-7 change of the logits (sums in another order) moves
    inverse-CDF sampling to a neighbouring id in about one token of 50; among 4 candidates it
    would take a change ~1e6 times larger. With it both runs sample the same completions."""
    config = json.loads(dp_config(tmp).read_text())
    config["trainer"]["sampling"]["top_k"] = 4
    path = tmp / "tp_config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tp")
    config = tp_config(tmp)
    single = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp / 'single'))}"])
    assert single.returncode == 0, single.stderr.decode()
    logs = {"t2": tp_run(tmp, config, "t2", 2, 2), "t2d2": tp_run(tmp, config, "t2d2", 4, 2, dotted=True)}
    return tmp, logs


def test_the_ranks_form_the_mesh(runs):
    _, logs = runs
    assert "rank 1 of 2 (gloo on cpu), tensor rank 1 of 2, data rank 0 of 1" in logs["t2"]
    assert "rank 3 of 4 (gloo on cpu), tensor rank 1 of 2, data rank 1 of 2" in logs["t2d2"]


@pytest.mark.parametrize("name", ["t2", "t2d2"])
def test_tensor_parallel_training_reaches_the_weights_of_one_process(runs, name):
    tmp, _ = runs
    for step in ("step-000001", "step-000002"):
        one = load_file(str(tmp / "single" / "checkpoints" / step / "policy" / "model.safetensors"))
        split = load_file(str(tmp / name / "checkpoints" / step / "policy" / "model.safetensors"))
        assert one.keys() == split.keys()
        for k in one:
            assert one[k].shape == split[k].shape, k  # whole tensors, not a rank's slice
        differ = max((one[k] - split[k]).abs().max().item() for k in one)
        assert differ < 1e-5, f"{step}: the tensor-parallel weights differ from one process's by {differ}"
        adam_one = load_file(str(tmp / "single" / "checkpoints" / step / "optimizer.safetensors"))
        adam_split = load_file(str(tmp / name / "checkpoints" / step / "optimizer.safetensors"))
        assert adam_one.keys() == adam_split.keys()
        for k in adam_one:
            assert adam_one[k].shape == adam_split[k].shape, k
            assert (adam_one[k] - adam_split[k]).abs().max().item() < 1e-5, k


@pytest.mark.parametrize("name", ["t2", "t2d2"])
def test_tensor_parallel_training_reports_the_metrics_and_samples_of_one_process(runs, name):
    tmp, _ = runs
    one, split = rows(tmp / "single" / "metrics.jsonl"), rows(tmp / name / "metrics.jsonl")
    assert [r["step"] for r in split] == [1, 2]
    for a, b in zip(one, split):
        assert a["completion_tokens"] == b["completion_tokens"]  # the same completions were sampled
        assert a["trained_tokens"] == b["trained_tokens"]
        for key in ("reward", "loss", "grad_norm", "entropy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(rows(tmp / "single" / "samples.jsonl"), rows(tmp / name / "samples.jsonl")):
        for key in ("step", "group", "prompt", "completion", "finish_reason"):
            assert a[key] == b[key], key


def test_a_tensor_parallel_checkpoint_loads_in_transformers(runs):
    transformers = pytest.importorskip("transformers")
    tmp, _ = runs
    ids = torch.tensor([[9707, 11, 1879, 0, 576, 3974, 13876, 198]])
    logits = {}
    for name in ("single", "t2d2"):
        model = transformers.AutoModelForCausalLM.from_pretrained(tmp / name / "checkpoints" / "step-000002" / "policy")
        with torch.no_grad():
            logits[name] = model(ids).logits
    assert (logits["single"] - logits["t2d2"]).abs().max().item() < 1e-4


@pytest.mark.parametrize("nproc,tensor,expected", [
    (2, 3, "parallel.tensor = 3: WORLD_SIZE 2 is not a multiple of it"),
    (3, 3, "parallel.tensor = 3: the model's num_attention_heads (4) is not divisible by it"),
])
def test_a_bad_mesh_is_named(tmp_path, nproc, tensor, expected):
    config = dp_config(tmp_path)
    result = torchrun(["train", "--config", str(config), "--set", f"parallel={json.dumps({'tensor': tensor})}"],
                      nproc=nproc, timeout=120)
    assert result.returncode != 0
    assert expected in result.stderr.decode()


@pytest.mark.parametrize("nproc,reference,exact", [(4, "t2d2", True), (2, "t2", False)])
def test_a_tensor_parallel_run_resumes_exactly_and_on_another_data_parallel_size(runs, nproc, reference, exact):
    """Resume T = 2 x D = 2's step-1 checkpoint on the same mesh (bit for bit the uninterrupted
    run) and on T = 2 x D = 1 (the T = 2 run's step 2, up to the order of the data-parallel sum)."""
    tmp, _ = runs
    config = tmp / "tp_config.json"
    out = tmp / f"resumed-{nproc}"
    result = torchrun(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(out))}",
                       "--set", f"parallel={json.dumps({'tensor': 2})}",
                       "--resume", str(tmp / "t2d2" / "checkpoints" / "step-000001")], nproc=nproc, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    want = load_file(str(tmp / reference / "checkpoints" / "step-000002" / "policy" / "model.safetensors"))
    got = load_file(str(out / "checkpoints" / "step-000002" / "policy" / "model.safetensors"))
    differ = max((want[k] - got[k]).abs().max().item() for k in want)
    if exact:
        assert differ == 0.0
        adam_want = load_file(str(tmp / reference / "checkpoints" / "step-000002" / "optimizer.safetensors"))
        adam_got = load_file(str(out / "checkpoints" / "step-000002" / "optimizer.safetensors"))
        assert all(torch.equal(adam_want[k], adam_got[k]) for k in adam_want)
    else:
        assert differ < 1e-5


def memory_config(tmp: pathlib.Path, hidden: int) -> pathlib.Path:
    """One step of a randomly initialised untied policy whose vocabulary rows dominate its size
    (2 x 151,936 x hidden parameters), so weights, gradients and AdamW moments dominate the RSS."""
    config = json.loads(dp_config(tmp).read_text())
    config["policy"] = {"init": {"config": {
        "model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 151936, "hidden_size": hidden,
        "intermediate_size": 2 * hidden, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
        "max_position_embeddings": 1024, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
        "hidden_act": "silu", "initializer_range": 0.02, "bos_token_id": 151643, "eos_token_id": 151643}},
        "logprob_chunk_size": 64}
    config["trainer"].update({"steps": 1, "save_every": 0, "save_final": False, "dynamic_sampling_rounds": 0})
    path = tmp / f"memory_{hidden}.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def test_each_rank_holds_about_half_of_the_model_under_two_way_tensor_parallelism(tmp_path):
    """Rank 0's peak RSS (VmHWM, metrics.jsonl) less the same run with a small model: the memory
    the model's weights, gradients and AdamW moments take. By hand: 2 x 151,936 x 512 = 155.6M
    parameters x 16 bytes (fp32 weight, gradient, two moments) = 2.3 GiB in one process; each of
    two tensor-parallel ranks holds half of every split tensor."""
    peaks = {}
    for tensor in (1, 2):
        for hidden in (64, 512):
            config = memory_config(tmp_path, hidden)
            out = tmp_path / f"t{tensor}-h{hidden}"
            args = ["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(out))}",
                    "--set", f"parallel={json.dumps({'tensor': tensor})}"]
            result = run(args) if tensor == 1 else torchrun(args, nproc=2, timeout=600)
            assert result.returncode == 0, result.stderr.decode()
            peaks[tensor, hidden] = rows(out / "metrics.jsonl")[-1]["memory"]["host_rss_peak_gib"]
    one = peaks[1, 512] - peaks[1, 64]
    split = peaks[2, 512] - peaks[2, 64]
    expected_one = (2 * 151936 * 512 - 2 * 151936 * 64) * 16 / 2**30
    assert one == pytest.approx(expected_one, rel=0.35), peaks
    assert 0.4 < split / one < 0.62, peaks


PROMPTS = ["Once upon a time", "写一首关于秋天的诗", "<|im_start|>user\nWrite a haiku.<|im_end|>\n<|im_start|>assistant\n"]


def lines(result):
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("utf-8").split("\n") if line]


def test_generate_and_logprobs_split_over_two_ranks_answer_as_one_process(tmp_path):
    """Rank 0 writes, rank 1 stays silent; ids are one process's (greedy, and seeded top-k), the
    log-probs within 1e-4 of one process's."""
    from test_train_cli import MODEL
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}, ensure_ascii=False) + "\n" for p in PROMPTS))
    for sampling in (["--greedy"], ["--top-k", "4", "--temperature", "0.8", "--seed", "5"]):
        args = ["generate", "--model", str(MODEL), "--input", str(prompts), "--max-new-tokens", "16", *sampling]
        one = lines(run(args))
        split = lines(torchrun([*args, "--tensor-parallel", "2"], nproc=2, timeout=300))
        assert len(one) == len(split) == len(PROMPTS)
        for a, b in zip(one, split):
            assert a["completion_ids"] == b["completion_ids"]
            assert b["completion_logprobs"] == pytest.approx(a["completion_logprobs"], abs=1e-4)
    scored_input = tmp_path / "scored.jsonl"
    scored_input.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in one))
    args = ["logprobs", "--model", str(MODEL), "--input", str(scored_input), "--entropy", "--chunk-size", "3"]
    one_lp, split_lp = lines(run(args)), lines(torchrun([*args, "--tensor-parallel", "2"], nproc=2, timeout=300))
    for a, b in zip(one_lp, split_lp):
        assert b["logprobs"] == pytest.approx(a["logprobs"], abs=1e-4)
        assert b["entropy"] == pytest.approx(a["entropy"], abs=1e-4)


def test_tensor_parallel_commands_need_their_launch(tmp_path):
    from test_train_cli import MODEL
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hello"}) + "\n")
    alone = run(["generate", "--model", str(MODEL), "--input", str(prompts), "--tensor-parallel", "2"])
    assert alone.returncode != 0 and "launch it as 2 ranks (torchrun --nproc_per_node 2" in alone.stderr.decode()
    piped = torchrun(["generate", "--model", str(MODEL), "--tensor-parallel", "2"], nproc=2, timeout=120)
    assert piped.returncode != 0 and "--input must be a file" in piped.stderr.decode()
