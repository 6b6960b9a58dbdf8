"""`longwriter-zero train` with `policy.lora` (LoRA adapters only) end to end, checked against
transformers and PEFT: the checkpoint's policy folder is the merged model transformers loads, its
adapter/ folder is a PEFT adapter that gives the same function on the original base; only the
targeted projections change; the KL reference is the base model (the KL is exactly 0 before the
first update); a resume is bit-exact; a resume on another base model is refused; `logprobs
--adapter` scores with an adapter as PEFT does."""
import json
import os
import shutil
import subprocess

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from test_train_cli import MODEL, PROGRAM, run, small_config

TARGETS = ["q_proj", "v_proj", "down_proj"]


def lora_config(tmp):
    path = small_config(tmp)
    config = json.loads(path.read_text())
    config["policy"]["lora"] = {"rank": 4, "alpha": 8, "target_modules": TARGETS}
    config["loss"]["kl_coef"] = 0.05
    config["loss"]["entropy_coef"] = 0.001  # the entropy bonus takes the policy's entropy through the trainer
    path.write_text(json.dumps(config, indent=2))
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lora")
    config = lora_config(tmp)
    result = run(["train", "--config", str(config)])
    assert result.returncode == 0, result.stderr.decode()
    return tmp, config, result.stderr.decode()


def weights(folder):
    tensors = {}
    for f in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def test_only_the_adapters_train_and_the_kl_reference_is_the_base(trained):
    tmp, _, stderr = trained
    # cli_tiny: hidden 32, intermediate 64, 2 layers; r (in + out) per projection: q 32+32, v 32+16, down 64+32
    assert "LoRA rank 4, alpha 8 on 6 projections: 1664 of" in stderr
    rows = [json.loads(line) for line in (tmp / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["ref_kl"] == 0.0  # before the first update the adapted policy is the base model
    assert rows[1]["ref_kl"] > 0.0
    with safe_open(tmp / "run" / "checkpoints" / "step-000002" / "optimizer.safetensors", "pt") as f:
        meta = f.metadata()
    names = [meta[f"param.{i}.name"] for i in range(int(meta["params"]))]
    assert len(names) == 12 and all(".lora_A." in n or ".lora_B." in n for n in names)


def test_the_checkpoint_is_the_merged_model_and_a_peft_adapter(trained):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tmp, _, _ = trained
    policy = tmp / "run" / "checkpoints" / "step-000002" / "policy"
    torch.set_num_threads(1)
    original = weights(MODEL)
    merged = weights(policy)
    assert merged.keys() == original.keys()  # no adapter tensors among the model's weights
    changed = {n for n in merged if not torch.equal(merged[n], original[n])}
    assert changed and all(n.endswith(".weight") and n.split(".")[-2] in TARGETS for n in changed), changed

    model = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32).eval()
    adapted = PeftModel.from_pretrained(base, policy / "adapter").eval()
    ids = torch.tensor([[9707, 11, 1879, 13, 576, 9393, 374, 19300]])
    with torch.no_grad():
        a, b = model(ids).logits, adapted(ids).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()  # merged vs unmerged: float32 rounding only

    # Our logprobs with --adapter on the base: what transformers computes with the merged model.
    prompt, completion = "Write about the sea.", " The sea is calm at dawn."
    result = subprocess.run([str(PROGRAM), "logprobs", "--model", str(MODEL), "--adapter", str(policy / "adapter")],
                            capture_output=True, timeout=120, env=dict(os.environ, OMP_NUM_THREADS="1"),
                            input=(json.dumps({"prompt": prompt, "completion": completion}) + "\n").encode())
    assert result.returncode == 0, result.stderr.decode()
    ours = torch.tensor(json.loads(result.stdout.decode())["logprobs"], dtype=torch.float64)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(policy)
    p, c = tokenizer.encode(prompt), tokenizer.encode(completion)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([p + c])).logits[0].double(), dim=-1)
    reference = logp[len(p) - 1:-1].gather(1, torch.tensor(c).unsqueeze(1)).squeeze(1)
    assert torch.allclose(ours, reference, atol=1e-4)


def test_convert_merges_a_peft_adapter_into_a_checkpoint_transformers_loads(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tmp, _, _ = trained
    adapter = tmp / "run" / "checkpoints" / "step-000002" / "policy" / "adapter"
    out = tmp_path / "merged"
    result = run(["convert", "--model", str(MODEL), "--adapter", str(adapter), "--out", str(out)])
    assert result.returncode == 0, result.stderr.decode()
    torch.set_num_threads(1)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32), adapter).eval()
    ids = torch.tensor([[9707, 11, 1879, 13, 576, 9393]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, peft_model(ids).logits, atol=1e-4)
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "tokenizer.json").exists()


def test_a_resumed_lora_run_is_exact_and_another_base_is_refused(trained, tmp_path):
    from transformers import AutoModelForCausalLM

    tmp, config, _ = trained
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(tmp / "run" / "reward-model", resumed / "reward-model")
    step1 = tmp / "run" / "checkpoints" / "step-000001"
    result = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(resumed))}", "--resume", str(step1)])
    assert result.returncode == 0, result.stderr.decode()
    for sub in ("policy", "policy/adapter"):
        straight = weights(tmp / "run" / "checkpoints" / "step-000002" / sub)
        again = weights(resumed / "checkpoints" / "step-000002" / sub)
        assert straight.keys() == again.keys()
        for name in straight:
            assert torch.equal(straight[name], again[name]), (sub, name)

    other = tmp_path / "other-base"
    model = AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32)
    with torch.no_grad():
        model.model.norm.weight.add_(0.1)
    model.save_pretrained(other)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (MODEL / name).exists():
            shutil.copy(MODEL / name, other / name)
    result = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp_path / 'other'))}",
                  "--set", f"policy.model={json.dumps(str(other))}", "--resume", str(step1)])
    assert result.returncode != 0
    assert "trained from another base model" in result.stderr.decode()


def test_bad_lora_settings_name_the_key(trained, tmp_path):
    _, config, _ = trained
    result = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp_path / 'a'))}",
                  "--set", "policy.lora.rank=0"])
    assert result.returncode != 0 and "policy.lora: LoRA options: rank (r): expected > 0" in result.stderr.decode()
    result = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp_path / 'b'))}",
                  "--set", "policy.lora.dropout=0.1"])
    assert result.returncode != 0 and "policy.lora.dropout: unknown key" in result.stderr.decode()


def test_two_lora_ranks_reach_the_adapters_of_one_process(trained, tmp_path):
    """Data parallel with adapters: gradients of the adapters alone are summed over the ranks."""
    from test_distributed_cli import torchrun

    tmp, config, _ = trained
    settings = ["--set", "trainer.prompts_per_step=2", "--set", "trainer.steps=1"]
    for name in ("single", "dp"):
        (tmp_path / name).mkdir()
        shutil.copytree(tmp / "run" / "reward-model", tmp_path / name / "reward-model")
    single = run(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp_path / 'single'))}", *settings])
    assert single.returncode == 0, single.stderr.decode()
    dp = torchrun(["train", "--config", str(config), "--set", f"output_dir={json.dumps(str(tmp_path / 'dp'))}", *settings])
    assert dp.returncode == 0, dp.stderr.decode()
    one = weights(tmp_path / "single" / "checkpoints" / "step-000001" / "policy" / "adapter")
    two = weights(tmp_path / "dp" / "checkpoints" / "step-000001" / "policy" / "adapter")
    start = max(t.abs().max().item() for k, t in one.items() if ".lora_B." in k)
    assert start > 5e-3  # B left zero after one step at lr 1e-2
    assert one.keys() == two.keys()
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5
