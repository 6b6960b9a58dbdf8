"""Contracts of `longwriter-zero generate | logprobs | convert` on a folder written by transformers'
save_pretrained (tests/python/fixtures/qwen2.py: cli_tiny, vocabulary 151,936 with the real Qwen2.5
tokenizer), checked against transformers and tokenizers themselves."""
import json
import os
import pathlib
import subprocess

import pytest
import torch

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
FIXTURES = pathlib.Path(os.environ.get("GRPO_FIXTURE_DIR", BUILD / "fixtures")) / "qwen2"
PROGRAM = BUILD / "examples" / "longwriter-zero"
MODEL = FIXTURES / "cli_tiny"
EOS = 151643  # <|endoftext|>, generation_config.json's eos_token_id

PROMPTS = [
    "Once upon a time",
    "写一首关于秋天的诗",
    "<|im_start|>user\nWrite a haiku.<|im_end|>\n<|im_start|>assistant\n",
]


def run(args, stdin: bytes):
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target longwriter-zero)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(PROGRAM), *args], input=stdin, capture_output=True, timeout=120, env=env)


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


def outputs(result):
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode("utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def hf():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    return model, tokenizer


def hf_greedy(hf, prompt, new_tokens, eos=EOS):
    model, tokenizer = hf
    ids = torch.tensor([tokenizer.encode(prompt)])
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                             eos_token_id=eos, pad_token_id=EOS)
    return out[0, ids.shape[1]:].tolist()


def test_greedy_generate_matches_transformers(hf):
    rows = [{"id": i, "prompt": p} for i, p in enumerate(PROMPTS)]
    out = outputs(run(["generate", "--model", str(MODEL), "--greedy", "--max-new-tokens", "24", "--batch-size", "2"],
                      jsonl(rows)))
    assert [r["id"] for r in out] == [0, 1, 2]
    tokenizer = hf[1]
    for row in out:
        assert list(row) == ["id", "prompt", "completion", "completion_ids", "completion_logprobs", "finish_reason"]
        expected = hf_greedy(hf, row["prompt"], 24)
        assert row["completion_ids"] == expected
        stopped = expected[-1] == EOS
        assert row["finish_reason"] == ("stop" if stopped else "length")
        text_ids = expected[:-1] if stopped else expected
        assert row["completion"] == tokenizer.decode(text_ids, skip_special_tokens=True)
        assert len(row["completion_logprobs"]) == len(expected)


def test_stop_string_and_stop_token(hf):
    tokenizer = hf[1]
    free = hf_greedy(hf, PROMPTS[0], 30, eos=None)
    text = tokenizer.decode(free, skip_special_tokens=True)
    # A stop string made of the text of tokens 8..11 (on character boundaries).
    start = len(tokenizer.decode(free[:8], skip_special_tokens=True))
    stop = tokenizer.decode(free[:12], skip_special_tokens=True)[start:]
    stop = stop.replace("\ufffd", "")
    assert stop and stop in text
    out = outputs(run(["generate", "--model", str(MODEL), "--greedy", "--max-new-tokens", "30", "--no-default-stop",
                       "--stop", stop], jsonl([{"prompt": PROMPTS[0]}])))[0]
    assert out["completion"] == text[: text.index(stop) + len(stop)]
    assert out["finish_reason"] == "stop"
    assert out["completion_ids"] == free[: len(out["completion_ids"])]

    stop_id = free[5]
    out = outputs(run(["generate", "--model", str(MODEL), "--greedy", "--max-new-tokens", "30", "--no-default-stop",
                       "--stop-token-id", str(stop_id)], jsonl([{"prompt": PROMPTS[0]}])))[0]
    assert out["completion_ids"] == free[: free.index(stop_id) + 1]
    assert out["finish_reason"] == "stop"


def test_sampling_is_reproducible_and_independent_of_the_batch_size():
    rows = [{"prompt": p} for p in PROMPTS] + [{"prompt": PROMPTS[0], "seed": 1234}]
    args = ["generate", "--model", str(MODEL), "--temperature", "0.8", "--top-p", "0.95", "--top-k", "50",
            "--max-new-tokens", "16"]
    one = outputs(run(args + ["--seed", "7", "--batch-size", "1"], jsonl(rows)))
    four = outputs(run(args + ["--seed", "7", "--batch-size", "4"], jsonl(rows)))
    assert [r["completion_ids"] for r in one] == [r["completion_ids"] for r in four]
    # Row 3 brings its own seed; row 0 (same prompt, seed 7 + 0) samples differently.
    assert one[3]["completion_ids"] != one[0]["completion_ids"]
    alone = outputs(run(args + ["--seed", "1234"], jsonl([{"prompt": PROMPTS[0]}])))
    assert alone[0]["completion_ids"] == one[3]["completion_ids"]


def test_logprobs_match_transformers(hf):
    model, tokenizer = hf
    rows = [
        {"prompt": PROMPTS[0], "completion": " there was a dragon."},
        {"prompt": PROMPTS[1], "completion": "秋风起，落叶黄。"},
        {"prompt": PROMPTS[2], "completion": "Leaves fall<|im_end|>"},
    ]
    for temperature in ("1", "0.7"):
        out = outputs(run(["logprobs", "--model", str(MODEL), "--temperature", temperature, "--batch-size", "2",
                           "--chunk-size", "3"], jsonl(rows)))
        for row in out:
            prompt_ids = tokenizer.encode(row["prompt"])
            completion_ids = tokenizer.encode(row["completion"])
            ids = torch.tensor([prompt_ids + completion_ids])
            with torch.no_grad():
                logits = model(ids).logits[0].float() / float(temperature)
            logp = torch.log_softmax(logits, -1)
            expected = [logp[len(prompt_ids) + j - 1, t].item() for j, t in enumerate(completion_ids)]
            assert row["logprobs"] == pytest.approx(expected, abs=1e-4)


def test_logprobs_of_generated_ids_equal_the_sampling_logprobs():
    sampled = outputs(run(["generate", "--model", str(MODEL), "--max-new-tokens", "10", "--seed", "3"],
                          jsonl([{"prompt": p} for p in PROMPTS])))
    scored = outputs(run(["logprobs", "--model", str(MODEL)], jsonl(sampled)))
    for row in scored:
        assert row["logprobs"] == pytest.approx(row["completion_logprobs"], abs=1e-4)


def test_bad_input_is_reported_with_its_line():
    result = run(["generate", "--model", str(MODEL), "--max-new-tokens", "2"],
                 b'{"prompt": "a"}\n\n{"text": "b"}\n')
    assert result.returncode == 1
    assert '<stdin>:3: field "prompt" is missing' in result.stderr.decode()
    result = run(["logprobs", "--model", str(MODEL)], b'{"prompt": "a", "completion_ids": [1, 999999]}\n')
    assert result.returncode == 1
    assert "<stdin>:1:" in result.stderr.decode() and "999999" in result.stderr.decode()
    result = run(["generate", "--model", str(FIXTURES / "does-not-exist")], b"")
    assert result.returncode == 1 and "does-not-exist" in result.stderr.decode()
    result = run(["generate", "--model", str(MODEL), "--top-p", "0"], b'{"prompt": "a"}\n')
    assert result.returncode == 1 and "top_p" in result.stderr.decode()
    result = run(["generate", "--model", str(MODEL), "--device", "tpu"], b'{"prompt": "a"}\n')
    assert result.returncode == 1 and "--device" in result.stderr.decode()


@pytest.mark.parametrize("source,dtype,shard", [("tied_gqa2", "float32", "100000"), ("untied_mha", "bfloat16", "5000000000")])
def test_convert_writes_what_transformers_loads(tmp_path, source, dtype, shard):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "converted"
    result = run(["convert", "--model", str(FIXTURES / source), "--out", str(out), "--dtype", dtype,
                  "--max-shard-bytes", shard], b"")
    assert result.returncode == 0, result.stderr.decode()
    assert (out / "model.safetensors.index.json").exists() == (shard == "100000")
    original = AutoModelForCausalLM.from_pretrained(FIXTURES / source, dtype=torch.float32)
    converted = AutoModelForCausalLM.from_pretrained(out)
    assert converted.dtype == getattr(torch, dtype)
    for name, tensor in original.state_dict().items():
        assert torch.equal(converted.state_dict()[name], tensor.to(converted.dtype)), name
    assert converted.config.tie_word_embeddings == original.config.tie_word_embeddings


def test_convert_reward_model_keeps_the_scores(tmp_path):
    from transformers import AutoModelForSequenceClassification

    out = tmp_path / "reward"
    # An earlier convert into the same folder that a kill cut short left its staging folder.
    (tmp_path / ".reward.staging-k1ll3d").mkdir()
    (tmp_path / ".reward.staging-k1ll3d" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / ".reward2.staging-other").mkdir()  # another folder's: not ours to remove
    result = run(["convert", "--model", str(FIXTURES / "reward"), "--out", str(out)], b"")
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".reward2.staging-other", "reward"]
    original = AutoModelForSequenceClassification.from_pretrained(FIXTURES / "reward")
    converted = AutoModelForSequenceClassification.from_pretrained(out)
    ids = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    with torch.no_grad():
        assert torch.equal(original(ids).logits, converted(ids).logits)
    assert converted.config.pad_token_id == 0
