"""Decode throughput of grpo (benchmarks/decode_bench.cpp) and of transformers' generate() side by
side, on a Qwen2.5-0.5B-shaped model (random weights, bfloat16, GPU), at batch 1, 16 and 64.

Same protocol for both (see decode_bench.cpp): B random prompts of 128 tokens, greedy, no stop
token, 256 new tokens; decode time = time(256 new tokens) - time(1 new token); tokens/s =
B * 255 / decode time; bandwidth fraction = (parameter bytes + mean KV bytes) per step / step time
/ peak bandwidth. transformers runs its default attention (sdpa) and dynamic cache, eagerly.

    python3 benchmarks/decode_vs_hf.py --bench build/cuda/benchmarks/decode_bench [--peak-tbps 3.35]
                                       [--out results.json] [--batches 1 16 64] [--repeats 3]

Prints a table (markdown) with the ratio grpo / transformers per batch size.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

PEAKS_TBPS = {  # HBM bandwidth by device name (vendor data sheets)
    "H100 80GB HBM3": 3.35,
    "H100 SXM": 3.35,
    "H100 NVL": 3.9,
    "H100 PCIe": 2.0,
    "H200": 4.8,
    "A100-SXM4-80GB": 2.039,
    "A100-SXM4-40GB": 1.555,
}


def peak_for(name):
    for key, value in PEAKS_TBPS.items():
        if key in name:
            return value
    return 0.0


def qwen05_config():
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    )


def bytes_per_step(model, config, batch, prompt, new):
    parameters = sum(p.numel() * p.element_size() for p in model.parameters())
    mean_length = prompt + new / 2
    head_dim = config.hidden_size // config.num_attention_heads
    kv = config.num_hidden_layers * 2 * batch * config.num_key_value_heads * mean_length * head_dim * 2
    return parameters + kv


def hf_decode(batches, prompt, new, repeats):
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(0)
    config = qwen05_config()
    model = Qwen2ForCausalLM(config).to(device="cuda", dtype=torch.bfloat16).eval()
    results = {}
    for batch in batches:
        ids = torch.randint(0, config.vocab_size, (batch, prompt), device="cuda")
        mask = torch.ones_like(ids)

        def run(n):
            torch.cuda.synchronize()
            start = time.perf_counter()
            with torch.no_grad():
                model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                               do_sample=False, eos_token_id=None, pad_token_id=0)
            torch.cuda.synchronize()
            return time.perf_counter() - start

        run(2)  # warm-up
        decode = []
        for _ in range(repeats):
            prefill = run(1)
            decode.append(run(new) - prefill)
        decode.sort()
        per_step = decode[len(decode) // 2] / (new - 1)
        results[batch] = {"tokens_per_s": batch / per_step, "ms_per_step": per_step * 1e3,
                          "bytes_per_step": bytes_per_step(model, config, batch, prompt, new)}
    del model
    torch.cuda.empty_cache()
    return results


def grpo_decode(bench, batches, new, peak, repeats):
    filt = "BM_GrpoDecode/batch:(" + "|".join(str(b) for b in batches) + ")/"
    cmd = [bench, "--device=cuda", f"--new-tokens={new}", f"--peak-tbps={peak}", f"--benchmark_filter={filt}",
           "--benchmark_format=json", f"--benchmark_repetitions={repeats}", "--benchmark_report_aggregates_only=true"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{bench} failed ({out.returncode}):\n{out.stderr}")
    results = {}
    for b in json.loads(out.stdout)["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        parts = dict(part.split(":") for part in b["run_name"].split("/")[1:3])  # batch:B, graphs:G
        key = "grpo" if parts["graphs"] == "1" else "grpo_eager"
        results.setdefault(int(parts["batch"]), {})[key] = {
            "tokens_per_s": b["tokens_per_s"], "ms_per_step": b["ms_per_step"], "bytes_per_step": b["GB_per_step"] * 1e9}
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default="build/cuda/benchmarks/decode_bench")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-tbps", type=float, default=0.0, help="peak memory bandwidth (default: by device name)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--skip-hf", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("decode_vs_hf.py: needs a CUDA GPU")
    name = torch.cuda.get_device_name()
    peak = args.peak_tbps or peak_for(name)
    ours = grpo_decode(args.bench, args.batches, args.new_tokens, peak, args.repeats)
    theirs = {} if args.skip_hf else hf_decode(args.batches, args.prompt_tokens, args.new_tokens, args.repeats)
    import transformers

    print(f"device: {name}, peak {peak} TB/s; torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, greedy, bf16, median of {args.repeats}\n")
    print("| batch | grpo tok/s (CUDA graph) | ms/step | BW | grpo eager tok/s | ms/step | transformers tok/s "
          "| ms/step | BW | grpo / transformers |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    bw = lambda r: r["bytes_per_step"] / (r["ms_per_step"] / 1e3) / (peak * 1e12) if peak else float("nan")
    for batch in args.batches:
        o = ours[batch]["grpo"]
        e = ours[batch].get("grpo_eager")
        t = theirs.get(batch)
        ratio = o["tokens_per_s"] / t["tokens_per_s"] if t else float("nan")
        print(f"| {batch} | {o['tokens_per_s']:.0f} | {o['ms_per_step']:.2f} | {bw(o):.1%} | "
              + (f"{e['tokens_per_s']:.0f} | {e['ms_per_step']:.2f} | " if e else "- | - | ")
              + (f"{t['tokens_per_s']:.0f} | {t['ms_per_step']:.2f} | {bw(t):.1%} | {ratio:.2f}x |" if t else "- | - | - | - |"))
        rows.append({"batch": batch, "grpo": o, "grpo_eager": e, "transformers": t, "ratio": ratio})
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": name, "peak_tbps": peak, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
