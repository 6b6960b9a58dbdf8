"""The tiny demo's shipped data (examples/data/tiny/*.jsonl): scripts/make_tiny_data.py reproduces
it byte for byte, and it says what docs/training.md says it says. Checked from the files alone
(the only thing taken from the generator is its sentence banks, to know each topic's paragraphs):
every RL prompt's target is N +- 20; every preference pair prefers a coherent answer (the first p
paragraphs of its topic); quality pairs reject a broken answer; the 480 requirement-following
pairs reject a coherent answer that misses the requested length by 40 words more than the chosen
one."""
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

SOURCE = pathlib.Path(os.environ.get("GRPO_SOURCE_DIR", "."))
DATA = SOURCE / "examples" / "data" / "tiny"
SCRIPT = SOURCE / "scripts" / "make_tiny_data.py"


def load(name):
    return [json.loads(line) for line in (DATA / name).read_text().splitlines()]


def topic_paragraphs():
    spec = importlib.util.spec_from_file_location("make_tiny_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # The banks, as data: sentences 2i and 2i + 1 form paragraph i.
    return {t: [" ".join(bank[i:i + 2]) for i in range(0, len(bank), 2)] for t, bank in module.TOPICS.items()}


def words(text):
    return len(text.split())


def coherent_length(topic, text, paragraphs):
    """p if text is exactly the first p paragraphs of the topic, else None."""
    parts = text.split("\n\n")
    return len(parts) if parts == paragraphs[topic][: len(parts)] else None


def test_the_generator_reproduces_the_shipped_files(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path)], check=True, timeout=120)
    for name in ("pretrain.jsonl", "prompts.jsonl", "preferences.jsonl"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_rl_prompts_ask_for_n_words_with_target_n_plus_minus_20():
    rows = load("prompts.jsonl")
    assert len(rows) == 24
    for row in rows:
        n = int(re.search(r"in about (\d+) words\.$", row["prompt"]).group(1))
        assert (row["lower"], row["upper"], row["length"]) == (n - 20, n + 20, n)


def test_preference_pairs_prefer_coherent_answers_and_requested_lengths():
    paragraphs = topic_paragraphs()
    quality = length = 0
    for row in load("preferences.jsonl"):
        topic = re.match(r"Write about (.*?)( in about \d+ words)?\.$", row["prompt"]).group(1)
        chosen_p = coherent_length(topic, row["chosen"], paragraphs)
        rejected_p = coherent_length(topic, row["rejected"], paragraphs)
        assert chosen_p is not None, row["chosen"][:80]
        if rejected_p is None:  # a quality pair: a broken answer (repetition, drift, salad, ...) is rejected
            assert row["rejected"] != row["chosen"]
            quality += 1
            continue
        # a requirement-following pair: both coherent, the request decides
        n = int(re.search(r"in about (\d+) words", row["prompt"]).group(1))
        miss = lambda text: max(0, abs(words(text) - n) - 20)
        assert miss(row["rejected"]) >= miss(row["chosen"]) + 40, row["prompt"]
        # the chosen one is the best the topic offers
        assert miss(row["chosen"]) == min(miss("\n\n".join(paragraphs[topic][:p])) for p in range(1, 11))
        length += 1
    assert (quality, length) == (1920, 480)
