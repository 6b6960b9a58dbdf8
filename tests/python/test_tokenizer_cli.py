"""Contract of `longwriter-zero tokenize`, checked against Hugging Face tokenizers: the ids of every
shipped prompt and of a multilingual JSONL equal tokenizers' encode(text).ids (and with
--no-special, encode with encode_special_tokens=True); fields and order are kept; bad lines are
reported by line number."""
import json
import os
import pathlib
import subprocess

import pytest
from tokenizers import Tokenizer

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", "."))
FIXTURES = pathlib.Path(os.environ.get("GRPO_FIXTURE_DIR", BUILD / "fixtures"))
PROGRAM = BUILD / "examples" / "longwriter-zero"
TOKENIZER_DIR = SOURCE / "examples/data/qwen2.5-tokenizer"
RULER = SOURCE / "examples/data/prompts/longwrite_ruler.jsonl"


def run(args, stdin: bytes):
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target longwriter-zero)")
    return subprocess.run([str(PROGRAM), "tokenize", *args], input=stdin, capture_output=True, timeout=120)


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def outputs(result):
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("utf-8").split("\n") if line]


def corpus_texts():
    """The shipped prompts, the think prompt filled in, and the tokenizer fixture's texts
    (invalid UTF-8 cannot travel in JSON: those arrive as Python's replacement decoding)."""
    texts = [json.loads(l)["prompt"] for l in RULER.read_text(encoding="utf-8").splitlines() if l.strip()]
    think = (SOURCE / "examples/data/prompts/think_prompt_en.txt").read_text(encoding="utf-8")
    texts.append(think.replace("{question}", texts[0]))
    cases = json.loads((FIXTURES / "tokenizer" / "cases.json").read_text())["cases"]
    texts += [bytes.fromhex(c["text"]).decode("utf-8", errors="replace") for c in cases]
    return texts


@pytest.fixture(scope="module")
def reference():
    return Tokenizer.from_file(str(TOKENIZER_DIR / "tokenizer.json"))


def test_ids_equal_tokenizers_on_prompts_and_corpus(reference):
    texts = corpus_texts()
    assert len(texts) > 700
    rows = [{"n": i, "prompt": t, "z": [1]} for i, t in enumerate(texts)]
    out = outputs(run(["--tokenizer", str(TOKENIZER_DIR), "--input", "-"], jsonl(rows)))
    assert len(out) == len(rows)
    reference.encode_special_tokens = False
    for row, text in zip(out, texts):
        assert list(row) == ["n", "prompt", "z", "ids"]  # input fields kept, in order, ids appended
        assert row["prompt"] == text
        assert row["ids"] == reference.encode(text).ids, text


def test_no_special_and_field_option(reference, tmp_path):
    texts = ["<|im_start|>user\nhi<|im_end|>", "<think>x</think><|endoftext|>", "plain"]
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl([{"text": t} for t in texts]))
    tokenizer_json = TOKENIZER_DIR / "tokenizer.json"  # a file works as well as its folder
    out = outputs(run(["--tokenizer", str(tokenizer_json), "--field", "text", "--input", str(path), "--no-special"], b""))
    reference.encode_special_tokens = True
    try:
        assert [r["ids"] for r in out] == [reference.encode(t).ids for t in texts]
    finally:
        reference.encode_special_tokens = False


def test_blank_lines_skipped_and_ids_replaced(reference):
    data = b'\n{"prompt": "a b", "ids": "old"}\n   \n{"prompt": ""}\n'
    out = outputs(run(["--tokenizer", str(TOKENIZER_DIR)], data))
    assert out == [{"prompt": "a b", "ids": reference.encode("a b").ids}, {"prompt": "", "ids": []}]


@pytest.mark.parametrize(
    "data, message",
    [
        (b'{"prompt": "ok"}\n{"prompt": 3}\n', "<stdin>:2: field \"prompt\" must be a string"),
        (b'{"prompt": "ok"}\n\n{"other": "x"}\n', "<stdin>:3: field \"prompt\" is missing"),
        (b'{"prompt": "ok"}\nnot json\n', "<stdin>:2: invalid JSON"),
        (b'[1, 2]\n', "<stdin>:1: expected a JSON object"),
    ],
)
def test_bad_lines_name_the_line(data, message):
    result = run(["--tokenizer", str(TOKENIZER_DIR)], data)
    assert result.returncode == 1
    assert message in result.stderr.decode()
    # The whole input is checked before anything is written (docs/model.md, "Bad lines").
    assert result.stdout == b""


def test_bad_tokenizer_path(tmp_path):
    result = run(["--tokenizer", str(tmp_path / "missing")], b'{"prompt": "x"}\n')
    assert result.returncode == 1
    assert "missing" in result.stderr.decode() and "cannot open" in result.stderr.decode()
    broken = tmp_path / "tokenizer.json"
    broken.write_text('{"model": {"type": "WordPiece"')
    result = run(["--tokenizer", str(tmp_path)], b'{"prompt": "x"}\n')
    assert result.returncode == 1
    assert "invalid JSON" in result.stderr.decode()
