"""Contracts of `longwriter-zero count-words | length-target | score`, checked against Python:
the LongBench-Write word count with `re`, the paper's Eq. 3 and LongBench-Write's S_l written out
in paper_formulas.py, field order and line-numbered errors."""
import json
import os
import pathlib
import struct
import subprocess

import pytest

from paper_formulas import eq3, longbench_count, s_l

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", "."))
FIXTURES = pathlib.Path(os.environ.get("GRPO_FIXTURE_DIR", BUILD / "fixtures"))
PROGRAM = BUILD / "examples" / "longwriter-zero"
RULER = SOURCE / "examples/data/prompts/longwrite_ruler.jsonl"


def run(args, stdin: bytes):
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target longwriter-zero)")
    return subprocess.run([str(PROGRAM), *args], input=stdin, capture_output=True, timeout=60)


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def outputs(result):
    assert result.returncode == 0, result.stderr.decode()
    # split at "\n" only: str.splitlines() would also split at U+2028, U+0085, ... inside strings
    return [json.loads(line) for line in result.stdout.decode("utf-8").split("\n") if line]


def reference_texts():
    """Every case of the text fixture (adversarial, shipped prompts, random) plus the ruler prompts."""
    data = (FIXTURES / "text" / "word_cases.bin").read_bytes()
    texts, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        raw = data[pos + 4 : pos + 4 + n]
        pos += 4 + n
        _, points = struct.unpack_from("<qI", data, pos)
        pos += 12 + 4 * points
        # Invalid UTF-8 cannot travel in JSON: send Python's replacement decoding (U+FFFD included).
        texts.append(raw.decode("utf-8", errors="replace"))
    texts += [json.loads(l)["prompt"] for l in RULER.read_text(encoding="utf-8").splitlines() if l.strip()]
    return texts


def test_count_words_matches_python_re_on_every_reference_text():
    texts = reference_texts()
    assert len(texts) > 3000
    rows = [{"id": i, "response": t} for i, t in enumerate(texts)]
    out = outputs(run(["count-words"], jsonl(rows)))
    assert len(out) == len(rows)
    mismatches = [(t, o["words"], longbench_count(t)) for t, o in zip(texts, out) if o["words"] != longbench_count(t)]
    assert not mismatches[:5]
    assert [o["id"] for o in out] == list(range(len(rows)))  # order kept


def test_fields_are_kept_in_order_and_new_fields_appended():
    rows = [{"zeta": 1, "alpha": [1, 2], "text": "hello world", "nested": {"b": 1, "a": 2}}]
    result = run(["count-words", "--field", "text"], jsonl(rows))
    line = result.stdout.decode()
    assert list(json.loads(line).keys()) == ["zeta", "alpha", "text", "nested", "words"]
    assert json.loads(line)["words"] == 2
    assert '"nested":{"b":1,"a":2}' in line


def test_answer_only_counts_the_answer_block():
    rows = [{"response": "<think>one two three</think><answer>four five</answer>"}, {"response": "no tags here"}]
    out = outputs(run(["count-words", "--answer-only"], jsonl(rows)))
    assert [o["words"] for o in out] == [2, 0]


def test_blank_lines_are_skipped_and_crlf_accepted():
    out = outputs(run(["count-words"], b'{"response": "a b"}\r\n\n   \n{"response": "c"}\n'))
    assert [o["words"] for o in out] == [2, 1]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        (b"{not json}", b"<stdin>:3: invalid JSON"),
        (b"[1, 2]", b"<stdin>:3: expected a JSON object, found array"),
        (b'{"response": 5}', b'<stdin>:3: field "response" must be a string, found number'),
        (b'{"other": "x"}', b'<stdin>:3: field "response" is missing'),
        (b'{"response": "\xff\xfe"}', b"<stdin>:3: invalid JSON"),
        (b'{"response": "\\ud800"}', b"<stdin>:3: invalid JSON"),
    ],
)
def test_first_bad_line_stops_with_its_number(bad_line, message):
    stdin = b'{"response": "one"}\n\n' + bad_line + b'\n{"response": "never"}\n'
    result = run(["count-words"], stdin)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    # The whole input is checked before anything is written (docs/model.md, "Bad lines").
    assert result.stdout == b""


def test_input_file_and_missing_file(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_bytes(b'{"response": "x y"}\n{"response": null}\n')
    result = run(["count-words", "--input", str(path)], b"")
    assert result.returncode == 1
    assert f"{path}:2: field \"response\" must be a string, found null".encode() in result.stderr
    missing = run(["count-words", "--input", str(tmp_path / "nope.jsonl")], b"")
    assert missing.returncode == 1 and b"cannot open" in missing.stderr


def rule_about(n: int):
    """The paper's rule for an explicit length n (multiples of 1000 here): +-10%, capped."""
    if n > 12000:
        return 10800, 12000
    return n * 9 // 10, min(12000, n * 11 // 10)


def test_length_target_on_every_ruler_prompt():
    rows = [json.loads(l) for l in RULER.read_text(encoding="utf-8").splitlines() if l.strip()]
    out = outputs(run(["length-target", "--input", str(RULER)], b""))
    assert len(out) == len(rows) == 48
    for row, o in zip(rows, out):
        lo, hi = rule_about(row["length"])
        assert o["target"] == {"lower": lo, "upper": hi, "source": "rule"}, row["prompt"]
        assert {k: o[k] for k in row} == row


def test_length_target_default_and_errors():
    out = outputs(run(["length-target"], jsonl([{"prompt": "Write a poem about rain"}])))
    assert out[0]["target"]["source"] == "default"
    result = run(["length-target"], jsonl([{"prompt": ["list"]}]))
    assert result.returncode == 1 and b'<stdin>:1: field "prompt" must be a string, found array' in result.stderr


def answer(words: int) -> str:
    """A think/answer completion whose answer has `words` letter-only tokens (one LongBench word each)."""
    return "<think>plan</think>\n<answer>" + " ".join(f"q{chr(97 + i % 26)}z" for i in range(words)) + "</answer>"


def test_score_matches_eq3_and_s_l():
    sizes = [0, 50, 900, 1000, 1100, 1650, 2200, 5000]
    rows = [{"prompt": "Write a 1000-word essay", "response": answer(n), "length": 1000} for n in sizes]
    out = outputs(run(["score"], jsonl(rows)))
    for n, o in zip(sizes, out):
        assert o["target"] == {"lower": 900, "upper": 1100, "source": "rule"}
        assert o["answer_words"] == n
        assert o["length_reward"] == pytest.approx(eq3(n, 900, 1100), abs=1e-6)
        assert o["S_l"] == pytest.approx(s_l(1000, n), abs=1e-9)
        assert list(o.keys())[:3] == ["prompt", "response", "length"]


def test_score_with_given_range_and_options():
    text = answer(300)
    rows = [{"response": text, "lower": 100, "upper": 200}]
    out = outputs(run(["score", "--max-factor", "3"], jsonl(rows)))[0]
    assert out["target"] == {"lower": 100, "upper": 200, "source": "input"}
    assert out["length_reward"] == pytest.approx(eq3(300, 100, 200, 3.0), abs=1e-6)  # (600-300)/(600-200)
    assert "S_l" not in out
    out = outputs(run(["score", "--max-words", "1000"], jsonl(rows)))[0]
    assert out["length_reward"] == pytest.approx((1000 - 300) / (1000 - 200), abs=1e-6)
    whole = outputs(run(["score", "--whole-response"], jsonl([{"response": "a b c", "lower": 0, "upper": 100}])))[0]
    assert whole["answer_words"] == 3 and whole["length_reward"] == 1.0 and whole["format_reward"] == 0.0


def test_score_penalises_repetition_and_malformed_output():
    para = ("The lighthouse keeper climbed the spiral stairs every evening, counting the steps aloud and "
            "listening to the wind that rattled the narrow windows of the tower.")
    other = ("In the village below, the baker kneaded dough for the morning while the fishermen mended "
             "their nets by the light of a single lantern hanging from the harbour wall.")
    rows = [
        {"response": f"<think>p</think><answer>{para}\n\n{other}</answer>", "lower": 0, "upper": 100},
        {"response": f"<think>p</think><answer>{para}\n\n{other}\n\n{para}</answer>", "lower": 0, "upper": 100},
        {"response": f"<answer>{para}</answer>", "lower": 0, "upper": 100},
    ]
    out = outputs(run(["score"], jsonl(rows)))
    assert out[0]["format_reward"] == 1.0 and out[0]["repetition"] == 0.0
    assert 0.2 < out[1]["repetition"] < 0.5
    assert out[1]["format_reward"] == pytest.approx(1 - out[1]["repetition"], abs=1e-6)
    assert out[2]["format_reward"] == 0.0


@pytest.mark.parametrize(
    "row, message",
    [
        ({"response": "x", "lower": 10}, b'"lower" and "upper" must be given together'),
        ({"response": "x", "lower": 10, "upper": 5}, b'"lower" <= "upper"'),
        ({"response": "x", "lower": -1, "upper": 5}, b'field "lower" must be a whole number'),
        ({"response": "x", "lower": 1.5, "upper": 5}, b'field "lower" must be a whole number'),
        ({"response": "x", "lower": "10", "upper": 5}, b'field "lower" must be a whole number'),
        ({"response": "x", "lower": 1, "upper": 5, "length": 0}, b'field "length" must be > 0'),
        ({"response": "x"}, b'field "prompt" is missing'),
        ({"prompt": "p", "response": 3}, b'field "response" must be a string'),
    ],
)
def test_score_errors_name_line_and_field(row, message):
    result = run(["score"], jsonl([{"prompt": "p", "response": "x"}, row]))
    assert result.returncode == 1
    assert b"<stdin>:2: " in result.stderr and message in result.stderr, result.stderr
    assert result.stdout == b""  # the whole input is checked before anything is written


def test_score_rejects_bad_options():
    for args in (["--max-factor", "1"], ["--max-factor", "nan"], ["--repetition-weight", "-1"]):
        result = run(["score", *args], jsonl([{"prompt": "p", "response": "x"}]))
        assert result.returncode != 0 and result.stdout == b"", args
