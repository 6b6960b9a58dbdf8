"""`longwriter-zero plot`: a PNG of the right size from a metrics file; clear errors for bad input."""
import json
import os
import pathlib
import struct
import subprocess

CLI = pathlib.Path(os.environ["GRPO_BUILD_DIR"]) / "examples" / "longwriter-zero"


def run(*args):
    return subprocess.run([str(CLI), *args], capture_output=True, text=True)


def test_plot_writes_a_png(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "reward": 0.1 * s, "rewards": {"length_reward": {"mean": 0.05 * s}},
             "answer_words_mean": 10.0 * s, "completion_tokens": {"mean": 20.0 * s, "max": 30.0 * s}}
            for s in range(1, 6)]
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "curves.png"
    result = run("plot", str(metrics), "-o", str(out))
    assert result.returncode == 0, result.stderr
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (1000, 3 * 360)


def test_plot_names_the_bad_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1, "reward": 0.5}\n{"reward": 0.7}\n')
    result = run("plot", str(metrics), "-o", str(tmp_path / "x.png"))
    assert result.returncode == 1
    assert f"{metrics}:2:" in result.stderr and '"step"' in result.stderr


def test_plot_rejects_an_empty_file(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n")
    result = run("plot", str(metrics))
    assert result.returncode == 1 and "no metrics rows" in result.stderr
