"""Count options of the model subcommands are validated before any work: a zero or negative
batch size, sample count or chunk size, a negative seed or stop token id is an error naming the
option (exit code != 0, within seconds), never a hang or a silently wrapped value. Table-driven:
each row breaks one option of an otherwise valid command line."""
import os
import pathlib
import subprocess

import pytest

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", "."))
PROGRAM = BUILD / "examples" / "longwriter-zero"
MODEL = SOURCE / "examples" / "data" / "tiny" / "base-policy"

BAD = [
    ("eval", "--batch-size", "0"),
    ("eval", "--batch-size", "-3"),
    ("eval", "--samples", "0"),
    ("eval", "--max-new-tokens", "0"),
    ("eval", "--seed", "-1"),
    ("generate", "--batch-size", "0"),
    ("generate", "--seed", "-1"),
    ("generate", "--stop-token-id", "-1"),
    ("generate", "--top-k", "-5"),
    ("logprobs", "--batch-size", "0"),
    ("logprobs", "--chunk-size", "0"),
]


@pytest.mark.parametrize("command,option,value", BAD)
def test_a_bad_count_is_refused_naming_the_option(tmp_path, command, option, value):
    prompts = tmp_path / "in.jsonl"
    prompts.write_text('{"prompt": "Write about tea.", "completion": " Tea."}\n')
    args = [str(PROGRAM), command, "--model", str(MODEL), "--input", str(prompts), option, value]
    result = subprocess.run(args, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode != 0
    assert option in result.stderr.decode() + result.stdout.decode()
