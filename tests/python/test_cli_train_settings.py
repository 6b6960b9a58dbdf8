"""Train settings that are legal but useless get a warning, and the collective timeout is a config
key (docs/training.md): `trainer.group_size: 1` trains (every group has zero variance) with a
warning saying so; `distributed.timeout_s` is validated, and a data-parallel rank whose peer is
alive but stopped (SIGSTOP) fails after that many seconds instead of waiting the default hour."""
import json
import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest

from cli_program import PROGRAM, fixture_config, run_program



def run(args, timeout=300, env=None):
    return run_program(args, timeout, env=env)


def config_file(tmp: pathlib.Path) -> pathlib.Path:
    """One GRPO step on the cli_tiny fixture; the writing reward model has random weights (no pairs)."""
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about {t}.", "lower": 10, "upper": 30}) + "\n"
                               for t in ("the sea", "bread")))
    config = fixture_config(tmp, prompts)
    writing = config["rewards"]["writing"]
    del writing["init"]["train"]
    config["trainer"].update({"steps": 1, "prompts_per_step": 2, "group_size": 2, "save_every": 1, "keep_checkpoints": 1})
    config["trainer"]["sampling"]["max_new_tokens"] = 4
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_group_size_one_trains_with_a_warning(tmp_path):
    result = run(["train", "--config", config_file(tmp_path), "--set", "trainer.group_size=1",
                  "--set", 'distributed={"timeout_s": 600}'])
    error = result.stderr.decode()
    assert result.returncode == 0, error
    assert "warning: trainer.group_size is 1" in error and "every advantage is 0" in error
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["zero_variance_group_fraction"] == 1.0
    plain = run(["train", "--config", config_file(tmp_path), "--output", tmp_path / "plain"])
    assert plain.returncode == 0 and "warning: trainer.group_size" not in plain.stderr.decode()


@pytest.mark.parametrize("value,message", [
    ("0", "distributed.timeout_s: expected seconds in [1, 2592000], found 0"),
    ("-5", "distributed.timeout_s: expected seconds in [1, 2592000], found -5"),
    ("1e12", "distributed.timeout_s: expected seconds in [1, 2592000], found 1000000000000"),
    ('"soon"', "distributed.timeout_s"),
])
def test_a_bad_timeout_is_refused_naming_the_key(tmp_path, value, message):
    result = run(["train", "--config", config_file(tmp_path), "--set", f'distributed={{"timeout_s": {value}}}'])
    assert result.returncode != 0 and message in result.stderr.decode(), result.stderr.decode()
    result = run(["train", "--config", config_file(tmp_path), "--set", 'distributed={"timeot_s": 5}'])
    assert result.returncode != 0 and "distributed.timeot_s" in result.stderr.decode()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stopped_rank_fails_its_peer_after_the_configured_timeout(tmp_path):
    """Two ranks launched by hand (rank 0 hosts the store); rank 1 is stopped at once. Rank 0 waits
    at the rendezvous for distributed.timeout_s = 3 seconds, not the default hour."""
    config = config_file(tmp_path)
    port = str(free_port())
    procs = []
    try:
        for rank in (1, 0):
            env = dict(os.environ, OMP_NUM_THREADS="1", WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
            env.pop("TORCHELASTIC_USE_AGENT_STORE", None)
            proc = subprocess.Popen([str(PROGRAM), "train", "--config", str(config), "--set", 'distributed={"timeout_s": 3}',
                                     "--output", str(tmp_path / f"rank{rank}")],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            if rank == 1:
                proc.send_signal(signal.SIGSTOP)
            procs.append(proc)
        start = time.monotonic()
        _, err = procs[1].communicate(timeout=120)
        elapsed = time.monotonic() - start
        assert procs[1].returncode != 0, err.decode()
        assert elapsed < 60, f"rank 0 waited {elapsed:.0f} s"
        assert "rendezvous" in err.decode() or "imeout" in err.decode() or "imed out" in err.decode(), err.decode()
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
