#!/usr/bin/env python3
"""Makes the data of the `tiny` LongWriter-Zero demo (examples/data/tiny/), deterministically.

No model hub is reachable and no pretrained model fits 2 CPU cores, so the demo builds its own
small world from hand-written sentence banks (8 topics, 20 sentences each, written for this
project). Each topic's 20 sentences, in the order written, form 10 paragraphs of 2 sentences
(about 20 words each). A piece of p paragraphs is the FIRST p of them: every piece is coherent,
and its length is set by one decision per paragraph, whether to close the answer after it or go
on with the next. Going on is the coherent way to write more, so the length reward and the
writing reward model can agree (a policy that does not stop at the end of its topic has nothing
coherent left to write).

  pretrain.jsonl     warm-up corpus for the tiny base policy: {"prompt", "completion"} where the
                     completion is "<think>plan</think>\\n<answer>the first p
                     paragraphs</answer>", p = 1..10, mostly short (median 3). Half the prompts ask
                     for "about N words" but p is drawn independently of N, so the base model reads
                     length requests without obeying them: RL has to teach it the target range.
  prompts.jsonl      RL prompts "Write about <topic> in about N words." (N = 160, 180, 200) with the
                     target [N - 20, N + 20] and "length": N (LongBench-Write's S_l in `eval`).
                     The base model's answers are mostly shorter (median 3 paragraphs, ~60 words
                     in pretraining): as for LongWriter-Zero's base model, RL must make it write
                     longer, up to 8-10 of its 10 paragraphs.
  preferences.jsonl  Bradley-Terry pairs for the writing reward model: chosen = a coherent,
                     on-topic answer; rejected = the same answer broken in one of the ways
                     the paper names as failure modes or that make writing worse: a repeated
                     (verbatim or lightly edited) paragraph, drift into other topics, shuffled word
                     order, a fragment cut mid-sentence, sentences spliced into one another, or
                     gibberish tokens in place of words (what a small policy emits when RL pushes
                     it off its data); half the time only the end of the answer, after a coherent
                     start, is broken. Chosen and rejected have the same length, so these pairs
                     judge quality, not length. Then 480 requirement-following pairs: two coherent
                     answers to "in about N words", the chosen one keeping to N +- 20 words (or
                     the nearest the topic allows), the rejected one missing it by 40 words more,
                     too short or too long, as a rater who reads the request would judge.

Run: python3 scripts/make_tiny_data.py [--out DIR]  (rewrites the three files, by default in
examples/data/tiny/; the output is committed, and tests/python/test_tiny_data.py checks that a
re-run reproduces it byte for byte)
"""
import argparse
import json
import pathlib
import random

TOPICS = {
    "the sea": [
        "The sea changes colour with every hour of the day.",
        "At dawn the water is pale grey and almost still.",
        "By noon the waves catch the light and turn a deep blue.",
        "Fishermen leave the harbour before the sun rises.",
        "Gulls follow the boats and cry over the nets.",
        "The tide pulls back and leaves shells on the wet sand.",
        "Children build castles that the evening waves will take.",
        "A storm can turn the calm bay into a wall of white foam.",
        "Sailors read the clouds to know when the wind will turn.",
        "The lighthouse keeper watches the dark water through the night.",
        "Under the surface, forests of kelp sway in the current.",
        "Small fish move together like a single silver cloud.",
        "The salt air makes everything on the coast feel fresh and sharp.",
        "Old ships rest on the sea floor and slowly become reefs.",
        "Every culture that lives by the sea has stories about it.",
        "For many people the sound of waves is the sound of rest.",
        "The sea also feeds millions of families around the world.",
        "Plastic waste now drifts far out into the open ocean.",
        "Scientists measure the water to learn how the climate is changing.",
        "Standing on the shore, it is easy to feel small and calm at once.",
    ],
    "a city at night": [
        "When the sun goes down, the city does not sleep.",
        "Street lamps turn the wet roads into rivers of orange light.",
        "Taxis wait outside the theatres for the last shows to end.",
        "The smell of fresh bread comes from a bakery that opens at midnight.",
        "Office towers keep a few windows lit where people still work.",
        "On the bridges, couples stop to look at the reflections in the river.",
        "Night buses carry nurses, cooks and cleaners across town.",
        "A jazz band plays in a small cellar bar near the station.",
        "The markets are empty, but the cleaning trucks are busy.",
        "Cats walk along the walls as if they own the streets.",
        "From a high roof, the city looks like a map drawn in light.",
        "Sirens rise and fade somewhere far away.",
        "Late trains rattle over the tracks with only a few passengers.",
        "In quiet squares, the fountains keep running for no one.",
        "Some people love the city most in these hours.",
        "Others feel lonely among so many closed doors.",
        "Before dawn, the first delivery vans arrive with milk and papers.",
        "The sky slowly turns from black to deep blue.",
        "Birds begin to sing even before the lamps switch off.",
        "Then the city wakes up and the night becomes a memory.",
    ],
    "autumn in the mountains": [
        "In autumn the mountain forests turn red, gold and brown.",
        "The air is cold in the morning and clear in the afternoon.",
        "Hikers walk slowly on paths covered with fallen leaves.",
        "Shepherds bring their flocks down from the high meadows.",
        "Mist fills the valleys and hides the villages until noon.",
        "The first snow often arrives on the highest peaks in October.",
        "Streams are loud after the rain and run fast over the stones.",
        "Families gather mushrooms and chestnuts in the woods.",
        "Woodsmoke rises from the chimneys of the old stone houses.",
        "Deer come closer to the farms as the days grow shorter.",
        "The light is low and warm, and long shadows cross the slopes.",
        "Mountain huts close their doors until the next summer.",
        "Farmers store hay and wood for the long winter ahead.",
        "At night the sky is full of stars and the frost is sharp.",
        "Photographers climb early to catch the sunrise above the clouds.",
        "Each week the colours on the hills look a little different.",
        "The silence of the high pastures is broken only by bells.",
        "Travellers drink hot soup in small inns after a long walk.",
        "By November, most trees stand bare against the grey sky.",
        "Autumn in the mountains feels like a slow goodbye to the year.",
    ],
    "the history of bread": [
        "Bread is one of the oldest foods made by human hands.",
        "The first breads were flat cakes of crushed grain baked on hot stones.",
        "Farmers in the ancient Near East grew wheat and barley for bread.",
        "Egyptian bakers learned that dough left to rest would rise.",
        "Wild yeast from the air made their loaves light and soft.",
        "In Rome, public bakeries fed thousands of people every day.",
        "Bread was so important that its price could start a riot.",
        "Medieval towns had strict rules about the weight of a loaf.",
        "Rich families ate white bread, while the poor ate dark rye.",
        "Windmills and water mills made flour faster and cheaper.",
        "In the nineteenth century, steam ovens changed baking forever.",
        "Factories began to sell sliced bread wrapped in paper.",
        "Every region developed its own shapes and recipes.",
        "The French baguette and the Indian naan tell very different stories.",
        "Today many people bake sourdough at home again.",
        "A starter of flour and water can be kept alive for years.",
        "Bread is shared at weddings, funerals and holidays.",
        "Breaking bread together is a sign of peace in many cultures.",
        "Scientists still study how grains shaped human settlement.",
        "A simple loaf carries thousands of years of history.",
    ],
    "learning to play the piano": [
        "Learning to play the piano begins with finding middle C.",
        "The first weeks are about posture and relaxed hands.",
        "Beginners practise scales slowly to train each finger.",
        "Reading music feels like learning a new alphabet.",
        "Simple songs give quick rewards and keep students motivated.",
        "A good teacher listens carefully and corrects small habits early.",
        "Playing with both hands at once is the first big challenge.",
        "The left hand often feels clumsy for months.",
        "A metronome helps to keep a steady rhythm.",
        "Short daily practice works better than one long session a week.",
        "Mistakes are part of the process and show what to practise next.",
        "After a year, many students can play a simple classical piece.",
        "Learning to use the pedals adds colour to the sound.",
        "Recitals are stressful but teach students to perform under pressure.",
        "Listening to great pianists gives ideas about phrasing.",
        "Some learners prefer jazz and start to improvise.",
        "Adults learn more slowly but often practise with more focus.",
        "The piano rewards patience more than talent.",
        "Over time, the instrument becomes a way to express feelings.",
        "Many players say the journey matters more than the goal.",
    ],
    "a train journey": [
        "The train leaves the station exactly on time.",
        "Passengers find their seats and lift their bags onto the racks.",
        "Outside the window, the suburbs slowly give way to fields.",
        "A child presses her face against the glass to watch the cows.",
        "The conductor walks through the carriages checking tickets.",
        "Some travellers read, while others fall asleep at once.",
        "The dining car smells of coffee and warm sandwiches.",
        "Rivers and small towns pass by in a steady rhythm.",
        "In the tunnels, the windows suddenly become dark mirrors.",
        "Strangers share stories because they will never meet again.",
        "An old man points out the castle where he grew up.",
        "Rain begins to draw long lines across the glass.",
        "At each station, new faces step in and old ones step out.",
        "The sound of the wheels on the rails becomes a kind of music.",
        "Mountains appear on the horizon as the afternoon ends.",
        "The lights in the carriage turn on when evening falls.",
        "Phones buzz with messages from the people waiting at home.",
        "A long journey by train gives time to think.",
        "When the train arrives, everyone hurries off at once.",
        "The empty platform is quiet again until the next departure.",
    ],
    "a garden through the seasons": [
        "In early spring, the first green shoots push through the cold soil.",
        "Snowdrops and crocuses bloom before any leaves appear on the trees.",
        "The gardener prepares the beds and plants seeds in neat rows.",
        "Bees return as soon as the fruit trees begin to flower.",
        "By May, the lettuce and radishes are ready to eat.",
        "Summer brings long evenings of watering and weeding.",
        "Tomatoes ripen slowly on the warm wall of the house.",
        "Roses climb over the old wooden gate.",
        "Birds nest in the hedge and feed their young on insects.",
        "In August, the lawn turns yellow if it does not rain.",
        "Autumn is the season of apples, pumpkins and falling leaves.",
        "Leaves are raked into piles and turned into compost.",
        "Bulbs are planted in October for the next spring.",
        "Winter leaves the garden bare, but not empty.",
        "Frost draws patterns on the last cabbages.",
        "Robins search the frozen ground for food.",
        "The gardener plans next year with seed catalogues by the fire.",
        "Every season teaches patience and care.",
        "A garden is never finished, only changing.",
        "Its cycle mirrors the passing of our own years.",
    ],
    "the first day at a new school": [
        "On the first day at a new school, the corridors seem endless.",
        "Every face is unfamiliar and every room has a strange number.",
        "The new student holds a timetable that makes little sense.",
        "A friendly teacher shows the way to the right classroom.",
        "The class turns to look when the door opens.",
        "Choosing where to sit feels like a very big decision.",
        "The lessons are not harder than before, only different.",
        "At lunch, the noise of the dining hall is almost too much.",
        "Someone offers a seat and asks a simple question.",
        "That small kindness changes the whole day.",
        "In the afternoon, the school map finally starts to make sense.",
        "The sports field is larger than the old one.",
        "A club for music or chess offers a place to belong.",
        "Parents ask many questions at dinner that evening.",
        "The answers are short, because the day was so full.",
        "That night, sleep comes late and full of small worries.",
        "The second day is easier than the first.",
        "After a week, the new school feels less strange.",
        "After a month, it is simply school.",
        "Years later, that first day becomes a funny story to tell.",
    ],
}

PLANS = [
    "I will describe {topic} in short paragraphs with clear, simple sentences.",
    "Plan: open with an image of {topic}, add details, and end calmly.",
    "The reader wants a vivid picture of {topic}. I will use concrete details.",
    "Outline: introduction, main details about {topic}, and a short ending.",
]


def paragraphs_of(topic):
    """The topic's 10 paragraphs in order: sentences 2i and 2i + 1."""
    bank = TOPICS[topic]
    return [" ".join(bank[i:i + 2]) for i in range(0, len(bank), 2)]


def answer_from(topic, p):
    """A piece of p paragraphs: the first p of the topic's."""
    return paragraphs_of(topic)[:p]


def completion_from(rng, topic, paragraphs):
    plan = rng.choice(PLANS).format(topic=topic)
    return f"<think>{plan}</think>\n<answer>" + "\n\n".join(paragraphs) + "</answer>"


# Unicode blocks gibberish is drawn from: Latin letters, Cyrillic, Thai, Hebrew, CJK, Hangul, and
# code-like identifiers, the kind of tokens a small policy emits when RL pushes it off its data.
JUNK_BLOCKS = [(0x61, 0x7A), (0x430, 0x44F), (0xE01, 0xE2E), (0x5D0, 0x5EA), (0x4E00, 0x9FA5), (0xAC00, 0xD7A3)]


def junk_word(rng):
    if rng.random() < 0.25:  # an identifier
        return rng.choice(["_", ".", ""]).join(
            "".join(chr(rng.randint(0x61, 0x7A)) for _ in range(rng.randint(2, 6))).capitalize()
            for _ in range(rng.randint(1, 3)))
    lo, hi = rng.choice(JUNK_BLOCKS)
    return "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 5)))


def corrupt(rng, topic, paragraphs):
    """A worse answer of about the same length: one of six failure modes."""
    mode = rng.randrange(6)
    words = sum(len(p.split()) for p in paragraphs)
    if mode == 5:  # spliced sentences: the start of one sentence runs into the end of another
        return splice(rng, paragraphs, rng.uniform(0.4, 0.9))
    if mode == 4:  # gibberish: a third to two thirds of the words replaced by junk tokens
        share = rng.uniform(0.33, 0.67)
        return [" ".join(junk_word(rng) if rng.random() < share else w for w in p.split()) for p in paragraphs]
    if mode == 0 and len(paragraphs) >= 2:  # repetition: a paragraph again, verbatim or lightly edited
        keep = paragraphs[: max(1, len(paragraphs) // 2)]
        out = list(keep)
        while sum(len(p.split()) for p in out) < words:
            copy = rng.choice(keep).split()
            if rng.random() < 0.5 and len(copy) > 4:
                j = rng.randrange(len(copy))
                copy[j] = rng.choice(["very", "really", "also", "still", "again"])
            out.append(" ".join(copy))
        return out
    if mode == 1:  # topic drift: sentences from other topics
        others = [s for t, bank in TOPICS.items() if t != topic for s in bank]
        mixed = []
        for p in paragraphs:
            mixed.append(" ".join(rng.choice(others) if rng.random() < 0.7 else s for s in split_sentences(p)))
        return mixed
    if mode == 2:  # word salad: shuffled word order inside every sentence
        out = []
        for p in paragraphs:
            salad = []
            for s in split_sentences(p):
                w = s.rstrip(".").split()
                rng.shuffle(w)
                salad.append(" ".join(w).lower() + ".")
            out.append(" ".join(salad))
        return out
    # a fragment: sentences cut mid-way and run together without structure
    flat = " ".join(paragraphs).split()
    cut = []
    for s in split_sentences(" ".join(paragraphs)):
        w = s.split()
        cut.append(" ".join(w[: max(2, len(w) // 2)]))
    text = " and ".join(cut).split()
    return [" ".join(text[: len(flat)])]


# Every sentence of every topic, in TOPICS order (spliced sentences draw their endings from it).
ALL_SENTENCES = [s for bank in TOPICS.values() for s in bank]


def splice(rng, paragraphs, share):
    """Each sentence, with probability `share`, keeps its first words and ends with the last words
    of another sentence (of any topic): what a small policy writes when it loses its place."""
    out = []
    for p in paragraphs:
        sentences = []
        for s in split_sentences(p):
            if rng.random() < share:
                w, o = s.split(), rng.choice(ALL_SENTENCES).split()
                sentences.append(" ".join(w[: rng.randint(2, max(2, len(w) - 2))] + o[rng.randint(1, max(1, len(o) - 2)):]))
            else:
                sentences.append(s)
        out.append(" ".join(sentences))
    return out


def worse(rng, topic, paragraphs):
    """The rejected answer of a pair: the whole answer corrupted, or (half the time) only its end
    after a coherent start, the way a policy goes wrong after a good beginning. A reward model
    that saw only whole-answer corruptions scores such answers by their good start."""
    while True:  # a corruption can leave the text as it was (a drift that kept every sentence): draw again
        if len(paragraphs) >= 2 and rng.random() < 0.5:
            j = rng.randint(max(1, len(paragraphs) // 3), len(paragraphs) - 1)
            out = paragraphs[:j] + corrupt(rng, topic, paragraphs[j:])
        elif len(paragraphs) == 1 and rng.random() < 0.5:
            out = splice(rng, paragraphs, 1.0)
        else:
            out = corrupt(rng, topic, paragraphs)
        if out != paragraphs:
            return out


LENGTH_PAIRS = 480


def length_pair(rng, topic, n):
    """Two coherent answers of one topic for a request of about n words: (chosen, rejected)."""
    def miss(p):  # words outside [n - 20, n + 20]
        words = sum(len(x.split()) for x in answer_from(topic, p))
        return max(0, abs(words - n) - 20)
    best = min(miss(p) for p in range(1, 11))
    chosen = rng.choice([p for p in range(1, 11) if miss(p) == best])
    rejected = rng.choice([p for p in range(1, 11) if miss(p) >= best + 40])
    return answer_from(topic, chosen), answer_from(topic, rejected)


def split_sentences(paragraph):
    parts, start = [], 0
    for i, ch in enumerate(paragraph):
        if ch == "." and (i + 1 == len(paragraph) or paragraph[i + 1] == " "):
            parts.append(paragraph[start:i + 1].strip())
            start = i + 1
    if paragraph[start:].strip():
        parts.append(paragraph[start:].strip())
    return parts


def main():
    parser = argparse.ArgumentParser(description="Makes the tiny demo's data files.")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(__file__).resolve().parent.parent / "examples" / "data" / "tiny")
    out = parser.parse_args().out
    rng = random.Random(20250624)
    out.mkdir(parents=True, exist_ok=True)
    topics = list(TOPICS)

    with open(out / "pretrain.jsonl", "w") as f:
        for i in range(800):
            topic = topics[i % len(topics)]
            # Mostly short (median 3 paragraphs, ~60 words), up to 10 (~200 words): long answers are
            # in the base model's support, but rare. RL must make the right length the norm.
            p = rng.choice([1] * 5 + [2] * 6 + [3] * 6 + [4] * 5 + [5] * 3 + [6] * 2 + [7, 8, 9, 10])
            # Half the prompts carry a length request that the completion does NOT follow (p is
            # drawn independently): the RL prompts are then in-distribution for the base model,
            # which reads a request like "in about 120 words" but has no reason to obey it.
            request = f" in about {rng.choice((100, 120, 140))} words" if rng.random() < 0.5 else ""
            f.write(json.dumps({"prompt": f"Write about {topic}{request}.",
                                "completion": completion_from(rng, topic, answer_from(topic, p))}) + "\n")

    with open(out / "prompts.jsonl", "w") as f:
        for topic in topics:
            for target in (160, 180, 200):
                f.write(json.dumps({"prompt": f"Write about {topic} in about {target} words.",
                                    "lower": target - 20, "upper": target + 20, "length": target}) + "\n")

    with open(out / "preferences.jsonl", "w") as f:
        for i in range(1920):
            topic = topics[i % len(topics)]
            paragraphs = answer_from(topic, rng.randint(1, 10))
            chosen = "\n\n".join(paragraphs)
            rejected = "\n\n".join(worse(rng, topic, paragraphs))
            # The prompts the reward model will score carry a length request: half of these do too
            # (any N: the pair's two answers have the same length, so N carries no preference).
            request = f" in about {rng.choice((100, 120, 140, 160, 180, 200))} words" if rng.random() < 0.5 else ""
            f.write(json.dumps({"prompt": f"Write about {topic}{request}.", "chosen": chosen, "rejected": rejected}) + "\n")
        # Requirement following: of two coherent answers to "Write about X in about N words.", a
        # rater prefers the one that keeps to the requested length (N +- 20 words, or the nearest
        # the topic allows); the rejected one misses it by 40 words more, too short or too long.
        for i in range(LENGTH_PAIRS):
            topic = topics[i % len(topics)]
            n = rng.choice((100, 120, 140, 160, 180, 200))
            chosen, rejected = length_pair(rng, topic, n)
            f.write(json.dumps({"prompt": f"Write about {topic} in about {n} words.",
                                "chosen": "\n\n".join(chosen), "rejected": "\n\n".join(rejected)}) + "\n")


if __name__ == "__main__":
    main()
