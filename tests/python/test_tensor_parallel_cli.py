"""`longwriter-zero train` with the policy split over a tensor-parallel group (parallel.tensor),
launched by torchrun on the CPU (Gloo): T = 2 (two processes) and T = 2 x D = 2 (four), three
GRPO steps each. The reference is the same config in one process: the same completions, metrics
and weights (up to the order of float sums). Tensor-parallel runs write sharded checkpoints (each
rank its slices, nothing gathered); this file assembles them itself from the documented layout
with safetensors' own reader, and compares them with one process's whole checkpoints; the final
checkpoint's exported policy and `convert --checkpoint` load in transformers with matching
logits; resume works on the same mesh (bit for bit), on another data-parallel size and in one
process. Bad meshes fail naming what would work."""
import json
import pathlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from test_distributed_cli import dp_config, rows, torchrun
from cli_program import MODEL, PROGRAM
from test_train_cli import run

STEPS = ("step-000001", "step-000002", "step-000003")


def tp_run(tmp: pathlib.Path, config: pathlib.Path, name: str, nproc: int, tensor: int, dotted: bool = False):
    # dotted: --set parallel.tensor=T, which creates the section the config does not have
    mesh = f"parallel.tensor={tensor}" if dotted else f"parallel={json.dumps({'tensor': tensor})}"
    result = torchrun(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp / name))}",
                       "--set", mesh], nproc=nproc, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    return result.stderr.decode()


def tp_config(tmp: pathlib.Path) -> pathlib.Path:
    """dp_config for three steps with top_k = 4 and ZeRO-1: the fixture policy is random, so its
    next-token distribution over 151,936 ids is nearly flat and a 1e-7 change of the logits (sums
    in another order) moves inverse-CDF sampling to a neighbouring id in about one token of 50;
    among 4 candidates it would take a change ~1e6 times larger. With it both runs sample the
    same completions."""
    config = json.loads(dp_config(tmp).read_text())
    config["trainer"]["sampling"]["top_k"] = 4
    config["trainer"].update({"steps": 3, "shard_optimizer_state": True})
    path = tmp / "tp_config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def assemble(shards: pathlib.Path, kind: str) -> dict:
    """The whole tensors of a sharded checkpoint's "weights" or "optimizer" files, from the
    documented layout alone: shards/index.json lists the files; a piece that is a slice records
    "slice:<name>" = "<dim> <start> <length> <full>" in its file's metadata."""
    index = json.loads((shards / "index.json").read_text())
    pieces = {}
    for file in index[kind]:
        with safe_open(str(shards / file), "pt") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                text = meta.get(f"slice:{key}")
                pieces.setdefault(key, []).append((tuple(map(int, text.split(" "))) if text else None, f.get_tensor(key)))
    whole = {}
    for key, parts in pieces.items():
        complete = [t for s, t in parts if s is None]
        if complete:
            assert all(torch.equal(complete[0], t) for t in complete), f"{key}: the ranks' copies differ"
            whole[key] = complete[0]
            continue
        dim, full = parts[0][0][0], parts[0][0][3]
        by_start = {}
        for (d, start, length, f), t in parts:
            assert (d, f) == (dim, full) and t.shape[d] == length, key
            if start in by_start:  # a replicated slice: every rank's copy is the same
                assert torch.equal(by_start[start], t), f"{key}: two copies of [{start}, {start + length}) differ"
            by_start.setdefault(start, t)
        at, cut = 0, []
        for start in sorted(by_start):
            assert start == at, f"{key}: a gap at {at}"
            cut.append(by_start[start])
            at += by_start[start].shape[dim]
        assert at == full, key
        whole[key] = torch.cat(cut, dim)
    return whole


def weights_at(run_dir: pathlib.Path, step: str) -> dict:
    folder = run_dir / "checkpoints" / step
    if (folder / "shards").exists():
        return assemble(folder / "shards", "weights")
    return load_file(str(folder / "policy" / "model.safetensors"))


def optimizer_at(run_dir: pathlib.Path, step: str) -> dict:
    folder = run_dir / "checkpoints" / step
    if (folder / "shards").exists():
        return assemble(folder / "shards", "optimizer")
    return load_file(str(folder / "optimizer.safetensors"))


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
    for step in STEPS:
        one, split = weights_at(tmp / "single", step), weights_at(tmp / name, step)
        assert one.keys() == split.keys()
        for k in one:
            assert one[k].shape == split[k].shape, k
        differ = max((one[k] - split[k]).abs().max().item() for k in one)
        assert differ < 1e-5, f"{step}: the tensor-parallel weights differ from one process's by {differ}"
        adam_one, adam_split = optimizer_at(tmp / "single", step), optimizer_at(tmp / name, step)
        assert adam_one.keys() == adam_split.keys()
        for k in adam_one:
            assert adam_one[k].shape == adam_split[k].shape, k
            assert (adam_one[k] - adam_split[k]).abs().max().item() < 1e-5, k


def test_each_rank_writes_only_its_slices(runs):
    """T = 2 x D = 2: two weight files (tensor ranks), four optimizer files (tensor x data ranks);
    a split tensor's piece is half of it; ZeRO-1's data ranks write disjoint sets of moments."""
    tmp, _ = runs
    shards = tmp / "t2d2" / "checkpoints" / "step-000002" / "shards"
    index = json.loads((shards / "index.json").read_text())
    assert (index["tensor_parallel"], index["data_parallel"]) == (2, 2)
    assert index["weights"] == ["weights-tp000-of-002.safetensors", "weights-tp001-of-002.safetensors"]
    assert len(index["optimizer"]) == 4
    whole = weights_at(tmp / "single", "step-000002")
    assert set(index["parameters"]) == set(whole) and set(index["trainable"]) <= set(whole)
    for file in index["weights"]:
        with safe_open(str(shards / file), "pt") as f:
            q = f.get_slice("model.layers.0.self_attn.q_proj.weight").get_shape()
            assert q[0] * 2 == whole["model.layers.0.self_attn.q_proj.weight"].shape[0]
    held = []
    for file in index["optimizer"]:
        with safe_open(str(shards / file), "pt") as f:
            held.append({k.split(".")[1] for k in f.keys() if k.endswith("exp_avg")})
    assert held[0].isdisjoint(held[1]) and held[0] and held[1]  # tensor rank 0: data ranks 0 and 1
    assert held[0] | held[1] == held[2] | held[3]
    assert not (tmp / "t2d2" / "checkpoints" / "step-000002" / "policy").exists()  # only the final one is exported


@pytest.mark.parametrize("name", ["t2", "t2d2"])
def test_tensor_parallel_training_reports_the_metrics_and_samples_of_one_process(runs, name):
    tmp, _ = runs
    one, split = rows(tmp / "single" / "metrics.jsonl"), rows(tmp / name / "metrics.jsonl")
    assert [r["step"] for r in split] == [1, 2, 3]
    for a, b in zip(one, split):
        assert a["completion_tokens"] == b["completion_tokens"]  # the same completions were sampled
        assert a["trained_tokens"] == b["trained_tokens"]
        for key in ("reward", "loss", "grad_norm", "entropy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
    for a, b in zip(rows(tmp / "single" / "samples.jsonl"), rows(tmp / name / "samples.jsonl")):
        for key in ("step", "group", "prompt", "completion", "finish_reason"):
            assert a[key] == b[key], key


def logits_of(folder: pathlib.Path):
    transformers = pytest.importorskip("transformers")
    ids = torch.tensor([[9707, 11, 1879, 0, 576, 3974, 13876, 198]])
    model = transformers.AutoModelForCausalLM.from_pretrained(folder)
    with torch.no_grad():
        return model(ids).logits


def test_the_final_policy_is_exported_whole_and_loads_in_transformers(runs):
    tmp, _ = runs
    final = tmp / "t2d2" / "checkpoints" / "step-000003" / "policy"
    one = logits_of(tmp / "single" / "checkpoints" / "step-000003" / "policy")
    # weights within 1e-5 of one process's after three steps at lr 1e-2: logits within 1e-4 relative
    assert (one - logits_of(final)).abs().max().item() < 1e-4 * max(1.0, one.abs().max().item())
    # the same bytes of weights as the pieces hold
    exported = load_file(str(final / "model.safetensors"))
    pieces = weights_at(tmp / "t2d2", "step-000003")
    assert exported.keys() == pieces.keys() and all(torch.equal(exported[k], pieces[k]) for k in pieces)


def test_convert_writes_a_sharded_checkpoint_whole(runs, tmp_path):
    """An intermediate checkpoint (no policy/ of its own) through `convert --checkpoint`, split in
    several files: transformers loads it with one process's logits of that step."""
    tmp, _ = runs
    out = tmp_path / "converted"
    result = run(["convert", "--checkpoint", str(tmp / "t2d2" / "checkpoints" / "step-000001"), "--out", str(out),
                  "--max-shard-bytes", "2000000"])
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "model.safetensors.index.json").exists() and (out / "tokenizer.json").exists()
    one = tmp / "single" / "checkpoints" / "step-000001" / "policy"
    assert (logits_of(one) - logits_of(out)).abs().max().item() < 1e-4
    # a run's output folder names its latest checkpoint; a whole checkpoint is sent to --model
    latest = run(["convert", "--checkpoint", str(tmp / "t2"), "--out", str(tmp_path / "latest")])
    assert latest.returncode == 0, latest.stderr.decode()
    whole = run(["convert", "--checkpoint", str(tmp / "single"), "--out", str(tmp_path / "x")])
    assert whole.returncode != 0 and "is a whole checkpoint (no shards/index.json)" in whole.stderr.decode()
    dtype = run(["convert", "--checkpoint", str(tmp / "t2"), "--out", str(tmp_path / "y"), "--dtype", "bfloat16"])
    assert dtype.returncode != 0 and "--dtype: a sharded checkpoint is written in its stored dtype" in dtype.stderr.decode()


def test_a_missing_piece_is_named(runs, tmp_path):
    import shutil
    tmp, _ = runs
    copy = tmp_path / "step-000001"
    shutil.copytree(tmp / "t2d2" / "checkpoints" / "step-000001", copy)
    (copy / "shards" / "weights-tp001-of-002.safetensors").unlink()
    result = run(["convert", "--checkpoint", str(copy), "--out", str(tmp_path / "out")])
    assert result.returncode != 0
    assert "weights-tp001-of-002.safetensors: expected a file" in result.stderr.decode()
    assert not (tmp_path / "out").exists()


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


@pytest.mark.parametrize("nproc,tensor,reference,exact", [(4, 2, "t2d2", True), (2, 2, "t2", False),
                                                          (1, 1, "single", False)])
def test_a_tensor_parallel_run_resumes_exactly_and_on_other_meshes(runs, nproc, tensor, reference, exact):
    """Resume T = 2 x D = 2's step-1 checkpoint on the same mesh (bit for bit the uninterrupted
    run), on T = 2 x D = 1 and in one process (T = 1: every rank's slices assembled), each then
    equal to that mesh's own run up to the order of float sums."""
    tmp, _ = runs
    config = tmp / "tp_config.json"
    out = tmp / f"resumed-{nproc}"
    args = ["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(out))}",
            "--set", f"parallel={json.dumps({'tensor': tensor})}",
            "--resume", str(tmp / "t2d2" / "checkpoints" / "step-000001")]
    result = torchrun(args, nproc=nproc, timeout=600) if nproc > 1 else run(args)
    assert result.returncode == 0, result.stderr.decode()
    for step in ("step-000002", "step-000003"):
        want, got = weights_at(tmp / reference, step), weights_at(out, step)
        differ = max((want[k] - got[k]).abs().max().item() for k in want)
        adam_want, adam_got = optimizer_at(tmp / reference, step), optimizer_at(out, step)
        assert adam_want.keys() == adam_got.keys()
        if exact:
            assert differ == 0.0
            assert all(torch.equal(adam_want[k], adam_got[k]) for k in adam_want)
        else:
            assert differ < 1e-5
            assert all((adam_want[k] - adam_got[k]).abs().max().item() < 1e-5 for k in adam_want)


def test_a_sharded_layout_in_one_process_resumes_bit_for_bit(runs, tmp_path):
    """checkpoint_layout = "sharded" without tensor parallelism (T = 1, D = 1): whole pieces; the
    resumed run's step 3 is the uninterrupted one's, bit for bit, and its export is one
    process's whole checkpoint, byte for byte of weights."""
    tmp, _ = runs
    config = tmp / "tp_config.json"
    base = ["train", "--config", str(config), "--set", "trainer.checkpoint_layout=\"sharded\""]
    full = run([*base, "--set", f"output_dir={json.dumps(str(tmp_path / 'full'))}"])
    assert full.returncode == 0, full.stderr.decode()
    resumed = run([*base, "--set", f"output_dir={json.dumps(str(tmp_path / 'resumed'))}",
                   "--resume", str(tmp_path / "full" / "checkpoints" / "step-000002")])
    assert resumed.returncode == 0, resumed.stderr.decode()
    final = "step-000003"
    a, b = weights_at(tmp_path / "full", final), weights_at(tmp_path / "resumed", final)
    assert all(torch.equal(a[k], b[k]) for k in a)
    whole = load_file(str(tmp / "single" / "checkpoints" / final / "policy" / "model.safetensors"))
    exported = load_file(str(tmp_path / "full" / "checkpoints" / final / "policy" / "model.safetensors"))
    assert all(torch.equal(whole[k], exported[k]) for k in whole)


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
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hello"}) + "\n")
    alone = run(["generate", "--model", str(MODEL), "--input", str(prompts), "--tensor-parallel", "2"])
    assert alone.returncode != 0 and "launch it as 2 ranks (torchrun --nproc_per_node 2" in alone.stderr.decode()
    piped = torchrun(["generate", "--model", str(MODEL), "--tensor-parallel", "2"], nproc=2, timeout=120)
    assert piped.returncode != 0 and "--input must be a file" in piped.stderr.decode()


def test_convert_streams_a_checkpoint_written_by_another_writer(tmp_path):
    """A sharded checkpoint written here, in Python, from the documented layout alone (two
    "ranks", every matrix split in halves along one dimension, vectors whole) converts into the
    model it was cut from, bit for bit; and `convert --checkpoint` holds one tensor at a time:
    its peak RSS (the process's ru_maxrss) stays well under `convert --model`'s, which loads the
    whole ~190 MB model first."""
    import os
    import shutil
    import subprocess
    import sys
    transformers = pytest.importorskip("transformers")
    from safetensors.torch import save_file
    config = transformers.Qwen2Config(vocab_size=1024, hidden_size=256, intermediate_size=1024, num_hidden_layers=48,
                                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    source = tmp_path / "source"
    transformers.Qwen2ForCausalLM(config).save_pretrained(source)
    shutil.copy(MODEL / "tokenizer.json", source / "tokenizer.json")
    weights = {}
    for file in sorted(source.glob("*.safetensors")):
        weights.update(load_file(str(file)))
    model_bytes = sum(t.numel() * t.element_size() for t in weights.values())
    assert model_bytes > 180e6

    step = tmp_path / "run" / "checkpoints" / "step-000007"
    shards = step / "shards"
    shards.mkdir(parents=True)
    files = []
    for rank in range(2):
        pieces, meta = {}, {"format": "pt"}
        for i, (name, t) in enumerate(weights.items()):
            if t.dim() == 1:
                pieces[name] = t
                continue
            dim = i % 2  # some split by rows, some by columns
            length = t.shape[dim] // 2
            pieces[name] = t.narrow(dim, rank * length, length).contiguous()
            meta[f"slice:{name}"] = f"{dim} {rank * length} {length} {t.shape[dim]}"
        files.append(f"weights-r{rank}.safetensors")
        save_file(pieces, str(shards / files[-1]), metadata=meta)
    (shards / "index.json").write_text(json.dumps({
        "format": "grpo-sharded-checkpoint-1", "tensor_parallel": 2, "data_parallel": 1, "weights": files,
        "optimizer": [], "parameters": list(weights), "trainable": []}))
    shutil.copy(source / "config.json", shards / "config.json")
    shutil.copy(source / "tokenizer.json", shards / "tokenizer.json")
    (step / "trainer_state.json").write_text(json.dumps({"step": 7, "data_position": 0, "update_index": 7, "seed": 0}))
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step-000007\n")

    # The program is started by a fresh small interpreter: a child forked from this process (1 GB
    # with torch) would report this process's peak (Linux keeps the high-water mark across exec).
    launcher = ("import os, sys\n"
                "pid = os.fork()\n"
                "if pid == 0:\n"
                "    os.execv(sys.argv[1], sys.argv[1:])\n"
                "_, status, usage = os.wait4(pid, 0)\n"
                "print(usage.ru_maxrss, os.waitstatus_to_exitcode(status))\n")

    def peak_rss(args):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        result = subprocess.run([sys.executable, "-c", launcher, str(PROGRAM), *args], capture_output=True, env=env,
                                timeout=300)
        maxrss, code = result.stdout.decode().split()[-2:]
        assert code == "0", result.stderr.decode()
        return int(maxrss) * 1024  # KiB on Linux

    streamed = peak_rss(["convert", "--checkpoint", str(tmp_path / "run"), "--out", str(tmp_path / "out")])
    loaded = peak_rss(["convert", "--model", str(source), "--out", str(tmp_path / "whole")])
    out = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert out.keys() == weights.keys() and all(torch.equal(out[k], weights[k]) for k in weights)
    print(f"peak RSS: convert --checkpoint {streamed / 2**20:.0f} MiB, convert --model {loaded / 2**20:.0f} MiB, "
          f"model {model_bytes / 2**20:.0f} MiB")
    assert streamed < loaded - 0.6 * model_bytes, (streamed, loaded, model_bytes)


def test_sequence_parallel_training_reaches_the_weights_of_one_process(runs):
    """parallel = {"tensor": 2, "sequence": true}: the residual stream's tokens split over the two
    ranks as well (padded to an even length); three steps reach one process's weights and
    moments, with its completions and metrics."""
    tmp, _ = runs
    out = tmp / "t2-sequence"
    result = torchrun(["train", "--config", str(tmp / "tp_config.json"), "--set", f"output_dir={json.dumps(str(out))}",
                       "--set", f"parallel={json.dumps({'tensor': 2, 'sequence': True})}"], nproc=2, timeout=600)
    assert result.returncode == 0, result.stderr.decode()
    assert "tensor rank 1 of 2, data rank 0 of 1, sequence parallel" in result.stderr.decode()
    for step in STEPS:
        one, split = weights_at(tmp / "single", step), weights_at(out, step)
        assert max((one[k] - split[k]).abs().max().item() for k in one) < 1e-5, step
        adam_one, adam_split = optimizer_at(tmp / "single", step), optimizer_at(out, step)
        assert all((adam_one[k] - adam_split[k]).abs().max().item() < 1e-5 for k in adam_one), step
    for a, b in zip(rows(tmp / "single" / "metrics.jsonl"), rows(out / "metrics.jsonl")):
        assert a["completion_tokens"] == b["completion_tokens"]
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-6)
