"""Makes the reference fixtures the C++ tests compare with, using the Python reference
implementations (transformers, tokenizers, safetensors) on the CPU.

Run by ctest once per build tree (fixtures/make). Each module in tests/python/fixtures/ defines
`make(out: pathlib.Path, source: pathlib.Path) -> None` and owns the folder out/<module name>;
a module's fixtures are remade only when the module's source changed since they were made.
"""
import argparse
import hashlib
import importlib.util
import pathlib
import shutil
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--source", required=True, type=pathlib.Path)
    parser.add_argument("--only", nargs="*", help="module names to make (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    here = pathlib.Path(__file__).resolve().parent
    sys.path.insert(0, str(here))
    for path in sorted((here / "fixtures").glob("*.py")):
        name = path.stem
        if name.startswith("_") or (args.only and name not in args.only):
            continue
        target = args.out / name
        stamp = target / ".made-from.sha256"
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if stamp.exists() and stamp.read_text() == digest:
            print(f"fixtures/{name}: up to date")
            continue
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        spec = importlib.util.spec_from_file_location(f"fixtures.{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.make(target, args.source)
        stamp.write_text(digest)
        print(f"fixtures/{name}: made")


if __name__ == "__main__":
    main()
