"""TensorBoard's own reader accepts the event files grpo::io::TensorBoardWriter writes: the sample
case of tests/io/tensorboard_test.cpp writes a log folder (a run killed after step 4, resumed from
step 3), and EventAccumulator (tensorboard_reader.py) must find every step once with the value
written, scalars rounded to float32 as TensorBoard stores them, and the markdown text intact."""
import os
import pathlib
import subprocess

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_accumulator

from tensorboard_reader import read_scalars, read_texts

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
PROGRAM = BUILD / "tests" / "grpo_io_tests"

# What the sample case writes (tests/io/tensorboard_test.cpp, "sample log folder ..."): the first
# run's loss 99.0 at step 4 is cut by the resume and replaced by 0.25.
SCALARS = {
    "loss": [(1, 0.5), (2, 0.1), (3, -2.75), (4, 0.25)],
    "reward/mean": [(1, 1.0), (2, 2.5), (3, 1e-3)],
}
TEXTS = {"samples": [(2, "**step 2** \u2014 caf\u00e9 \u65e5\u672c\n\n| a | b |\n|---|---|\n| 1 | 2 |")]}


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    if not PROGRAM.exists():
        pytest.fail(f"{PROGRAM} is not built (cmake --build <build> --target grpo_io_tests)")
    folder = tmp_path_factory.mktemp("tensorboard") / "logs"
    env = dict(os.environ, GRPO_TENSORBOARD_SAMPLE_DIR=str(folder), OMP_NUM_THREADS="1")
    result = subprocess.run([str(PROGRAM), "-#", "[#tensorboard_test]"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


def test_files_are_named_for_tensorboard(logdir):
    names = sorted(p.name for p in logdir.iterdir())
    assert len(names) == 2, names  # the first run's file, cut to steps <= 3, and the resumed run's
    assert all("tfevents" in name for name in names)


def test_scalars_read_back_exactly(logdir):
    scalars = read_scalars(logdir)
    assert sorted(scalars) == sorted(SCALARS)
    for tag, expected in SCALARS.items():
        got = scalars[tag]
        assert [step for step, _ in got] == [step for step, _ in expected], tag
        for (step, value), (_, want) in zip(got, expected):
            assert value == float(np.float32(want)), (tag, step, value, want)


def test_text_reads_back_exactly(logdir):
    assert read_texts(logdir) == TEXTS


def test_tensorboard_server_sees_scalar_and_text_plugins(logdir):
    # The loader behind the web UI migrates each value to a plugin and a data class.
    accumulator = plugin_event_accumulator.EventAccumulator(str(logdir))
    accumulator.Reload()
    assert set(accumulator.PluginTagToContent("scalars")) == set(SCALARS)
    assert set(accumulator.PluginTagToContent("text")) == set(TEXTS)
    assert accumulator.SummaryMetadata("loss").data_class == 1  # DATA_CLASS_SCALAR
    assert accumulator.SummaryMetadata("samples").data_class == 2  # DATA_CLASS_TENSOR
