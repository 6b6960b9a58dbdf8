"""`longwriter-zero train` as a data-parallel job, launched as PyTorch users launch: torchrun
(from the torch wheel) starts two ranks that join a Gloo group on the CPU. The reference is the
same config run in one process: the two ranks must sample the same completions, report the same
metrics, write the same completions table and reach the same weights (up to the order of float
sums), which holds only if prompts, seeds, loss normalisers and gradient sums are all global."""
import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from test_train_cli import MODEL, PROGRAM, run, small_config


def dp_config(tmp: pathlib.Path, **trainer) -> pathlib.Path:
    config = json.loads(small_config(tmp).read_text())
    config["trainer"].update({"prompts_per_step": 2, "log_samples_per_group": 2, "dynamic_sampling_rounds": 2, **trainer})
    path = tmp / "dp_config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def torchrun(args, nproc=2, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           "--no-python", str(PROGRAM), *args], capture_output=True, timeout=timeout, env=env)


def rows(path: pathlib.Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    config = dp_config(tmp)
    single = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp / 'single'))}"])
    assert single.returncode == 0, single.stderr.decode()
    dp = torchrun(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp / 'dp'))}"])
    assert dp.returncode == 0, dp.stderr.decode()
    sharded = torchrun(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp / 'sharded'))}",
                        "--set", "trainer.shard_optimizer_state=true"])
    assert sharded.returncode == 0, sharded.stderr.decode()
    return tmp, dp.stderr.decode()


def test_both_ranks_join_a_gloo_group(runs):
    _, stderr = runs
    assert "rank 0 of 2 (gloo on cpu)" in stderr
    assert "rank 1 of 2 (gloo on cpu)" in stderr
    assert stderr.count("step 2/2") == 1  # one progress line per step: rank 0's


@pytest.mark.parametrize("run_name", ["dp", "sharded"])
def test_two_ranks_reach_the_weights_of_one_process(runs, run_name):
    """Replicated optimizer state, and sharded (each rank steps half the tensors; the checkpoint
    is gathered whole)."""
    tmp, _ = runs
    base = load_file(str(MODEL / "model.safetensors"))
    for step in ("step-000001", "step-000002"):
        one = load_file(str(tmp / "single" / "checkpoints" / step / "policy" / "model.safetensors"))
        two = load_file(str(tmp / run_name / "checkpoints" / step / "policy" / "model.safetensors"))
        assert one.keys() == two.keys()
        moved = max((one[k] - base[k]).abs().max().item() for k in one if k in base)
        assert moved > 5e-3  # lr 1e-2: the step moved the weights by ~lr
        differ = max((one[k] - two[k]).abs().max().item() for k in one)
        assert differ < 1e-5, f"{step}: the data-parallel weights differ from one process's by {differ}"
        adam_one = load_file(str(tmp / "single" / "checkpoints" / step / "optimizer.safetensors"))
        adam_two = load_file(str(tmp / run_name / "checkpoints" / step / "optimizer.safetensors"))
        assert adam_one.keys() == adam_two.keys() and len(adam_one) == 2 * 25  # both moments of the 25 trained tensors
        assert max((adam_one[k] - adam_two[k]).abs().max().item() for k in adam_one) < 1e-5
        state_one = json.loads((tmp / "single" / "checkpoints" / step / "trainer_state.json").read_text())
        state_two = json.loads((tmp / run_name / "checkpoints" / step / "trainer_state.json").read_text())
        for key in ("step", "data_position", "update_index", "seed"):
            assert state_one[key] == state_two[key]


def test_two_ranks_report_the_metrics_and_samples_of_one_process(runs):
    tmp, _ = runs
    one, two = rows(tmp / "single" / "metrics.jsonl"), rows(tmp / "dp" / "metrics.jsonl")
    assert [r["step"] for r in two] == [1, 2]
    for r in one + two:  # dynamic sampling is on; the writing reward varies, so one round suffices
        assert r["dynamic_sampling"] == {"rounds": 1, "groups_drawn": 2, "groups_with_signal": 2, "groups_trained": 2}
    for a, b in zip(one, two):
        assert a["completion_tokens"] == b["completion_tokens"]  # the same completions were sampled
        assert a["trained_tokens"] == b["trained_tokens"] and a["trained_samples"] == b["trained_samples"] == 4
        for key in ("reward", "loss", "grad_norm", "entropy", "answer_words_mean"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), key
        for name, stats in a["rewards"].items():
            assert b["rewards"][name]["mean"] == pytest.approx(stats["mean"], rel=1e-5, abs=1e-6)
    samples_one, samples_two = rows(tmp / "single" / "samples.jsonl"), rows(tmp / "dp" / "samples.jsonl")
    assert len(samples_one) == len(samples_two) == 2 * 2 * 2  # steps x prompts x logged samples
    for a, b in zip(samples_one, samples_two):
        for key in ("step", "group", "prompt", "completion", "completion_tokens", "finish_reason"):
            assert a[key] == b[key], key
        assert b["advantage"] == pytest.approx(a["advantage"], abs=1e-4)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_launch_by_hand_and_a_bad_batch_split_are_named(tmp_path):
    """Without torchrun's agent, rank 0 hosts the store; 3 prompts do not split over 2 ranks."""
    config = dp_config(tmp_path, prompts_per_step=3)
    port = str(free_port())
    procs = []
    for rank in range(2):
        env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
        env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
        procs.append(subprocess.Popen([str(PROGRAM), "train", "--config", str(config)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs = [p.communicate(timeout=120)[1].decode() for p in procs]
    for rank, (p, err) in enumerate(zip(procs, outputs)):
        assert p.returncode != 0
        assert f"rank {rank} of 2 (gloo on cpu)" in err  # the rendezvous worked
        assert "trainer.prompts_per_step: expected a multiple of the data-parallel size 2 (WORLD_SIZE 2 / parallel.tensor 1), found 3" in err


def test_a_half_set_environment_is_named(tmp_path):
    config = dp_config(tmp_path)
    env = dict(os.environ, WORLD_SIZE="2", RANK="0")
    env.pop("MASTER_ADDR", None)
    result = subprocess.run([str(PROGRAM), "train", "--config", str(config)], capture_output=True, timeout=60, env=env)
    assert result.returncode != 0
    assert "MASTER_ADDR" in result.stderr.decode() and "torchrun" in result.stderr.decode()


def test_one_process_commands_refuse_a_launcher(tmp_path):
    config = dp_config(tmp_path)
    env = dict(os.environ, WORLD_SIZE="2", RANK="1", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    for command in (["train-rm", "--config", str(config)], ["eval", "--model", str(MODEL), "--input", str(tmp_path / "prompts.jsonl")]):
        result = subprocess.run([str(PROGRAM), *command], capture_output=True, timeout=60, env=env)
        assert result.returncode != 0
        assert f"{command[0]}: runs in one process" in result.stderr.decode() and "torchrun" in result.stderr.decode()
