"""Every file the program writes is checked (docs/training.md, "Output folders and files"): an output
that cannot be written is an error naming its path, before any work where the path is known up
front, and never an exit code 0 with missing output. Table-driven over the subcommands that take an
output path (a file: eval --output, plot -o; a folder: train --output, train-rm --output, convert
--out) and over ways of being unwritable (a missing folder, a path under /proc where nothing can be
created, a folder where a file is expected and a file where a folder is expected), and over the
subcommands that write to standard output, sent to /dev/full."""
import json
import pathlib
import subprocess

import pytest

from cli_program import MODEL, fixture_config, run_program



def run(args, timeout=120, stdout=subprocess.PIPE):
    return run_program(args, timeout, stdout=stdout)


def inputs(tmp: pathlib.Path) -> dict:
    """A prompts file, a metrics file, a pairs file and a train config (the fixture policy)."""
    prompts = tmp / "prompts.jsonl"
    prompts.write_text('{"prompt": "Write about tea.", "completion": " Tea.", "response": "Tea."}\n')
    metrics = tmp / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": s, "reward": 0.1 * s, "rewards": {"length": {"mean": 0.1}},
                                           "answer_words_mean": 10.0 * s, "completion_tokens": {"mean": 5.0}}) + "\n"
                               for s in (1, 2, 3)))
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": "Write about tea.", "chosen": "Tea is calm. " * (i + 1),
                                         "rejected": "calm is tea. " * (i + 1)}) + "\n" for i in range(4)))
    config = fixture_config(tmp, prompts)
    writing = config["rewards"]["writing"]
    writing["init"]["train"].update({"pairs": str(pairs), "epochs": 1, "batch_size": 4, "eval_fraction": 0.25})
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return {"prompts": prompts, "metrics": metrics, "config": path}


# (subcommand, kind of output, the command line without the output path)
FILE_WRITERS = {
    "eval --output": lambda i: ["eval", "--model", MODEL, "--input", i["prompts"], "--max-new-tokens", "2", "--output"],
    "plot -o": lambda i: ["plot", i["metrics"], "-o"],
}
FOLDER_WRITERS = {
    "train --output": lambda i: ["train", "--config", i["config"], "--output"],
    "train-rm --output": lambda i: ["train-rm", "--config", i["config"], "--output"],
    "convert --out": lambda i: ["convert", "--model", MODEL, "--out"],
}

# (name, path under tmp or absolute) -> the path the error must name
FILE_PATHS = {
    "missing folder": lambda tmp: tmp / "no-such-folder" / "out.file",
    "under /proc": lambda tmp: pathlib.Path("/proc/grpo-forbidden.file"),
    "a folder in place of the file": lambda tmp: tmp,
}
FOLDER_PATHS = {
    "under /proc": lambda tmp: pathlib.Path("/proc/grpo-forbidden"),
    "a file in place of the folder": lambda tmp: tmp / "prompts.jsonl",
}


@pytest.mark.parametrize("writer", FILE_WRITERS)
@pytest.mark.parametrize("where", FILE_PATHS)
def test_an_unwritable_output_file_is_an_error_naming_it(tmp_path, writer, where):
    path = FILE_PATHS[where](tmp_path)
    result = run(FILE_WRITERS[writer](inputs(tmp_path)) + [path])
    error = result.stderr.decode()
    assert result.returncode != 0, error
    assert str(path) in error, error


@pytest.mark.parametrize("writer", FOLDER_WRITERS)
@pytest.mark.parametrize("where", FOLDER_PATHS)
def test_an_unwritable_output_folder_is_an_error_naming_it_before_any_work(tmp_path, writer, where):
    path = FOLDER_PATHS[where](tmp_path)
    result = run(FOLDER_WRITERS[writer](inputs(tmp_path)) + [path])
    error = result.stderr.decode()
    assert result.returncode != 0, error
    assert str(path) in error, error
    assert "Bradley-Terry" not in error and "step 1/" not in error  # refused before training anything


@pytest.mark.parametrize("command", ["count-words", "tokenize", "generate", "logprobs", "eval"])
def test_standard_output_that_cannot_be_written_is_an_error(tmp_path, command):
    prompts = inputs(tmp_path)["prompts"]
    args = {"count-words": ["count-words"], "tokenize": ["tokenize", "--tokenizer", MODEL],
            "generate": ["generate", "--model", MODEL, "--max-new-tokens", "2"], "logprobs": ["logprobs", "--model", MODEL],
            "eval": ["eval", "--model", MODEL, "--max-new-tokens", "2"]}[command]
    with open("/dev/full", "wb") as full:
        result = run(args + ["--input", prompts], stdout=full)
    error = result.stderr.decode()
    assert result.returncode != 0
    assert "<stdout>: write failed" in error, error


def test_eval_output_is_written_whole(tmp_path):
    """The reference case: the same command with a writable path exits 0 and writes every sample."""
    i = inputs(tmp_path)
    out = tmp_path / "samples.jsonl"
    result = run(["eval", "--model", MODEL, "--input", i["prompts"], "--max-new-tokens", "2", "--samples", "3",
                  "--output", out])
    assert result.returncode == 0, result.stderr.decode()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["prompt"] == "Write about tea." for r in rows)
    assert json.loads(result.stdout.decode())["samples"] == 3
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []  # no temporary left behind
