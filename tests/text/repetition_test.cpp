// The repetition measure (grpo/text/repetition.hpp) on realistic hand-written English and Chinese
// essays on a single topic (shared vocabulary is the hard case for false positives), and on the
// same essays with verbatim, lightly edited, reordered and stitched repeats appended.
#include <grpo/text/repetition.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace grpo;

namespace {

// Eight distinct paragraphs about one topic (coffee), 45-75 words each.
const std::vector<std::string> english = {
    "Coffee began its journey in the highlands of Ethiopia, where, according to a popular legend, a goatherd "
    "named Kaldi noticed that his animals became unusually lively after eating the red berries of a certain "
    "shrub. Whether or not the story is true, the plant spread across the Red Sea to Yemen, where Sufi monks "
    "brewed it to stay awake during long nights of prayer.",
    "By the sixteenth century coffee houses had opened in Mecca, Cairo and Istanbul. They were loud, crowded "
    "places where merchants closed deals, poets recited verses and strangers argued about politics. Rulers "
    "distrusted them for exactly that reason, and more than one sultan tried to close them, although none of "
    "the bans lasted for very long.",
    "European travellers brought the drink home in the seventeenth century. In London, a cup cost a penny, "
    "and the coffee house earned the nickname of the penny university, because for the price of a drink anyone "
    "could listen to the conversation of scholars. Lloyd's of London, the insurance market, grew out of one of "
    "these rooms near the docks.",
    "Cultivation moved with the colonial empires. The Dutch planted seedlings in Java, the French carried a "
    "single tree to Martinique, and within a century plantations covered the hills of Brazil. Much of this "
    "expansion rested on forced labour, a history that the industry has only recently begun to acknowledge "
    "openly.",
    "The chemistry of roasting explains why the same bean can taste of bread, chocolate or fruit. As the "
    "temperature rises, sugars caramelise and amino acids react with them in the Maillard reaction, producing "
    "hundreds of aromatic compounds. A light roast preserves acidity and floral notes, while a dark roast "
    "trades them for bitterness and body.",
    "Brewing is a matter of extraction. Water dissolves acids first, then sugars, and finally the heavier "
    "bitter compounds, so grind size, temperature and contact time decide which flavours end up in the cup. "
    "Espresso forces hot water through a compact puck in under half a minute, whereas a cold brew steeps "
    "coarse grounds for most of a day.",
    "Today coffee is one of the most traded agricultural products in the world, and roughly a hundred million "
    "people depend on it for their income. Prices on the commodity markets swing wildly with the weather in "
    "Brazil and Vietnam, which leaves small farmers exposed to risks they cannot control.",
    "Climate change threatens the crop more directly than most. Arabica grows best within a narrow band of "
    "temperatures, and studies suggest that half of the land suitable for it could disappear by the middle of "
    "the century. Breeders are crossing it with hardier wild species in the hope of keeping the familiar "
    "flavour alive.",
};

// Six distinct Chinese paragraphs about one topic (tea).
const std::vector<std::string> chinese = {
    "茶起源于中国西南地区，相传神农尝百草时发现了茶叶可以解毒。最初人们把茶当作药物，后来才逐渐把它当作日常饮品。"
    "到了唐代，饮茶之风已经遍及全国，陆羽写成了世界上第一部关于茶的专著《茶经》。",
    "宋代的点茶讲究技艺，文人们把茶末放在茶盏里，用沸水冲点，再用茶筅快速击拂，使茶汤表面泛起细腻的白色泡沫。"
    "斗茶成为一种风雅的游戏，比的是汤色是否鲜白，泡沫能否持久。",
    "明代以后，散茶冲泡取代了繁琐的点茶，紫砂壶也随之兴起。宜兴的工匠用当地特有的陶土制壶，壶身透气而不渗水，"
    "据说用久了的壶即使只倒入开水，也能泛出淡淡的茶香。",
    "茶叶经由丝绸之路和海上贸易传到世界各地。十七世纪荷兰商人把茶运到欧洲，英国人后来形成了喝下午茶的习惯，"
    "而为了支付购买茶叶的白银，英国又向中国输入鸦片，最终引发了战争。",
    "按照加工方法的不同，茶可以分为绿茶、白茶、黄茶、青茶、红茶和黑茶六大类。绿茶不发酵，保留了鲜叶的清香；"
    "红茶经过充分发酵，滋味甜醇；乌龙茶介于两者之间，兼有花果香气。",
    "如今，茶产业关系着许多山区农民的生计。一些地方把茶园和乡村旅游结合起来，游客可以亲手采茶、炒茶，"
    "体验传统工艺，这既增加了农民收入，也让古老的茶文化焕发出新的活力。",
};

std::string join(const std::vector<std::string>& paragraphs) {
  std::string text;
  for (const auto& p : paragraphs) text += p + "\n\n";
  return text;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (std::size_t pos = s.find(from); pos != std::string::npos; pos = s.find(from, pos + to.size())) s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

TEST_CASE("distinct paragraphs on one topic are not penalised") {
  const auto en = measure_repetition(join(english));
  CHECK(en.paragraphs == 8);
  CHECK(en.judged_paragraphs == 8);
  CHECK(en.repeated_paragraphs == 0);
  CHECK(en.ratio == 0.0);
  CHECK(en.max_containment < 0.1);
  const auto zh = measure_repetition(join(chinese));
  CHECK(zh.paragraphs == 6);
  CHECK(zh.repeated_paragraphs == 0);
  CHECK(zh.ratio == 0.0);
  CHECK(zh.max_containment < 0.1);
}

TEST_CASE("a verbatim copy is penalised by its share of the text") {
  auto paragraphs = english;
  paragraphs.push_back(english[2]);
  const auto r = measure_repetition(join(paragraphs));
  CHECK(r.repeated_paragraphs == 1);
  CHECK(r.max_containment == 1.0);
  // ratio = units of the copy / all units (the copy scores s = 1)
  const double copy_units = static_cast<double>(measure_repetition(english[2]).units);
  CHECK(r.ratio == Approx(copy_units / static_cast<double>(r.units)));
  CHECK(r.ratio > 0.1);
}

TEST_CASE("a copy with a few words changed is still caught") {
  // 5 substitutions in a 61-word paragraph
  std::string edited = english[4];
  edited = replace_all(edited, "explains", "shows");
  edited = replace_all(edited, "bread", "toast");
  edited = replace_all(edited, "hundreds", "thousands");
  edited = replace_all(edited, "preserves", "keeps");
  edited = replace_all(edited, "bitterness", "bitter notes");
  auto paragraphs = english;
  paragraphs.push_back(edited);
  const auto r = measure_repetition(join(paragraphs));
  CHECK(r.repeated_paragraphs == 1);
  CHECK(r.max_containment >= 0.5);
  CHECK(r.ratio > 0.1);
}

TEST_CASE("reordered sentences and re-punctuation are caught") {
  const std::string reordered =
      "Espresso forces hot water through a compact puck in under half a minute, whereas a cold brew steeps "
      "coarse grounds for most of a day. Water dissolves acids first, then sugars, and finally the heavier "
      "bitter compounds; so grind size, temperature and contact time decide which flavours end up in the cup! "
      "Brewing is a matter of extraction.";
  auto paragraphs = english;
  paragraphs.push_back(reordered);
  const auto r = measure_repetition(join(paragraphs));
  CHECK(r.repeated_paragraphs == 1);
  CHECK(r.max_containment >= 0.8);
}

TEST_CASE("a paragraph stitched from pieces of two earlier ones is caught") {
  const std::string stitched =
      "As the temperature rises, sugars caramelise and amino acids react with them in the Maillard reaction, "
      "producing hundreds of aromatic compounds. Prices on the commodity markets swing wildly with the weather in "
      "Brazil and Vietnam, which leaves small farmers exposed to risks they cannot control.";
  auto paragraphs = english;
  paragraphs.push_back(stitched);
  CHECK(measure_repetition(join(paragraphs)).repeated_paragraphs == 1);
}

TEST_CASE("repetition inside one long paragraph is caught") {
  std::string one_paragraph = english[0];
  for (int i = 0; i < 3; ++i) one_paragraph += " " + english[0];  // a single line, four times the same text
  const auto r = measure_repetition(one_paragraph);
  CHECK(r.paragraphs == 1);
  CHECK(r.max_containment >= 0.7);  // 3 of 4 copies seen before
  CHECK(r.ratio == 1.0);
}

TEST_CASE("Chinese: verbatim and lightly edited copies are caught") {
  auto paragraphs = chinese;
  paragraphs.push_back(chinese[1]);
  const auto verbatim = measure_repetition(join(paragraphs));
  CHECK(verbatim.repeated_paragraphs == 1);
  CHECK(verbatim.ratio > 0.1);

  std::string edited = chinese[2];  // three small substitutions
  edited = replace_all(edited, "明代以后", "到了明朝");
  edited = replace_all(edited, "工匠", "匠人");
  edited = replace_all(edited, "淡淡的", "浓浓的");
  paragraphs = chinese;
  paragraphs.push_back(edited);
  const auto r = measure_repetition(join(paragraphs));
  CHECK(r.repeated_paragraphs == 1);
  CHECK(r.max_containment >= 0.5);
}

TEST_CASE("short lines such as repeated headings are not judged") {
  std::string text;
  for (int i = 0; i < 4; ++i) text += "## Key points\n" + english[static_cast<std::size_t>(i)] + "\n";
  const auto r = measure_repetition(text);
  CHECK(r.paragraphs == 8);
  CHECK(r.judged_paragraphs == 4);
  CHECK(r.ratio == 0.0);
}

TEST_CASE("the graded score between the thresholds") {
  // Hand-made: paragraph B repeats 8 of the 16 word-5-grams... easier with n = 1:
  // A = 12 distinct words, B = 6 words of A + 6 new words -> containment 0.5 with n = 1.
  const std::string a = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima";
  const std::string b = "alpha bravo charlie delta echo foxtrot one two three four five six";
  const RepetitionOptions o{.word_ngram = 1, .ordinary_containment = 0.25, .repeated_containment = 0.75};
  const auto r = measure_repetition(a + "\n" + b, o);
  CHECK(r.max_containment == Approx(0.5));
  // s_B = (0.5 - 0.25) / (0.75 - 0.25) = 0.5; ratio = 12 * 0.5 / 24
  CHECK(r.ratio == Approx(0.25));
  CHECK(r.repeated_paragraphs == 0);
}

TEST_CASE("edge cases and bad options") {
  CHECK(measure_repetition("").ratio == 0.0);
  CHECK(measure_repetition("!!! ... ???").units == 0);
  CHECK(measure_repetition("\xFF\xFE\x80 invalid bytes are not units").units == 5);  // invalid, bytes, are, not, units
  CHECK_THROWS_AS(measure_repetition("x", {.word_ngram = 0}), Error);
  CHECK_THROWS_AS(measure_repetition("x", {.ordinary_containment = 0.6, .repeated_containment = 0.5}), Error);
  CHECK(repetition_ratio(join(english)) == 0.0);
}

TEST_CASE("deliberately formulaic prose (the GPL-3 licence text) is barely penalised") {
  // Legal text repeats phrases like "the Program", "this License" on purpose: a hard case for false
  // positives. Hard-wrapped lines are joined into paragraphs, as a model would write them.
  std::ifstream in("/usr/share/common-licenses/GPL-3");  // Debian's base-files
  if (!in) {
    WARN("no /usr/share/common-licenses/GPL-3 on this machine; skipped");
    return;
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string raw = buffer.str();
  std::string text;
  for (std::size_t k = 0; k < raw.size(); ++k) {
    const bool paragraph_break = raw[k] == '\n' && ((k + 1 < raw.size() && raw[k + 1] == '\n') || (k > 0 && raw[k - 1] == '\n'));
    text += raw[k] == '\n' && !paragraph_break ? ' ' : raw[k];
  }
  const auto r = measure_repetition(text);
  CHECK(r.judged_paragraphs > 80);
  CHECK(r.repeated_paragraphs == 0);
  CHECK(r.ratio < 0.02);  // measured 0.001 with the defaults (n = 5); n = 3 would give 0.05
}
