"""Generates include/grpo/tokenizer/detail/unicode_tables.hpp: the Unicode general category of
every code point, the White_Space and word-character sets exactly as the Hugging Face `tokenizers`
regex engine (Oniguruma, inside tokenizers' Split pre-tokenizer) sees them, and the code points
tokenizers' normalizers (Unicode 9.0 tables) treat as unassigned although utf8proc does not.

Why not PCRE2's or utf8proc's own tables: they lag behind (Debian 12's PCRE2 10.42 knows Unicode
14, tokenizers 0.23.3 knows Unicode 16: 9,272 letters and 120 numbers differ), and the tokenizer
must split text exactly where `tokenizers` does. Asking the reference engine itself is exact by
construction. Run with the project's Python (tokenizers pinned in tests/requirements.txt):

    .venv/bin/python scripts/generate_tokenizer_unicode_tables.py
"""
import pathlib
import unicodedata

import tokenizers
from tokenizers import Regex, normalizers, pre_tokenizers

CATEGORIES = "Cn Lu Ll Lt Lm Lo Mn Mc Me Nd Nl No Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Zs Zl Zp Cc Cf Cs Co".split()
OUT = pathlib.Path(__file__).resolve().parent.parent / "include/grpo/tokenizer/detail/unicode_tables.hpp"


def matching(pattern: str, text: str) -> list[int]:
    """Code points of `text` that `pattern` (one character wide) matches, per tokenizers."""
    split = pre_tokenizers.Split(Regex(pattern), behavior="removed", invert=True)
    return [ord(ch) for piece, _ in split.pre_tokenize_str(text) for ch in piece]


def to_ranges(code_points) -> list[list[int]]:
    ranges = []
    for c in sorted(code_points):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return ranges


def normalization_opaque(category: dict) -> set[int]:
    """Code points tokenizers' normalizers treat as unassigned although utf8proc (Unicode 15)
    knows their normalization data. tokenizers normalizes with the unicode-normalization-alignments
    crate, whose tables are Unicode 9.0; normalization data of assigned characters never changes,
    so the two differ exactly on characters added since. Found by asking tokenizers: marks whose
    combining class it ignores, decompositions and compositions it does not apply (judged against
    Python's unicodedata), and everything Python's unicodedata does not know yet but Oniguruma does."""
    nfc, nfkd = normalizers.NFC(), normalizers.NFKD()
    opaque = set()
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        if unicodedata.category(ch) == "Cn":
            if category[c] != "Cn":
                opaque.add(c)  # assigned after the Unicode of this Python
            continue
        ccc = unicodedata.combining(ch)
        if ccc:
            probe = ch + "\u0334" if ccc > 1 else "\u0301" + ch  # U+0334 has class 1, U+0301 230
            if nfc.normalize_str(probe) != unicodedata.normalize("NFC", probe):
                opaque.add(c)
        if unicodedata.normalize("NFKD", ch) != ch and nfkd.normalize_str(ch) == ch:
            opaque.add(c)
        decomposition = unicodedata.decomposition(ch)
        if decomposition and not decomposition.startswith("<"):
            parts = [chr(int(x, 16)) for x in decomposition.split()]
            pair = "".join(parts)
            if len(parts) == 2 and unicodedata.normalize("NFC", pair) == ch and nfc.normalize_str(pair) != ch:
                opaque.update(ord(p) for p in parts)
                opaque.add(c)
    return opaque


def main() -> None:
    scalars = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    text = "".join(map(chr, scalars))
    category = {c: "Cs" for c in range(0xD800, 0xE000)}  # not in any Rust string: surrogates
    for name in CATEGORIES:
        if name in ("Cn", "Cs"):
            continue
        for c in matching(r"\p{%s}" % name, text):
            assert c not in category, f"U+{c:04X} in two categories"
            category[c] = name
    for c in scalars:
        category.setdefault(c, "Cn")
    assert len(category) == 0x110000

    # The escapes the tokenizer translates for PCRE2: \s and \w get their own tables (\w is
    # Alphabetic + marks + Nd + Pc, not a union of categories); \d must be exactly Nd.
    white_space = matching(r"\s", text)
    word = sorted(matching(r"\w", text))
    digit = set(matching(r"\d", text))
    assert digit == {c for c in scalars if category[c] == "Nd"}, "\\d is no longer Nd"
    word_ranges = to_ranges(word)

    opaque_ranges = to_ranges(normalization_opaque(category))

    runs = []  # (first code point, category) wherever the category changes
    for c in range(0x110000):
        if not runs or runs[-1][1] != category[c]:
            runs.append((c, category[c]))
    index = {name: i for i, name in enumerate(CATEGORIES)}
    body = []
    for i in range(0, len(runs), 6):
        chunk = runs[i:i + 6]
        body.append("    " + " ".join(f"0x{(c << 5) | index[name]:08X}u," for c, name in chunk))
    enum = ", ".join(CATEGORIES)
    OUT.write_text(f"""#pragma once
// GENERATED by scripts/generate_tokenizer_unicode_tables.py from tokenizers {tokenizers.__version__}
// (its Oniguruma regex engine and its normalizers), Unicode as they know it; do not edit. Python's
// unicodedata here is Unicode {unicodedata.unidata_version}, PCRE2 10.42 knows Unicode 14: both lag behind the
// regex engine, which is why the tokenizer does not ask them where its pre-tokenizer splits.

#include <cstdint>

namespace grpo::tokenizer_detail::unicode_tables {{

/// Unicode general categories; Cn (unassigned) is 0.
enum class GeneralCategory : std::uint8_t {{ {enum} }};

/// Run-length table of the general category over U+0000..U+10FFFF: each entry is
/// (first code point << 5) | category, sorted, the first at U+0000; a run lasts until the next.
inline constexpr std::uint32_t category_runs[] = {{
{chr(10).join(body)}
}};

/// The code points `\\s` matches (the Unicode White_Space property), sorted.
inline constexpr char32_t white_space[] = {{ {", ".join(f"0x{c:04X}" for c in white_space)} }};

/// Code points tokenizers' normalizers (Unicode 9.0 tables) treat as unassigned while utf8proc
/// has normalization data for them, as sorted inclusive ranges {{first, last}}: the normalizer
/// keeps them as they are and normalizes the text between them separately.
inline constexpr char32_t normalization_opaque_ranges[][2] = {{
{chr(10).join("    " + " ".join(f"{{0x{a:04X}, 0x{b:04X}}}," for a, b in opaque_ranges[i:i + 5]) for i in range(0, len(opaque_ranges), 5))}
}};

/// The code points `\\w` matches, as sorted inclusive ranges {{first, last}}.
inline constexpr char32_t word_ranges[][2] = {{
{chr(10).join("    " + " ".join(f"{{0x{a:04X}, 0x{b:04X}}}," for a, b in word_ranges[i:i + 5]) for i in range(0, len(word_ranges), 5))}
}};

}}  // namespace grpo::tokenizer_detail::unicode_tables
""")
    print(f"{OUT}: {len(runs)} runs, {len(white_space)} white-space code points, {len(word_ranges)} word ranges, {len(opaque_ranges)} opaque ranges")


if __name__ == "__main__":
    main()
