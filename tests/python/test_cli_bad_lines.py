"""One behaviour on a bad input line for every JSONL subcommand (docs/model.md, "Bad lines"): the
whole input is read and checked before any work, so a bad line is an error naming its line
("<source>:<line>: <reason>", exit code 1) with nothing written to standard output (nor to eval's
--output). Table-driven: each subcommand gets a good line, a blank line, a bad line, a good line."""
import json

import pytest

from cli_program import MODEL, run_program


GOOD = {"prompt": "Write about tea.", "response": "<answer>Tea is calm.</answer>", "completion": " Tea."}

COMMANDS = {
    "count-words": ["count-words"],
    "length-target": ["length-target"],
    "score": ["score"],
    "tokenize": ["tokenize", "--tokenizer", MODEL],
    "generate": ["generate", "--model", MODEL, "--max-new-tokens", "2", "--batch-size", "1"],
    "logprobs": ["logprobs", "--model", MODEL, "--batch-size", "1"],
    "eval": ["eval", "--model", MODEL, "--max-new-tokens", "2", "--batch-size", "1"],
}

# (what is wrong with line 3, its text, what the message says after "<source>:3: ")
BAD_LINES = [
    ("invalid JSON", b'{"prompt": ', "invalid JSON"),
    ("not an object", b'["prompt"]', "expected a JSON object"),
    ("field missing", b'{"other": "x"}', "is missing"),
    ("field mistyped", b'{"prompt": 5, "response": 5, "completion": 5}', "must be a string"),
]


def run(args, timeout=120):
    return run_program(args, timeout)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("what,line,message", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_a_bad_line_is_named_and_nothing_is_written(tmp_path, command, what, line, message):
    data = tmp_path / "in.jsonl"
    data.write_bytes(json.dumps(GOOD).encode() + b"\n\n" + line + b"\n" + json.dumps(GOOD).encode() + b"\n")
    output = tmp_path / "samples.jsonl"
    args = COMMANDS[command] + ["--input", data] + (["--output", output] if command == "eval" else [])
    result = run(args)
    error = result.stderr.decode()
    assert result.returncode == 1, error
    assert f"{data}:3: " in error and message in error, error
    assert result.stdout == b""
    assert not output.exists()


def test_the_same_input_without_the_bad_line_succeeds(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_bytes(json.dumps(GOOD).encode() + b"\n\n" + json.dumps(GOOD).encode() + b"\n")
    for command, args in COMMANDS.items():
        result = run(args + ["--input", data])
        assert result.returncode == 0, (command, result.stderr.decode())
        lines = result.stdout.decode().splitlines()
        assert len(lines) == (1 if command == "eval" else 2), command  # eval prints its summary


def test_generate_names_the_line_of_an_empty_prompt_not_its_place_in_the_batch(tmp_path):
    data = tmp_path / "in.jsonl"
    data.write_text('{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": "c"}\n\n{"prompt": ""}\n')
    result = run(["generate", "--model", MODEL, "--input", data, "--max-new-tokens", "1", "--batch-size", "2"])
    error = result.stderr.decode()
    assert result.returncode == 1
    assert f"{data}:5: field \"prompt\" is empty" in error and "prompt 0" not in error, error
    assert result.stdout == b""
