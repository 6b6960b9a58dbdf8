// grpo::Tokenizer against Hugging Face tokenizers 0.23.3: ids, decode, normalization and
// pre-tokenization of the shipped Qwen2.5 tokenizer and of small tokenizers trained in the
// fixture (tests/python/fixtures/tokenizer.py), plus the API around them.
#include <catch2/catch.hpp>

#include <grpo/tokenizer/tokenizer.hpp>
#include <grpo/text/utf8.hpp>

#include <thread>

#include "fixture.hpp"

using grpo::Tokenizer;
using grpo::test::ids_of;
using grpo::test::unhex;

namespace {

/// Every check of one reference case; returns the number of failed checks (reported with the
/// case name) so a regression names the texts it breaks.
int check_case(const Tokenizer& tok, const nlohmann::json& c) {
  const std::string text = unhex(c["text"]);
  const auto expected = ids_of(c["ids"]);
  int failures = 0;
  const auto expect = [&](bool ok, const char* what, const std::string& got = {}, const std::string& want = {}) {
    if (!ok) {
      ++failures;
      UNSCOPED_INFO(c["name"].get<std::string>() << ": " << what << " differs; text hex " << c["text"].get<std::string>()
                                                 << (got.empty() && want.empty() ? "" : "; got \"" + got + "\", want \"" + want + "\""));
    }
  };
  const auto ids = tok.encode(text);
  expect(ids == expected, "encode");
  expect(tok.encode(text, false) == ids_of(c["ids_no_special"]), "encode(allow_special=false)");
  const std::string decoded = tok.decode(expected);
  expect(decoded == unhex(c["decoded"]), "decode", decoded, unhex(c["decoded"]));
  const std::string decoded_skip = tok.decode(expected, true);
  expect(decoded_skip == unhex(c["decoded_skip_special"]), "decode(skip_special)", decoded_skip, unhex(c["decoded_skip_special"]));
  const std::string normalized = tok.normalize(text);
  expect(normalized == unhex(c["normalized"]), "normalize");
  std::vector<std::string> pieces;
  for (const auto& piece : tok.pre_tokenize(normalized)) pieces.push_back(grpo::test::byte_level(piece));
  expect(pieces == c["pre_tokens"].get<std::vector<std::string>>(), "pre_tokenize");
  return failures;
}

void check_cases(const Tokenizer& tok, const nlohmann::json& cases) {
  int failures = 0;
  for (const auto& c : cases) failures += check_case(tok, c);
  CHECK(failures == 0);
}

}  // namespace

TEST_CASE("Qwen2.5 tokenizer: same ids, decode, normalization and pieces as tokenizers", "[tokenizer]") {
  const auto fixture = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "cases.json");
  const Tokenizer& tok = grpo::test::qwen_tokenizer();
  // Every shipped prompt, the think prompt, a chat prompt, the multilingual corpus, random
  // Unicode, random bytes and cut UTF-8 (fixture: tests/python/fixtures/tokenizer.py).
  REQUIRE(fixture["cases"].size() > 700);
  check_cases(tok, fixture["cases"]);
  CHECK(tok.vocab_size() == fixture["vocab_size"].get<std::int64_t>());
}

TEST_CASE("Qwen2.5 tokenizer: decode of arbitrary ids equals tokenizers", "[tokenizer]") {
  // Cut characters (lone byte tokens), ids beyond the vocabulary (skipped), special tokens.
  const auto cases = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "decode_cases.json");
  const Tokenizer& tok = grpo::test::qwen_tokenizer();
  int failures = 0;
  for (const auto& c : cases) {
    const auto ids = ids_of(c["ids"]);
    if (tok.decode(ids) != unhex(c["decoded"]) || tok.decode(ids, true) != unhex(c["decoded_skip_special"])) {
      ++failures;
      UNSCOPED_INFO("ids " << c["ids"].dump());
    }
  }
  CHECK(failures == 0);
  CHECK(tok.decode(std::vector<std::int64_t>{-1, -5}).empty());  // no token: skipped like unknown ids
}

TEST_CASE("Qwen2.5 tokenizer: decode(encode(x)) is the NFC text (valid UTF-8 input)", "[tokenizer]") {
  const auto fixture = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "cases.json");
  const Tokenizer& tok = grpo::test::qwen_tokenizer();
  int failures = 0;
  for (const auto& c : fixture["cases"]) {
    // tokenizers' NFC of the text (invalid bytes replaced first) is the expected round trip.
    if (tok.decode(tok.encode(unhex(c["text"]))) != unhex(c["normalized"])) {
      ++failures;
      UNSCOPED_INFO(c["name"].get<std::string>());
    }
  }
  CHECK(failures == 0);
}

TEST_CASE("tokenizers trained in the fixture: same ids, decode and pieces", "[tokenizer]") {
  // tiny_gpt2: ByteLevel with GPT-2's regex and a prefix space; tiny_split: a custom Split
  // (PCRE2), NFD+NFKC, an end-of-word suffix; tiny_llama3: literal and Contiguous splits,
  // Llama 3's pattern, an inverted MergedWithNext split, NFKD. All have added tokens with
  // lstrip/rstrip/single_word/normalized flags, special and not. tiny_unk / tiny_drop lack most
  // non-ASCII bytes: a fused unknown token with ignore_merges / unknown characters dropped.
  for (const char* name : {"tiny_gpt2", "tiny_split", "tiny_llama3", "tiny_unk", "tiny_drop"}) {
    SECTION(name) {
      const auto folder = grpo::test::tokenizer_fixture_dir() / name;
      const Tokenizer tok = Tokenizer::from_file(folder / "tokenizer.json");
      const auto fixture = grpo::test::read_json(folder / "cases.json");
      check_cases(tok, fixture["cases"]);
      CHECK(tok.vocab_size() == fixture["vocab_size"].get<std::int64_t>());
      // id_to_token of every id, and token_to_id back (tokenizers' answers).
      int failures = 0;
      const auto& tokens = fixture["id_to_token"];
      for (std::size_t id = 0; id < tokens.size(); ++id) {
        const auto got = tok.id_to_token(static_cast<std::int64_t>(id));
        if (tokens[id].is_null() ? got.has_value() : got != std::optional<std::string_view>(tokens[id].get<std::string>())) {
          ++failures;
          UNSCOPED_INFO("id_to_token(" << id << ")");
        }
      }
      CHECK(failures == 0);
      CHECK(tok.token_to_id("<s>").has_value());
      CHECK(tok.token_to_id("<été>").has_value());
    }
  }
}

TEST_CASE("Qwen2.5 tokenizer: vocabulary, special tokens and tokenizer_config.json", "[tokenizer]") {
  const Tokenizer& tok = grpo::test::qwen_tokenizer();
  // Ids from tokenizer.json: 151,643 BPE tokens then 22 added tokens from <|endoftext|> = 151643.
  CHECK(tok.vocab_size() == 151669);
  CHECK(tok.token_to_id("<|endoftext|>") == 151643);
  CHECK(tok.token_to_id("<|im_start|>") == 151644);
  CHECK(tok.token_to_id("<think>") == 151667);
  CHECK(tok.token_to_id("Hello") == 9707);
  CHECK(tok.token_to_id("ĠHello") == 21927);  // byte-level spelling of " Hello"
  CHECK_FALSE(tok.token_to_id("not a token at all").has_value());
  CHECK(tok.id_to_token(151645) == std::optional<std::string_view>("<|im_end|>"));
  CHECK(tok.id_to_token(21927) == std::optional<std::string_view>("ĠHello"));
  CHECK_FALSE(tok.id_to_token(151669).has_value());
  CHECK_FALSE(tok.id_to_token(-1).has_value());
  CHECK(tok.token_bytes(21927) == " Hello");
  CHECK(tok.token_bytes(151644) == "<|im_start|>");
  CHECK(tok.token_bytes(999999).empty());
  // tokenizer.json marks <|endoftext|> .. <|video_pad|> special, <tool_call> .. </think> not.
  CHECK(tok.is_special(151643));
  CHECK(tok.is_special(151656));
  CHECK_FALSE(tok.is_special(151657));
  CHECK_FALSE(tok.is_special(151667));
  CHECK_FALSE(tok.is_special(9707));
  const auto special = tok.special_token_ids();
  REQUIRE(special.size() == 14);
  CHECK(special.front() == 151643);
  CHECK(special.back() == 151656);
  CHECK(tok.added_tokens().size() == 26);
  // tokenizer_config.json: eos <|im_end|>, pad <|endoftext|>, bos null.
  CHECK(tok.eos_token_id() == 151645);
  CHECK(tok.pad_token_id() == 151643);
  CHECK_FALSE(tok.bos_token_id().has_value());
}

TEST_CASE("Tokenizer: encode_batch, copies and concurrent use agree with encode", "[tokenizer]") {
  const Tokenizer& tok = grpo::test::qwen_tokenizer();
  const auto fixture = grpo::test::read_json(grpo::test::tokenizer_fixture_dir() / "cases.json");
  std::vector<std::string> texts;
  std::vector<std::vector<std::int64_t>> expected;
  for (const auto& c : fixture["cases"]) {
    texts.push_back(unhex(c["text"]));
    expected.push_back(ids_of(c["ids"]));
  }
  CHECK(tok.encode_batch(texts) == expected);
  CHECK(tok.encode_batch(texts, true, 3) == expected);
  const Tokenizer copy = tok;  // a handle: shares the tables
  std::vector<std::vector<std::int64_t>> from_thread(texts.size());
  std::thread worker([&] {
    for (std::size_t k = 0; k < texts.size(); ++k) from_thread[k] = copy.encode(texts[k]);
  });
  std::vector<std::vector<std::int64_t>> here(texts.size());
  for (std::size_t k = 0; k < texts.size(); ++k) here[k] = tok.encode(texts[k]);
  worker.join();
  CHECK(from_thread == expected);
  CHECK(here == expected);
  std::vector<std::int64_t> appended{7};
  tok.encode_into("Hello", appended);
  CHECK(appended == std::vector<std::int64_t>{7, 9707});
}
