"""Re-runs and destinations (docs/training.md, "Output folders and files"):

- `train` into a folder holding an earlier run is refused, naming the folder and both ways on
  (--resume, --overwrite); --overwrite removes exactly the earlier run's files and then equals a
  fresh run (bit-identical weights, the same metrics); a folder holding files that are not a
  run's is refused, --overwrite included;
- folders replaced wholesale (`convert --out`, `train-rm --output`) are refused when they hold
  anything but a checkpoint or when they are, or contain, an input (symbolic links resolved);
  `train-rm` reuses a reward model the same inputs made and replaces one other inputs made only
  with --overwrite.

Runs are one GRPO step on the cli_tiny fixture with a reward model trained once by `train-rm`."""
import hashlib
import json
import pathlib
import shutil

import pytest

from cli_program import MODEL, fixture_config, run_program



def run(args, timeout=300):
    return run_program(args, timeout)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A config of one GRPO step and the reward model `train-rm` made for it (tmp/rm)."""
    tmp = tmp_path_factory.mktemp("reruns")
    prompts = tmp / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Write about {t} in about 20 words.", "lower": 10, "upper": 30}) + "\n"
                               for t in ("the sea", "bread")))
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": "Write about the sea.", "chosen": "The sea is calm at dawn. " * (i + 1),
                                         "rejected": "sea the dawn calm at is. " * (i + 1)}) + "\n" for i in range(8)))
    config = fixture_config(tmp, prompts)
    writing = config["rewards"]["writing"]
    writing["answer_only"] = False
    writing["init"]["train"].update({"pairs": str(pairs), "epochs": 1, "batch_size": 4, "eval_fraction": 0.25})
    config["trainer"].update({"steps": 1, "prompts_per_step": 1, "group_size": 2, "save_every": 1, "keep_checkpoints": 2,
                              "log_samples_every": 1, "lr": 1e-2})
    config["trainer"]["sampling"]["max_new_tokens"] = 8
    rm_config = tmp / "rm-config.json"
    rm_config.write_text(json.dumps(config))
    result = run(["train-rm", "--config", rm_config, "--output", tmp / "rm"])
    assert result.returncode == 0, result.stderr.decode()
    config["rewards"]["writing"]["model"] = str(tmp / "rm")
    train_config = tmp / "config.json"
    train_config.write_text(json.dumps(config))
    return {"tmp": tmp, "config": train_config, "rm_config": rm_config, "pairs": pairs}


def weights(run_dir: pathlib.Path):
    from safetensors.torch import load_file

    return load_file(run_dir / "checkpoints" / "step-000001" / "policy" / "model.safetensors")


def metrics(run_dir: pathlib.Path):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for row in rows:  # what differs between two runs of the same step: wall time and memory
        for key in ("time", "tokens_per_second", "memory"):
            row.pop(key, None)
    return rows


def listing(folder: pathlib.Path):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.startswith("events.out.tfevents."))


def digest(folder: pathlib.Path):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_second_run_is_refused_and_overwrite_equals_a_fresh_run(setup, tmp_path):
    import torch

    first, fresh = tmp_path / "first", tmp_path / "fresh"
    result = run(["train", "--config", setup["config"], "--output", first])
    assert result.returncode == 0, result.stderr.decode()
    before = digest(first)

    again = run(["train", "--config", setup["config"], "--output", first])
    error = again.stderr.decode()
    assert again.returncode != 0
    assert f"{first}: the output folder holds an earlier run" in error, error
    assert f"--resume {first}" in error and "--overwrite" in error
    assert digest(first) == before  # nothing touched

    # What an earlier, longer run and a killed write leave: gone after --overwrite.
    (first / "checkpoints" / "step-000009").mkdir()
    (first / ".summary.json.tmp-0123456789abcdef").write_text("partial")
    (first / "curves.png").write_bytes(b"png")
    result = run(["train", "--config", setup["config"], "--output", first, "--overwrite"])
    assert result.returncode == 0, result.stderr.decode()
    assert "--overwrite removed" in result.stderr.decode()

    (fresh).mkdir()
    (fresh / "config.json").write_text("{}")  # a run that failed before training: not an earlier run
    result = run(["train", "--config", setup["config"], "--output", fresh])
    assert result.returncode == 0, result.stderr.decode()

    assert listing(first) == listing(fresh)
    a, b = weights(first), weights(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(first) == metrics(fresh)
    assert json.loads((first / "config.json").read_text()) == json.loads((fresh / "config.json").read_text())


def test_a_folder_with_files_that_are_not_a_runs_is_refused(setup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "metrics.jsonl").write_text('{"step": 1}\n')
    for flags in ([], ["--overwrite"]):
        result = run(["train", "--config", setup["config"], "--output", out, *flags])
        error = result.stderr.decode()
        assert result.returncode != 0
        assert f"{out}: the output folder holds files that are not a run's (notes.txt)" in error, error
        assert (out / "notes.txt").read_text() == "mine" and (out / "metrics.jsonl").exists()
    result = run(["train", "--config", setup["config"], "--output", tmp_path / "x", "--overwrite", "--resume", out])
    assert result.returncode != 0 and "--resume and --overwrite: give one" in result.stderr.decode()
    result = run(["train", "--config", setup["config"], "--output", out / "notes.txt"])
    assert result.returncode != 0 and f"{out / 'notes.txt'}: expected an output folder, found a regular file" in result.stderr.decode()


def test_convert_refuses_destinations_that_would_delete_an_input_or_foreign_files(tmp_path):
    model = tmp_path / "models" / "policy"
    shutil.copytree(MODEL, model)
    source = digest(model)
    (tmp_path / "link").symlink_to(model)
    cases = {
        model: "is or contains the input",
        tmp_path / "models": "is or contains the input",
        tmp_path / "link": "is a symbolic link",
        tmp_path / "models" / "policy" / ".." / "policy": "is or contains the input",
    }
    for out, message in cases.items():
        result = run(["convert", "--model", model, "--out", out])
        assert result.returncode != 0 and message in result.stderr.decode(), (out, result.stderr.decode())
    hub = tmp_path / "downloaded"
    shutil.copytree(MODEL, hub)
    (hub / "README.md").write_text("model card")
    result = run(["convert", "--model", model, "--out", hub])
    assert result.returncode != 0 and "holds files that are not part of a checkpoint (README.md)" in result.stderr.decode()
    assert (hub / "README.md").exists()
    assert digest(model) == source  # the source survived every refusal

    ours = tmp_path / "converted"
    assert run(["convert", "--model", model, "--out", ours]).returncode == 0
    result = run(["convert", "--model", model, "--out", ours, "--dtype", "bfloat16"])  # a checkpoint of ours: replaced
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads((ours / "config.json").read_text())["dtype"] == "bfloat16"


def test_train_rm_destinations_and_reuse(setup, tmp_path):
    config = setup["rm_config"]
    # An input inside the destination, and the tokenizer folder itself.
    for out in (setup["tmp"], MODEL):
        result = run(["train-rm", "--config", config, "--output", out])
        assert result.returncode != 0 and "is or contains the input" in result.stderr.decode(), result.stderr.decode()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "data.csv").write_text("1,2\n")
    result = run(["train-rm", "--config", config, "--output", foreign])
    assert result.returncode != 0 and "(data.csv)" in result.stderr.decode()

    rm = tmp_path / "rm"
    shutil.copytree(setup["tmp"] / "rm", rm)
    made = (rm / "grpo_stage.json").read_text()
    result = run(["train-rm", "--config", config, "--output", rm])  # the same inputs: reused, not retrained
    assert result.returncode == 0 and "reusing the trained reward model" in result.stderr.decode()
    assert json.loads(result.stdout.decode()) == json.loads(made)

    result = run(["train-rm", "--config", config, "--output", rm, "--set", "seed=1"])
    assert result.returncode != 0 and "other inputs made; replace it with --overwrite" in result.stderr.decode()
    assert (rm / "grpo_stage.json").read_text() == made
    result = run(["train-rm", "--config", config, "--output", rm, "--set", "seed=1", "--overwrite"])
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads((rm / "grpo_stage.json").read_text())["fingerprint"] != json.loads(made)["fingerprint"]
