"""The longwriter-zero program as the CLI tests run it: where the build, the sources and the
fixtures are (GRPO_BUILD_DIR, GRPO_SOURCE_DIR, GRPO_FIXTURE_DIR, as ctest sets them), and one
way to run it."""
import os
import pathlib
import subprocess

import pytest

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", "."))
FIXTURES = pathlib.Path(os.environ.get("GRPO_FIXTURE_DIR", BUILD / "fixtures")) / "qwen2"
PROGRAM = BUILD / "examples" / "longwriter-zero"
MODEL = FIXTURES / "cli_tiny"  # a tiny random Qwen2 with the real Qwen2.5 tokenizer


def run_program(args, timeout=300, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=None):
    """longwriter-zero with `args` (each passed through str()) and one OpenMP thread; stderr is
    captured, stdout too unless `stdout` says otherwise. `stdin`: bytes to feed it, or what
    subprocess takes (default: nothing to read). `env`: the environment (default: this one's)."""
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target longwriter-zero)")
    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1")
    feed = isinstance(stdin, (bytes, str))
    return subprocess.run([str(PROGRAM), *map(str, args)], input=stdin if feed else None,
                          stdin=None if feed else stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout,
                          env=env)


def fixture_config(tmp: pathlib.Path, prompts: pathlib.Path) -> dict:
    """examples/configs/tiny.json on the cli_tiny fixture: `prompts`, output in tmp/run, the
    fixture as policy and tokenizer, and a one-layer writing reward model (hidden 16) to build.
    Callers add its training data (or drop it) and the trainer's settings."""
    import json
    config = json.loads((SOURCE / "examples" / "configs" / "tiny.json").read_text())
    config.update(output_dir=str(tmp / "run"), tokenizer=str(MODEL), prompts=str(prompts))
    config["policy"]["model"] = str(MODEL)
    config["rewards"]["writing"]["init"]["config"].update({"hidden_size": 16, "intermediate_size": 32,
                                                           "num_hidden_layers": 1, "num_attention_heads": 2,
                                                           "num_key_value_heads": 1})
    return config
