"""`longwriter-zero train` writes TensorBoard event files beside metrics.jsonl, read here with
TensorBoard's own reader (tests/python/tensorboard_reader.py): every scalar TensorBoard reads equals
the number in the metrics.jsonl row of its step, the completions table is there as text at every
logged step, and a run resumed into its own folder after a kill rewrites no step twice."""
import glob
import json
import math
import pathlib

import pytest
from tensorboard.backend.event_processing import event_file_loader

from tensorboard_reader import read_scalars, read_texts
from test_train_cli import run, small_config


def leaves(row, prefix=""):
    """Every numeric leaf of a metrics row, tagged as the trainer tags its scalars."""
    for key, value in row.items():
        tag = f"{prefix}/{key}" if prefix else key
        if isinstance(value, dict):
            yield from leaves(value, tag)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and tag != "step":
            yield tag, float(value)


def raw_scalar_events(logdir):
    """(tag, step) of every scalar record in every event file, duplicates included (no
    de-duplication by the accumulator)."""
    seen = []
    for path in sorted(glob.glob(str(logdir / "events.out.tfevents.*"))):
        for event in event_file_loader.EventFileLoader(path).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    seen.append((value.tag, event.step))
    return seen


def check_scalars_equal_metrics(out: pathlib.Path):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    scalars = read_scalars(out)
    expected = {}
    for row in rows:
        for tag, value in leaves(row):
            expected.setdefault(tag, []).append((row["step"], value))
    assert set(scalars) == set(expected)
    for tag, series in expected.items():
        got = scalars[tag]
        assert [s for s, _ in got] == [s for s, _ in series], tag
        for (_, a), (_, b) in zip(got, series):
            # TensorBoard keeps scalars as float32
            assert a == pytest.approx(b, rel=1e-6, abs=1e-30) or (math.isinf(b) and abs(a) > 3e38), (tag, a, b)
    raw = raw_scalar_events(out)
    assert len(raw) == len(set(raw)), "a (tag, step) was written twice"
    return rows


def test_tensorboard_reads_every_metric_of_every_step(tmp_path):
    config = small_config(tmp_path)
    result = run(["train", "--config", str(config), "--set", "trainer.steps=3"])
    assert result.returncode == 0, result.stderr.decode()
    out = tmp_path / "run"
    rows = check_scalars_equal_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert "rewards/length/mean" in read_scalars(out) and "answer_words_mean" in read_scalars(out)
    texts = read_texts(out)["completions"]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [s for s, _ in texts] == sorted({s["step"] for s in samples}) == [1, 2, 3]
    for step, markdown in texts:
        for sample in (s for s in samples if s["step"] == step):
            assert f"| {sample['group']} | {sample['advantage']:.3f} |" in markdown

    # Killed after step 3, resumed from step 2's checkpoint into the same folder: step 3 is redone,
    # and TensorBoard, metrics.jsonl and samples.jsonl each hold steps 1..3 once.
    result = run(["train", "--config", str(config), "--set", "trainer.steps=3",
                  "--resume", str(out / "checkpoints" / "step-000002")])
    assert result.returncode == 0, result.stderr.decode()
    rows = check_scalars_equal_metrics(out)
    assert [r["step"] for r in rows] == [1, 2, 3]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert sorted({s["step"] for s in samples}) == [1, 2, 3]
    assert len(samples) == len({(s["step"], s["group"]) for s in samples})
    assert [s for s, _ in read_texts(out)["completions"]] == [1, 2, 3]
