"""Side-by-side table of `longwriter-zero train` runs from their metrics.jsonl: mean step, sampling,
scoring and update seconds over steps 2.. (step 1 warms up), completion tokens per second, the
process's peak host memory, the ratio of the first run's step time to each other's, and whether
they sampled the same completions (tokens per step).

    python benchmarks/compare_runs.py OUT NAME=LABEL [NAME=LABEL ...]   (OUT/NAME/metrics.jsonl)
"""
import json
import pathlib
import sys


def load(folder: pathlib.Path):
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line]
    timed = rows[1:] if len(rows) > 1 else rows
    mean = lambda key: sum(r["time"][key] for r in timed) / len(timed)
    tokens = sum(r["completion_tokens"]["sum"] for r in timed)
    return {"step_s": mean("step_s"), "sample_s": mean("sample_s"), "score_s": mean("score_s"),
            "update_s": mean("update_s"), "tokens_per_s": tokens / sum(r["time"]["step_s"] for r in timed),
            "rss_gib": max(r.get("memory", {}).get("host_rss_peak_gib", 0.0) for r in rows),
            "tokens": [r["completion_tokens"]["sum"] for r in rows]}


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    runs = [arg.split("=", 1) for arg in sys.argv[2:]]
    results = [(label, load(out / name)) for name, label in runs]
    print("| run | step s | sample s | score s | update s | tokens/s | peak host RSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for label, r in results:
        print(f"| {label} | {r['step_s']:.2f} | {r['sample_s']:.2f} | {r['score_s']:.2f} | {r['update_s']:.2f} | "
              f"{r['tokens_per_s']:.0f} | {r['rss_gib']:.2f} |")
    first_label, first = results[0]
    for label, r in results[1:]:
        print(f"ratio ({first_label} / {label} step time): {first['step_s'] / r['step_s']:.2f}x; "
              f"update time: {first['update_s'] / r['update_s']:.2f}x")
        print(f"same completions sampled (tokens per step): {first['tokens'] == r['tokens']}  {first['tokens']} vs {r['tokens']}")


if __name__ == "__main__":
    main()
