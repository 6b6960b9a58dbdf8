"""Writes the seed corpus of tokenizer_json_fuzz (tests/fuzz/corpus/tokenizer_json_fuzz/): small
tokenizer.json files trained with Hugging Face tokenizers in several configurations the loader
accepts (the mutations of the fuzz driver then break them in every field), plus a few it
rejects. Run once with the project's Python; the files are committed.

    .venv/bin/python tests/fuzz/make_tokenizer_corpus.py
"""
import json
import pathlib

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "tokenizer_json_fuzz"
TEXTS = ["the cat sat on the mat", "héllo wörld 数据 模型 it's we're", "123 4567 👍 naïve straße"] * 20
QWEN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
        r"\s*[\r\n]+|\s+(?!\S)|\s+")


def train(pre_tokenizer, normalizer, suffix=None) -> Tokenizer:
    tok = Tokenizer(models.BPE(**({"end_of_word_suffix": suffix} if suffix else {})))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=290, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  **({"end_of_word_suffix": suffix} if suffix else {}))
    tok.train_from_iterator(TEXTS, trainer=trainer)
    tok.add_special_tokens([AddedToken("<s>", special=True), AddedToken("<mask>", special=True, lstrip=True, rstrip=True)])
    tok.add_tokens([AddedToken("[SEP]", normalized=False, single_word=True), AddedToken("<é>", normalized=True)])
    return tok


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    configs = {
        "valid_qwen_style": (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN), "isolated"),
                                                      pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                             normalizers.NFC(), None),
        "valid_gpt2_style": (pre_tokenizers.ByteLevel(add_prefix_space=True), None, None),
        "valid_split_suffix": (pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"[\p{P}\s]+"), "merged_with_next", invert=True),
                                                        pre_tokenizers.Split(" ", "removed"),
                                                        pre_tokenizers.ByteLevel(use_regex=False)]),
                               normalizers.Sequence([normalizers.NFKD(), normalizers.NFC()]), "</w>"),
    }
    for name, (pre, norm, suffix) in configs.items():
        text = train(pre, norm, suffix).to_str()
        (OUT / f"{name}.json").write_text(text)
        broken = json.loads(text)
        broken["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in broken["model"]["merges"]]
        (OUT / f"valid_{name[6:]}_string_merges.json").write_text(json.dumps(broken))
    (OUT / "invalid_truncated.json").write_text((OUT / "valid_qwen_style.json").read_text()[:2000])
    (OUT / "invalid_wordpiece.json").write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0}}}))
    print(f"wrote {len(list(OUT.iterdir()))} files to {OUT}")


if __name__ == "__main__":
    main()
