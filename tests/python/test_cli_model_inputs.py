"""What the model subcommands check before any work, and their one rule for results that are not
finite (issue "Hostile input and interrupted runs"):

- model folders: a folder, FIFO or dangling link under a checkpoint file's name is named (never a
  hang on a FIFO); a file given for --model is named as such; config.json sizes of 10^12 are
  refused before any allocation, and tensor shapes in the safetensors header are checked against
  config.json before the model is built;
- context length: a prompt whose tokens + max_new_tokens (or + its completion) exceed the model's
  max_position_embeddings is refused naming its line (generate, logprobs, eval) or the prompts
  file's line (train), before any work;
- non-finite results: generate, logprobs and eval refuse a NaN result naming the line, after
  writing every row before it.

Models are copies of the cli_tiny fixture (written by transformers' save_pretrained) changed with
safetensors and plain JSON; the expected token positions come from the tokenizers package."""
import json
import os
import pathlib
import shutil

import pytest

from cli_program import MODEL, SOURCE, run_program



def run(args, stdin=b"", timeout=60):
    return run_program(args, timeout, stdin=stdin)


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def copy_model(tmp: pathlib.Path, name="model", **config_changes) -> pathlib.Path:
    folder = tmp / name
    shutil.copytree(MODEL, folder)
    if config_changes:
        config = json.loads((folder / "config.json").read_text())
        config.update(config_changes)
        (folder / "config.json").write_text(json.dumps(config))
    return folder


# ---- model folders ---------------------------------------------------------------------------

def break_weights_as_folder(folder):
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").mkdir()
    return "model.safetensors", "a folder"


def break_weights_as_fifo(folder):
    (folder / "model.safetensors").unlink()
    os.mkfifo(folder / "model.safetensors")
    return "model.safetensors", "FIFO"


def break_weights_as_dangling_link(folder):
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(folder / "gone.safetensors")
    return "model.safetensors", "dangling symbolic link"


def break_config_as_fifo(folder):
    (folder / "config.json").unlink()
    os.mkfifo(folder / "config.json")
    return "config.json", "FIFO"


def break_tokenizer_as_fifo(folder):
    (folder / "tokenizer.json").unlink()
    os.mkfifo(folder / "tokenizer.json")
    return "tokenizer.json", "FIFO"


def break_generation_config_as_fifo(folder):
    (folder / "generation_config.json").unlink()
    os.mkfifo(folder / "generation_config.json")
    return "generation_config.json", "FIFO"


BROKEN_FOLDERS = [break_weights_as_folder, break_weights_as_fifo, break_weights_as_dangling_link, break_config_as_fifo,
                  break_tokenizer_as_fifo, break_generation_config_as_fifo]


def command_on(command, model, tmp):
    prompts = tmp / "prompts.jsonl"
    prompts.write_text('{"prompt": "Hello there", "completion": " friend"}\n')
    return {
        "generate": ["generate", "--model", model, "--input", prompts, "--max-new-tokens", "2"],
        "logprobs": ["logprobs", "--model", model, "--input", prompts],
        "eval": ["eval", "--model", model, "--input", prompts, "--max-new-tokens", "2"],
        "convert": ["convert", "--model", model, "--out", tmp / "converted"],
    }[command]


@pytest.mark.parametrize("command", ["generate", "logprobs", "eval", "convert"])
@pytest.mark.parametrize("breakage", BROKEN_FOLDERS, ids=lambda f: f.__name__)
def test_a_broken_checkpoint_file_is_named_without_hanging(tmp_path, command, breakage):
    folder = copy_model(tmp_path)
    name, kind = breakage(folder)
    result = run(command_on(command, folder, tmp_path), timeout=30)  # a FIFO that is opened blocks forever
    error = result.stderr.decode()
    assert result.returncode != 0
    assert str(folder / name) in error and kind in error, error
    assert result.stdout == b""


@pytest.mark.parametrize("command", ["generate", "logprobs", "eval", "convert"])
def test_a_file_given_for_the_model_folder_is_named(tmp_path, command):
    for file in (MODEL / "model.safetensors", MODEL / "config.json"):
        result = run(command_on(command, file, tmp_path))
        error = result.stderr.decode()
        assert result.returncode != 0
        assert "--model" in error and f"{file}: expected a checkpoint folder" in error and "a regular file" in error, error


@pytest.mark.parametrize("field", ["hidden_size", "intermediate_size", "vocab_size", "num_hidden_layers"])
def test_absurd_config_sizes_are_refused_before_any_allocation(tmp_path, field):
    folder = copy_model(tmp_path, **{field: 10**12, "layer_types": None})  # layer_types must list every layer
    result = run(command_on("generate", folder, tmp_path), timeout=30)
    error = result.stderr.decode()
    assert result.returncode != 0
    assert f"{folder / 'config.json'}: {field}: 1000000000000 is above the largest supported value" in error, error
    assert "alloc" not in error.lower()


def test_qwen2_72b_sizes_pass_and_a_shape_mismatch_names_the_tensor(tmp_path):
    # Sizes as Qwen2.5-72B's config.json states them are within the limits; the weights on disk
    # (hidden 32) then disagree, which the header check reports before building the model.
    folder = copy_model(tmp_path, hidden_size=8192, intermediate_size=29568, num_hidden_layers=80,
                        num_attention_heads=64, num_key_value_heads=8, vocab_size=152064, layer_types=None)
    result = run(command_on("generate", folder, tmp_path), timeout=30)
    error = result.stderr.decode()
    assert result.returncode != 0
    assert "tensor 'model.embed_tokens.weight': expected shape [152064, 8192], found [151936, 32]" in error, error
    assert "alloc" not in error.lower()


# ---- context length ------------------------------------------------------------------------

def test_prompts_beyond_the_context_are_refused_naming_the_line_before_any_work(tmp_path):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    folder = copy_model(tmp_path, max_position_embeddings=64)
    long_prompt = "tea " * 40
    n = len(tokenizer.encode(long_prompt).ids)
    assert n > 32
    rows = [{"prompt": "Hello there", "completion": " friend"}, {"prompt": long_prompt, "completion": " tea" * 40}]

    result = run(["generate", "--model", folder, "--max-new-tokens", "32"], jsonl(rows))
    error = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b""  # line 1 was not generated either
    assert f"<stdin>:2: the prompt's {n} tokens + --max-new-tokens 32 = {n + 32} tokens exceed the model's context of 64" in error
    assert f"lower --max-new-tokens to at most {64 - n}" in error

    # generate: the new tokens alone can exceed it
    result = run(["generate", "--model", folder, "--max-new-tokens", "70"], jsonl(rows[:1]))
    assert result.returncode == 1 and "<stdin>:1:" in result.stderr.decode() and "max_position_embeddings" in result.stderr.decode()

    completion = len(tokenizer.encode(" tea" * 40).ids)
    result = run(["logprobs", "--model", folder], jsonl(rows))
    assert result.returncode == 1 and result.stdout == b""
    assert f"<stdin>:2: the prompt's {n} tokens + the completion's tokens {completion} = {n + completion}" in result.stderr.decode()

    # eval wraps each prompt in the think template (about 200 tokens): the full-size context, a huge line 2.
    prompts = tmp_path / "eval.jsonl"
    prompts.write_bytes(jsonl([rows[0], {"prompt": "tea " * 5000}]))
    result = run(["eval", "--model", MODEL, "--input", prompts, "--max-new-tokens", "8", "--output", tmp_path / "out.jsonl"])
    error = result.stderr.decode()
    assert result.returncode == 1 and result.stdout == b""
    assert f"{prompts}:2: the prompt has" in error and "the model's whole context is 4096" in error, error
    assert not (tmp_path / "out.jsonl").exists()


def test_train_refuses_a_prompt_beyond_the_context_naming_the_prompts_line(tmp_path):
    config = json.loads((SOURCE / "examples" / "configs" / "tiny.json").read_text())
    prompts = tmp_path / "prompts.jsonl"
    # The think template is about 200 tokens: line 1 fits with 3500 new tokens in 4096, line 3 does not.
    prompts.write_text('{"prompt": "Write about tea."}\n\n' + json.dumps({"prompt": "tea " * 1000}) + "\n")
    config.update(output_dir=str(tmp_path / "run"), tokenizer=str(MODEL), prompts=str(prompts))
    config["policy"]["model"] = str(MODEL)
    config["trainer"]["sampling"]["max_new_tokens"] = 3500
    (tmp_path / "config.json").write_text(json.dumps(config))
    result = run(["train", "--config", tmp_path / "config.json"])
    error = result.stderr.decode()
    assert result.returncode != 0
    assert f"{prompts}:3: the prompt's" in error and "+ trainer.sampling.max_new_tokens 3500 =" in error, error
    assert "exceed the model's context of 4096" in error
    assert "writing reward: Bradley-Terry" not in error  # refused before any work
    assert not (tmp_path / "run").exists()


# ---- non-finite results ----------------------------------------------------------------------

NAN_TOKEN = 50213  # "ebra": ' zebra' is [1147, 50213] in the Qwen2.5 vocabulary (checked below)
GOOD = {"prompt": "Hello there", "completion": " friend"}
POISONED = {"prompt": "A zebra", "completion": " runs"}


@pytest.fixture(scope="module")
def nan_models(tmp_path_factory):
    """`row`: an untied copy of cli_tiny whose embedding of NAN_TOKEN is NaN (only sequences holding
    it go NaN); `all`: a copy whose final norm is NaN (every output is NaN)."""
    import torch
    from safetensors.torch import load_file, save_file
    from tokenizers import Tokenizer

    assert NAN_TOKEN in Tokenizer.from_file(str(MODEL / "tokenizer.json")).encode(POISONED["prompt"]).ids
    tmp = tmp_path_factory.mktemp("nan")
    tensors = load_file(MODEL / "model.safetensors")
    row = copy_model(tmp, "row", tie_word_embeddings=False)
    poisoned = dict(tensors)
    poisoned["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    poisoned["model.embed_tokens.weight"] = tensors["model.embed_tokens.weight"].clone()
    poisoned["model.embed_tokens.weight"][NAN_TOKEN] = float("nan")
    save_file(poisoned, row / "model.safetensors", metadata={"format": "pt"})
    every = copy_model(tmp, "all")
    broken = dict(tensors)
    broken["model.norm.weight"] = torch.full_like(tensors["model.norm.weight"], float("nan"))
    save_file(broken, every / "model.safetensors", metadata={"format": "pt"})
    return {"row": row, "all": every}


@pytest.mark.parametrize("command", ["generate", "logprobs"])
def test_a_nan_result_is_refused_naming_its_line_after_the_rows_before_it(nan_models, command):
    args = [command, "--model", nan_models["row"]] + (["--greedy", "--max-new-tokens", "2"] if command == "generate" else [])
    result = run(args, jsonl([GOOD, POISONED, GOOD]))
    error = result.stderr.decode()
    assert result.returncode == 1
    assert "<stdin>:2:" in error and "finite" in error, error
    rows = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [r["prompt"] for r in rows] == [GOOD["prompt"]]  # line 1 written, line 3 never reached
    values = rows[0]["completion_logprobs" if command == "generate" else "logprobs"]
    assert values and all(isinstance(v, float) for v in values)  # finite numbers, no null


@pytest.mark.parametrize("command", ["generate", "logprobs", "eval"])
def test_a_nan_model_is_refused_by_every_subcommand(tmp_path, nan_models, command):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(jsonl([GOOD, GOOD]))
    args = {"generate": ["generate", "--max-new-tokens", "2"], "logprobs": ["logprobs"],
            "eval": ["eval", "--max-new-tokens", "2", "--output", tmp_path / "out.jsonl"]}[command]
    result = run(args + ["--model", nan_models["all"], "--input", prompts])
    error = result.stderr.decode()
    assert result.returncode == 1
    assert f"{prompts}:1:" in error and "finite" in error, error
    assert b"null" not in result.stdout and result.stdout == b""
    assert not (tmp_path / "out.jsonl").exists()


def test_eval_refuses_a_non_finite_writing_reward_naming_the_line(tmp_path):
    """A reward model whose score head is NaN (made with transformers): eval stops at the first
    prompt's sample, names its line and writes no --output."""
    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=151936, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1, pad_token_id=151643,
                         max_position_embeddings=4096)
    model = Qwen2ForSequenceClassification(config)
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    rm = tmp_path / "rm"
    model.save_pretrained(rm)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(MODEL / name, rm / name)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(jsonl([GOOD, GOOD]))
    result = run(["eval", "--model", MODEL, "--reward-model", rm, "--input", prompts, "--max-new-tokens", "2",
                  "--output", tmp_path / "out.jsonl"])
    error = result.stderr.decode()
    assert result.returncode == 1
    assert f"{prompts}:1: the writing reward of sample 0 is nan (not finite); check the reward model's weights" in error, error
    assert result.stdout == b"" and not (tmp_path / "out.jsonl").exists()
