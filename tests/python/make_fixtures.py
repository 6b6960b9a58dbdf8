"""Makes the reference fixtures the C++ tests compare with, using the Python reference
implementations (transformers, tokenizers, safetensors) on the CPU.

Run by ctest once per build tree (fixtures/make); each fixture family is skipped when its
output already exists and its maker has not changed.
"""
import argparse
import pathlib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--source", required=True, type=pathlib.Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)


if __name__ == "__main__":
    main()
