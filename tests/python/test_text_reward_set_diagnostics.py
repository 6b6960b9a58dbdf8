"""A type that is not a reward stops `grpo::RewardSet` with a sentence naming the missing
requirement. Compiles small snippets with the build's own compiler and flags (compile_commands.json)
and reads the diagnostics; a valid snippet must compile, so a broken command line cannot pass."""
import json
import os
import pathlib
import shlex
import subprocess

import pytest

BUILD = pathlib.Path(os.environ.get("GRPO_BUILD_DIR", "build/cpu"))
PRELUDE = """#include <grpo/rewards/reward_set.hpp>
#include <string>
using namespace grpo;
"""


def compiler_command():
    commands = json.loads((BUILD / "compile_commands.json").read_text())
    for entry in commands:
        if entry["file"].endswith("tests/text/utf8_test.cpp"):
            args = shlex.split(entry["command"])
            keep, i = [args[0]], 1
            while i < len(args):
                a = args[i]
                if a in ("-isystem", "-include") and i + 1 < len(args):
                    keep += [a, args[i + 1]] if a == "-isystem" else []
                    i += 2
                    continue
                if a.startswith(("-I", "-D", "-std")):
                    keep.append(a)
                i += 1
            return keep
    pytest.skip("compile_commands.json has no grpo_text_tests entry")


def compile_snippet(tmp_path, body):
    src = tmp_path / "snippet.cpp"
    src.write_text(PRELUDE + body)
    return subprocess.run(compiler_command() + ["-fsyntax-only", str(src)], capture_output=True, text=True, timeout=120)


def test_a_valid_set_compiles(tmp_path):
    result = compile_snippet(tmp_path, "auto set = RewardSet{[](const Sample&) { return 1.0f; }};\n"
                                       "static_assert(decltype(set)::size == 1);\n")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "definition, sentence",
    [
        ("struct X {};", "it has no way to score a batch"),
        ("struct X { float score(SampleBatch, std::span<float>) { return 0; } };",
         "has a member `score`, but it must be callable as"),
        ("struct X { std::string operator()(const Sample&) const { return {}; } };",
         "its result is not convertible to float"),
        ("struct X { X() = default; X(X&&) = delete; float operator()(const Sample&) const { return 0; } };",
         "a reward must be move-constructible"),
    ],
)
def test_a_non_reward_is_named_in_a_sentence(tmp_path, definition, sentence):
    result = compile_snippet(tmp_path, definition + "\nRewardSet<X> set;\n")
    assert result.returncode != 0
    assert sentence in result.stderr, result.stderr[-3000:]
