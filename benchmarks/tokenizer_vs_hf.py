"""Question: is grpo::Tokenizer::encode at least as fast as Hugging Face tokenizers, single-threaded,
on the same texts with the same (Qwen2.5) tokenizer?

One run does both sides: builds a corpus of about 4 MB (English prose, Chinese prose, Python code,
the shipped prompts), times tokenizers (encode in a loop, and encode_batch, both with
RAYON_NUM_THREADS=1 and TOKENIZERS_PARALLELISM=false; the faster counts as the baseline), runs
the Google Benchmark binary benchmarks/tokenizer_bench on the same corpus files, checks that both
produce the same number of tokens per category, and prints MB/s, tokens/s and the ratio. Both
sides are timed in CPU time of the encoding thread (Python's thread_time, Google Benchmark's
cpu_time), so other processes on a shared machine disturb the ratio little.

    .venv/bin/python benchmarks/tokenizer_vs_hf.py --build build/cpu [--repetitions 3]

The corpus is made reproducibly from files every checkout has: docstrings and code of the
installed transformers package (English, code), Chinese sentences drawn from the Chinese words of
the Qwen2.5 vocabulary with a fixed seed (no Chinese corpus ships here), and the prompts in
examples/data/prompts. Documents are 1-8 KB, so Python's per-call overhead is small for tokenizers.
"""
import argparse
import ast
import json
import os
import pathlib
import random
import struct
import subprocess
import sys
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import transformers  # noqa: E402  (only its files are read, as corpus)
from tokenizers import Tokenizer  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "examples/data/qwen2.5-tokenizer/tokenizer.json"


def chunks(text: str, size: int) -> list[str]:
    """Splits text at line ends into documents of about `size` bytes."""
    docs, current, length = [], [], 0
    for line in text.splitlines(keepends=True):
        current.append(line)
        length += len(line.encode())
        if length >= size:
            docs.append("".join(current))
            current, length = [], 0
    if current:
        docs.append("".join(current))
    return docs


def english_and_code(limit: int) -> tuple[list[str], list[str]]:
    prose, code = [], []
    prose_bytes = code_bytes = 0
    files = sorted(pathlib.Path(transformers.__file__).parent.rglob("*.py"))
    for path in files:
        source = path.read_text(encoding="utf-8", errors="replace")
        if code_bytes < limit:
            for doc in chunks(source, 4096):
                code.append(doc)
                code_bytes += len(doc.encode())
        if prose_bytes < limit:
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.Module)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 200:
                        prose.append(doc)
                        prose_bytes += len(doc.encode())
        if prose_bytes >= limit and code_bytes >= limit:
            break
    return prose, code


def chinese(tok: Tokenizer, limit: int) -> list[str]:
    """Sentences of Chinese words taken from the vocabulary (tokens made only of CJK ideographs)."""
    words = []
    for token, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        text = tok.decode([tok.token_to_id(token)])
        if len(text) >= 1 and all("\u4e00" <= ch <= "\u9fff" for ch in text):
            words.append(text)
    rng = random.Random(2024)
    weights = [1.0 / (k + 50) for k in range(len(words))]  # earlier merges are commoner words
    docs, size = [], 0
    while size < limit:
        sentences = []
        for _ in range(rng.randrange(20, 60)):
            sentence = "".join(rng.choices(words, weights, k=rng.randrange(4, 16)))
            for _ in range(rng.randrange(0, 3)):
                cut = rng.randrange(1, len(sentence))
                sentence = sentence[:cut] + rng.choice("，、；") + sentence[cut:]
            if rng.random() < 0.15:
                sentence += str(rng.randrange(1, 3000)) + rng.choice(["年", "个", "字", "%"])
            sentences.append(sentence + rng.choice("。。。！？"))
        doc = "".join(sentences) + "\n"
        docs.append(doc)
        size += len(doc.encode())
    return docs


def prompts() -> list[str]:
    ruler = [json.loads(l)["prompt"] for l in (ROOT / "examples/data/prompts/longwrite_ruler.jsonl").read_text().splitlines() if l.strip()]
    think = (ROOT / "examples/data/prompts/think_prompt_en.txt").read_text()
    return ruler + [think.replace("{question}", q) for q in ruler]


def write_corpus(folder: pathlib.Path, corpus: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, docs in corpus.items():
        with open(folder / f"{name}.bin", "wb") as f:
            for doc in docs:
                data = doc.encode()
                f.write(struct.pack("<I", len(data)) + data)


def time_hf(tok: Tokenizer, docs: list[str], repetitions: int) -> tuple[float, float, int]:
    tokens = sum(len(e.ids) for e in tok.encode_batch(docs))  # warms the cache as ours is warmed
    loop = batch = float("inf")
    for _ in range(repetitions):
        start = time.thread_time()
        for doc in docs:
            tok.encode(doc)
        loop = min(loop, time.thread_time() - start)
        start = time.thread_time()
        tok.encode_batch(docs)
        batch = min(batch, time.thread_time() - start)
    return loop, batch, tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", type=pathlib.Path, default=ROOT / "build/cpu")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--megabytes", type=float, default=1.0, help="size of the English, Chinese and code parts each")
    args = parser.parse_args()
    bench = args.build / "benchmarks" / "tokenizer_bench"
    if not bench.exists():
        sys.exit(f"{bench} is not built: cmake --build {args.build} --target tokenizer_bench")

    tok = Tokenizer.from_file(str(TOKENIZER))
    limit = int(args.megabytes * 1e6)
    prose, code = english_and_code(limit)
    corpus = {"english": prose, "chinese": chinese(tok, limit), "code": code, "prompts": prompts()}
    folder = args.build / "benchmarks" / "tokenizer_corpus"
    write_corpus(folder, corpus)

    env = dict(os.environ, GRPO_TOKENIZER_CORPUS=str(folder), GRPO_TOKENIZER=str(TOKENIZER))
    result = subprocess.run([str(bench), "--benchmark_format=json", f"--benchmark_repetitions={args.repetitions}",
                             "--benchmark_report_aggregates_only=true", "--benchmark_filter=BM_Encode/|BM_Load"],
                            env=env, capture_output=True, text=True, check=True)
    ours, our_load_ms = {}, None
    for b in json.loads(result.stdout)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        if b["run_name"] == "BM_Load":
            our_load_ms = b["cpu_time"]  # the benchmark's unit is ms
        else:
            ours[b["run_name"].split("/")[1]] = b
    hf_load = float("inf")
    for _ in range(args.repetitions):
        start = time.thread_time()
        Tokenizer.from_file(str(TOKENIZER))
        hf_load = min(hf_load, time.thread_time() - start)

    print(f"{'corpus':<10}{'MB':>7}{'tokens':>10} | {'tokenizers MB/s':>16}{'(loop/batch)':>14} | {'grpo MB/s':>10} | "
          f"{'tok/s tokenizers':>17}{'tok/s grpo':>12} | {'ratio':>6}")
    total_bytes = total_hf = total_ours = 0.0
    for name, docs in corpus.items():
        size = sum(len(d.encode()) for d in docs)
        loop, batch, tokens = time_hf(tok, docs, args.repetitions)
        hf_seconds = min(loop, batch)
        mine = ours[name]
        our_seconds = size / mine["bytes_per_second"]
        if int(mine["tokens"]) != tokens:
            sys.exit(f"{name}: tokenizers made {tokens} tokens, grpo {int(mine['tokens'])}: the outputs differ")
        print(f"{name:<10}{size / 1e6:>7.2f}{tokens:>10} | {size / hf_seconds / 1e6:>16.2f}"
              f"{f'({size / loop / 1e6:.1f}/{size / batch / 1e6:.1f})':>14} | {size / our_seconds / 1e6:>10.2f} | "
              f"{tokens / hf_seconds / 1e6:>16.2f}M{tokens / our_seconds / 1e6:>11.2f}M | {hf_seconds / our_seconds:>5.2f}x")
        total_bytes += size
        total_hf += hf_seconds
        total_ours += our_seconds
    print(f"{'all':<10}{total_bytes / 1e6:>7.2f}{'':>10} | {total_bytes / total_hf / 1e6:>16.2f}{'':>14} | "
          f"{total_bytes / total_ours / 1e6:>10.2f} | {'':>29} | {total_hf / total_ours:>5.2f}x")
    print(f"load tokenizer.json: tokenizers {hf_load * 1e3:.0f} ms, grpo {our_load_ms:.0f} ms (CPU time)")
    print(f"(ratio = tokenizers time / grpo time; > 1 means grpo is faster. tokenizers {tokenizers_version()}, "
          f"median of {args.repetitions} for grpo, best of {args.repetitions} for tokenizers)")


def tokenizers_version() -> str:
    import tokenizers
    return tokenizers.__version__


if __name__ == "__main__":
    main()
