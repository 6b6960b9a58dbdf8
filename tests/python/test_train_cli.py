"""`longwriter-zero train` end to end on the shipped `tiny` config, shrunk to a few seconds: the
policy is the cli_tiny fixture (written by transformers' save_pretrained, real Qwen2.5
vocabulary), the writing reward model is trained from a small pairs file. Checked against
transformers: a checkpoint the run writes loads there and gives our log-probs; a run resumed
from step 1 reaches bit-identical parameters at step 2; bad configs name the bad key; `eval`
reports per sample what the paper's formulas (tests/python/paper_formulas.py) say of its own completions."""
import json
import os
import pathlib
import shutil
import subprocess

import pytest
import torch

from cli_program import MODEL, PROGRAM, SOURCE, fixture_config
from paper_formulas import eq3, longbench_count, s_l



def run(args, timeout=300):
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target longwriter-zero)")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([str(PROGRAM), *args], capture_output=True, timeout=timeout, env=env)


def small_config(tmp: pathlib.Path) -> pathlib.Path:
    """examples/configs/tiny.json with the fixture policy, a small reward model and two steps."""
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about {t} in about 20 words.", "lower": 10, "upper": 30}) + "\n"
                               for t in ("the sea", "bread", "trains")))
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": "Write about the sea.", "chosen": "The sea is calm at dawn. " * (i + 1),
                                         "rejected": "sea the dawn calm at is. " * (i + 1)}) + "\n" for i in range(8)))
    config = fixture_config(tmp, prompts)
    writing = config["rewards"]["writing"]
    writing["answer_only"] = False  # the random fixture writes no <answer>: score whole completions so groups vary
    writing["init"]["train"].update({"pairs": str(pairs), "epochs": 1, "batch_size": 4, "eval_fraction": 0.25})
    config["trainer"].update({"steps": 2, "prompts_per_step": 1, "group_size": 2, "save_every": 1, "keep_checkpoints": 0,
                              "log_samples_every": 1, "lr": 1e-2})
    config["trainer"]["sampling"]["max_new_tokens"] = 12
    path = tmp / "config.json"
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    config = small_config(tmp)
    result = run(["train", "--config", str(config)])
    assert result.returncode == 0, result.stderr.decode()
    return tmp, config, result.stderr.decode()


def test_a_run_writes_metrics_samples_and_checkpoints(trained):
    tmp, _, stderr = trained
    out = tmp / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert set(r["rewards"]) == {"length", "writing", "format"}
        for name in ("mean", "std", "zero_std_group_fraction"):
            assert name in r["rewards"]["length"]
        for key in ("loss", "clip_fraction", "approx_kl", "entropy", "grad_norm", "truncated_fraction",
                    "repetition_mean", "zero_variance_group_fraction"):
            assert key in r, key
        assert set(r["time"]) >= {"sample_s", "score_s", "update_s"}
        assert r["completion_tokens"]["max"] <= 12
        # The composite is the equal-weight mean of the reward means.
        assert r["reward"] == pytest.approx(sum(v["mean"] for v in r["rewards"].values()) / 3, abs=1e-6)
    assert "step 2/2" in stderr and "ETA" in stderr
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2} and all("advantage" in s for s in samples)
    assert (out / "checkpoints" / "latest").read_text().strip() == "step-000002"
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if p.is_dir()) == ["step-000001", "step-000002"]
    assert json.loads((out / "summary.json").read_text())["steps"] == 2


def test_the_checkpoint_loads_in_transformers_with_our_logprobs(trained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp, _, _ = trained
    policy = tmp / "run" / "checkpoints" / "step-000002" / "policy"
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(policy)
    original = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    changed = [n for n, t in model.state_dict().items() if not torch.equal(t, original.state_dict()[n])]
    assert changed, "two GRPO steps at lr 1e-2 left every parameter unchanged"
    # tiny.json freezes the (tied) embedding with policy.freeze: it must come back bit-identical.
    config = json.loads((SOURCE / "examples" / "configs" / "tiny.json").read_text())
    assert config["policy"]["freeze"] == ["model\\.embed_tokens\\.weight"]
    assert "model.embed_tokens.weight" not in changed and "model.embed_tokens.weight" in model.state_dict()

    prompt, completion = "Write about the sea.", " The sea is calm at dawn and loud at night."
    result = subprocess.run([str(PROGRAM), "logprobs", "--model", str(policy)], capture_output=True, timeout=120,
                            input=(json.dumps({"prompt": prompt, "completion": completion}) + "\n").encode(),
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert result.returncode == 0, result.stderr.decode()
    ours = torch.tensor(json.loads(result.stdout.decode())["logprobs"])
    p, c = tokenizer.encode(prompt), tokenizer.encode(completion)
    ids = torch.tensor([p + c])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    reference = logp[len(p) - 1:-1].gather(1, torch.tensor(c).unsqueeze(1)).squeeze(1)
    assert ours.shape == reference.shape
    assert torch.allclose(ours.double(), reference, atol=1e-4)


def test_a_resumed_run_reaches_the_same_parameters(trained, tmp_path):
    from safetensors.torch import load_file

    tmp, config, _ = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp / "run" / "reward-model", resumed / "reward-model")  # reused by its fingerprint
    result = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(resumed))}",
                  "--resume", str(tmp / "run" / "checkpoints" / "step-000001")])
    assert result.returncode == 0, result.stderr.decode()
    assert "resumed at step 1" in result.stderr.decode()

    def weights(run_dir):
        folder = run_dir / "checkpoints" / "step-000002" / "policy"
        tensors = {}
        for f in sorted(folder.glob("*.safetensors")):
            tensors.update(load_file(f))
        return tensors

    straight, again = weights(tmp / "run"), weights(resumed)
    assert straight.keys() == again.keys()
    for name in straight:
        assert torch.equal(straight[name], again[name]), name


def test_bad_configs_name_the_key(tmp_path):
    config = json.loads(small_config(tmp_path).read_text())
    config["trainer"]["stpes"] = 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(config))
    result = run(["train", "--config", str(bad)])
    assert result.returncode != 0 and "stpes" in result.stderr.decode()

    result = run(["train", "--config", str(tmp_path / "config.json"), "--set", "trainer.group_size=0"])
    assert result.returncode != 0 and "group_size" in result.stderr.decode()

    result = run(["train", "--config", str(tmp_path / "config.json"), "--set", 'policy.freeze=["model\\\\.no_such"]'])
    assert result.returncode != 0 and "model\\.no_such" in result.stderr.decode()

    (tmp_path / "prompts.jsonl").write_text('{"prompt": "ok", "lower": 1, "upper": 2}\n{"prompt": \n')
    result = run(["train", "--config", str(tmp_path / "config.json")])
    assert result.returncode != 0 and "prompts.jsonl:2" in result.stderr.decode()


# ---- eval ----------------------------------------------------------------------------------------
def answer_of(completion: str) -> str:  # from the first <answer> to the first </answer> after it, or the end
    start = completion.find("<answer>")
    if start < 0:
        return ""
    rest = completion[start + len("<answer>"):]
    end = rest.find("</answer>")
    return rest if end < 0 else rest[:end]


def test_eval_reports_what_its_samples_say(trained, tmp_path):
    """The shipped tiny base model writes real <think>/<answer> pieces: eval's per-sample answer words,
    length reward and S_l must be the formulas applied to its own completions, its summary the means
    (composite = the equal-weight mean of the three rewards, as in metrics.jsonl), and a second run
    with the same seed the same samples."""
    tmp, _, _ = trained
    prompts = tmp_path / "prompts.jsonl"
    shipped = (SOURCE / "examples" / "data" / "tiny" / "prompts.jsonl").read_text().splitlines()
    prompts.write_text("\n".join(shipped[:3]) + "\n")
    outputs = []
    for attempt in range(2):
        out = tmp_path / f"eval{attempt}.jsonl"
        result = run(["eval", "--model", str(SOURCE / "examples" / "data" / "tiny" / "base-policy"), "--input",
                      str(prompts), "--samples", "2", "--max-new-tokens", "320", "--temperature", "0.8", "--top-p", "0.9",
                      "--reward-model", str(tmp / "run" / "reward-model"), "--output", str(out), "--seed", "5"])
        assert result.returncode == 0, result.stderr.decode()
        summary = json.loads(result.stdout.decode().strip().splitlines()[-1])
        outputs.append((summary, out.read_text()))
    summary, text = outputs[0]
    assert outputs[1][1] == text  # reproducible: same seed, same samples
    samples = [json.loads(line) for line in text.splitlines()]
    assert len(samples) == 6 and summary["samples"] == 6
    for s in samples:
        words = longbench_count(answer_of(s["completion"]))
        assert s["answer_words"] == words
        assert s["length_reward"] == pytest.approx(eq3(words, s["lower"], s["upper"]), abs=1e-6)
        assert s["S_l"] == pytest.approx(s_l(s["length"], words), abs=1e-6)
    assert any(s["answer_words"] > 20 for s in samples)  # the base model answers, so the checks have teeth
    for key in ("length_reward", "format_reward", "writing_reward", "S_l", "answer_words"):
        mean = sum(s[key] for s in samples) / len(samples)
        assert summary[key if key != "answer_words" else "answer_words_mean"] == pytest.approx(mean, abs=1e-6), key
    composite = (summary["length_reward"] + summary["writing_reward"] + summary["format_reward"]) / 3
    assert summary["reward"] == pytest.approx(composite, abs=1e-9)
