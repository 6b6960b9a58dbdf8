"""The committed word-character table is what this environment's Python generates: if the venv's
Python (and so its Unicode version) changes, the table must be regenerated."""
import os
import pathlib
import subprocess
import sys

SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", "."))


def test_table_is_current():
    script = SOURCE / "scripts" / "generate_word_char_table.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
