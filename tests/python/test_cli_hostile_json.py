"""Hostile JSON through every longwriter-zero subcommand that reads JSON (issue 15), table-driven:
each entry point (JSONL rows of the text, tokenize, model and plot subcommands; a model folder's
config.json, generation_config.json, model.safetensors header and index, tokenizer.json and
tokenizer_config.json; a LoRA adapter_config.json; the run config) x each hostile family (70,000
levels of nesting, a NUL byte after or inside the document, bytes after the value, 1e400, invalid
UTF-8, a field of the wrong type), plus the run config's --set values and out-of-range counts.
Every case exits with code 1 and "longwriter-zero: error: <file>:<line>: ..." (or the field or
key), never a signal (a stack overflow is SIGSEGV), within seconds. The references: RFC 8259 (one
value, UTF-8, no raw control characters; a parser may bound depth and number range) and the
reference safetensors, which rejects any byte after the header's object."""
import json
import os
import pathlib
import subprocess
from dataclasses import dataclass, field
from typing import Callable

import pytest

from cli_program import PROGRAM, SOURCE

TINY = SOURCE / "examples" / "data" / "tiny" / "base-policy"

DEEP = b"[" * 70_000 + b"]" * 70_000

# family -> how it breaks a valid one-line JSON object
FAMILIES = {
    "deep nesting": lambda o: b'{"deep": ' + DEEP + b", " + o[1:],
    "NUL after the document": lambda o: o + b'\0{"more": 1}',
    "NUL inside the document": lambda o: b"{\0" + o[1:],
    "bytes after the value": lambda o: o + b" x",
    "1e400": lambda o: b'{"big": 1e400, ' + o[1:],
    "invalid UTF-8": lambda o: b'{"bad": "\xff\xfe", ' + o[1:],
}

# A byte-level BPE tokenizer.json with four tokens (the least the loader accepts): fast to load.
TINY_TOKENIZER = {
    "version": "1.0", "added_tokens": [], "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
              "vocab": {"a": 0, "b": 1, "ab": 2, "c": 3}, "merges": ["a b"]},
}


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def safetensors_file(header: bytes, data: bytes = b"ab") -> bytes:
    return len(header).to_bytes(8, "little") + header + data


def model_folder(tmp: pathlib.Path) -> pathlib.Path:
    """The tiny model's weights and config, linked, with the four-token tokenizer (fast to load; every
    case fails before a token is encoded). The hostile file replaces one of them."""
    folder = tmp / "model"
    folder.mkdir(exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        (folder / name).symlink_to(TINY / name)
    (folder / "tokenizer.json").write_bytes(compact(TINY_TOKENIZER))
    return folder


def replace(path: pathlib.Path, data: bytes):
    if path.is_symlink():
        path.unlink()
    path.write_bytes(data)


ROWS = ["--input", "{tmp}/rows.jsonl"]


@dataclass
class Entry:
    name: str
    file: str                 # where the document goes, relative to the test's folder
    valid: bytes              # a one-line document the entry point accepts
    wrong_type: bytes         # the same with `field` of the wrong type
    field: str                # what the wrong-type message names
    args: list                # the command line ({tmp} = the test's folder)
    jsonl: bool = False       # the document is line 2, after a valid line 1
    lines: bool = True        # False: a binary container, the message names the header's byte
    setup: Callable = field(default=lambda tmp: None)
    wrap: Callable = field(default=lambda document: document)


def tiny_config() -> dict:
    return json.loads((TINY / "config.json").read_text())


ENTRIES = [
    Entry("count-words rows", "rows.jsonl", b'{"response":"a b"}', b'{"response":5}', '"response"',
          ["count-words", *ROWS], jsonl=True),
    Entry("length-target rows", "rows.jsonl", b'{"prompt":"Write 300 words."}', b'{"prompt":["x"]}', '"prompt"',
          ["length-target", *ROWS], jsonl=True),
    Entry("score rows", "rows.jsonl", b'{"prompt":"Write 300 words.","response":"a b"}',
          b'{"prompt":"Write 300 words.","response":"a b","lower":1e29,"upper":5}', '"lower"',
          ["score", *ROWS], jsonl=True),
    Entry("tokenize rows", "rows.jsonl", b'{"prompt":"ab"}', b'{"prompt":{}}', '"prompt"',
          ["tokenize", "--tokenizer", "{tmp}/tokenizer.json", *ROWS], jsonl=True,
          setup=lambda tmp: (tmp / "tokenizer.json").write_bytes(compact(TINY_TOKENIZER))),
    Entry("plot metrics.jsonl", "metrics.jsonl", b'{"step":1,"reward":0.5}', b'{"step":"one"}', '"step"',
          ["plot", "{tmp}/metrics.jsonl", "--output", "{tmp}/plot.png"], jsonl=True),
    Entry("tokenizer.json", "tokenizer.json", compact(TINY_TOKENIZER),
          compact({**TINY_TOKENIZER, "model": {**TINY_TOKENIZER["model"], "vocab": {"a": "zero"}}}), "model.vocab",
          ["tokenize", "--tokenizer", "{tmp}/tokenizer.json", *ROWS],
          setup=lambda tmp: (tmp / "rows.jsonl").write_bytes(b'{"prompt":"ab"}\n')),
    Entry("tokenizer_config.json", "tokenizer_config.json", b'{"eos_token":"c"}', b'{"eos_token":5}', "eos_token",
          ["tokenize", "--tokenizer", "{tmp}", *ROWS],
          setup=lambda tmp: ((tmp / "tokenizer.json").write_bytes(compact(TINY_TOKENIZER)),
                             (tmp / "rows.jsonl").write_bytes(b'{"prompt":"ab"}\n'))),
    Entry("a model's config.json", "model/config.json", compact(tiny_config()),
          compact({**tiny_config(), "hidden_size": "64"}), "hidden_size",
          ["generate", "--model", "{tmp}/model", "--max-new-tokens", "1", *ROWS], setup=model_folder),
    Entry("a model's generation_config.json", "model/generation_config.json", b'{"eos_token_id":151643}',
          b'{"eos_token_id":"x"}', "eos_token_id",
          ["generate", "--model", "{tmp}/model", "--max-new-tokens", "1", *ROWS], setup=model_folder),
    Entry("a model's model.safetensors header", "model/model.safetensors",
          b'{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}',
          b'{"a":{"dtype":5,"shape":[2],"data_offsets":[0,2]}}', "dtype",
          ["generate", "--model", "{tmp}/model", "--max-new-tokens", "1", *ROWS], lines=False, setup=model_folder,
          wrap=safetensors_file),
    Entry("a model's model.safetensors.index.json", "model/model.safetensors.index.json",
          b'{"metadata":{},"weight_map":{"model.norm.weight":"weights.safetensors"}}',
          b'{"metadata":{},"weight_map":["weights.safetensors"]}', "weight_map",
          ["generate", "--model", "{tmp}/model", "--max-new-tokens", "1", *ROWS],
          setup=lambda tmp: (model_folder(tmp) / "model.safetensors").rename(tmp / "model" / "weights.safetensors")),
    Entry("a LoRA adapter_config.json", "adapter/adapter_config.json",
          b'{"peft_type":"LORA","r":2,"lora_alpha":4,"target_modules":["q_proj"]}',
          b'{"peft_type":"LORA","r":"two","lora_alpha":4,"target_modules":["q_proj"]}', "r:",
          ["generate", "--model", "{tmp}/model", "--adapter", "{tmp}/adapter", "--max-new-tokens", "1", *ROWS],
          setup=lambda tmp: (model_folder(tmp), (tmp / "adapter").mkdir())),
    Entry("eval rows", "rows.jsonl", b'{"prompt":"Write 300 words."}', b'{"prompt":"Write.","length":1.2e29}',
          '"length"', ["eval", "--model", "{tmp}/model", "--max-new-tokens", "1", *ROWS], jsonl=True,
          setup=model_folder),
    Entry("the run config", "config.json", compact({"seed": 0, "device": "cpu"}), b'{"seed":"zero"}', "seed",
          ["train", "--config", "{tmp}/config.json"]),
]


def run(entry: Entry, tmp: pathlib.Path, document: bytes):
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target longwriter-zero)")
    entry.setup(tmp)
    if entry.file != "rows.jsonl" and not (tmp / "rows.jsonl").exists():
        (tmp / "rows.jsonl").write_bytes(b'{"prompt":"Write 300 words."}\n')
    text = entry.valid + b"\n" + document + b"\n" if entry.jsonl else document
    replace(tmp / entry.file, entry.wrap(text))
    args = [str(PROGRAM), *[a.replace("{tmp}", str(tmp)) for a in entry.args]]
    result = subprocess.run(args, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, f"exit {result.returncode} (a negative code is a signal): {result.stderr[-2000:]!r}"
    message = result.stderr.decode("utf-8")  # the message itself is valid UTF-8
    assert message.startswith("longwriter-zero: error: "), message[-2000:]
    assert len(message) < 1000, "the document was echoed"
    return message


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_a_hostile_document_is_refused_naming_the_file_and_line(tmp_path, entry, family):
    message = run(entry, tmp_path, FAMILIES[family](entry.valid))
    name = pathlib.PurePath(entry.file).name
    if entry.lines:
        assert f"{name}:{2 if entry.jsonl else 1}: invalid JSON at column " in message
    else:
        assert f"{name}: header is not valid JSON (at byte " in message


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_a_field_of_the_wrong_type_is_refused_naming_the_file_and_field(tmp_path, entry):
    message = run(entry, tmp_path, entry.wrong_type)
    assert pathlib.PurePath(entry.file).name in message and entry.field in message
    if entry.jsonl:
        assert f"{pathlib.PurePath(entry.file).name}:2: " in message


# --set key=value (bytes: argv may hold any byte but NUL) -> what the message names
SETS = [
    (b"trainer.group_size=1000000000", "trainer.group_size: expected an integer in [0, 1048576]"),
    (b"trainer.group_size=1e9", "trainer.group_size: expected an integer in [0, 1048576]"),
    (b"trainer.prompts_per_step=1048576", "prompts_per_step * group_size: expected at most 1048576"),
    (b"trainer.sampling.max_new_tokens=100000000000", "trainer.sampling.max_new_tokens: expected an integer"),
    (b"trainer.steps=18446744073709551615", "trainer.steps: expected an integer in [0, 1048576]"),
    (b"trainer.steps=1e400", "trainer.steps: expected an integer"),
    (b"seed=-5", "seed: expected an integer in [0, 9223372036854775807]"),
    (b"rewards.length.max_words=1e30", "rewards.length.max_words: expected an integer"),
    (b"description=\xff\xfe", '--set "description": the value is not valid UTF-8'),
    (b"trainer.\xff=1", '--set "trainer.\ufffd": the key is not valid UTF-8'),
    # 60,000 levels: argv strings stop at 128 KiB
    (b"trainer.steps=" + b"[" * 60_000 + b"]" * 60_000,
     "--set trainer.steps:1: invalid JSON at column 257: nested deeper"),
]


@pytest.mark.parametrize("override,expected", SETS, ids=[s[1][:48] for s in SETS])
def test_a_bad_set_value_is_refused_naming_the_key(tmp_path, override, expected):
    config = SOURCE / "examples" / "configs" / "tiny.json"
    (tmp_path / "tokenizer.json").write_bytes(compact(TINY_TOKENIZER))  # loads in milliseconds, unlike Qwen's
    sets = [b"output_dir=" + compact(str(tmp_path / "run")), b"tokenizer=" + compact(str(tmp_path / "tokenizer.json"))]
    args = [os.fsencode(PROGRAM), b"train", b"--config", os.fsencode(config)]
    for value in (*sets, override):
        args += [b"--set", value]
    result = subprocess.run(args, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1, f"exit {result.returncode}: {result.stderr[-2000:]!r}"
    message = result.stderr.decode("utf-8")
    assert expected in message, message[-2000:]
    assert len(message) < 1000
    assert not (tmp_path / "run").exists(), "work started before the config was checked"
