"""CHAIR: the parser agrees with the reference on captions traced by hand; metrics equal hand counts.

Each case below was traced through the reference (Maxlinn/CHAIR-metric-standalone ``chair.py``
``caption_to_words``) by hand: ``nltk.word_tokenize(caption.lower())``, ``pattern``'s
``singularize`` on every token, left-to-right merges of ``double_word_dict`` pairs, dropping
"seat" when "toilet" is present, keeping words of ``mscoco_objects`` and mapping them with
``inverse_synonym_dict``. The expected value is the reference's ``(words, node_words)`` pairs.
The cases run on the fixture lists (entries copied from the CHAIR file) and, where ``../shared``
exists, on the real CHAIR file.
"""

from __future__ import annotations

import pytest

from circuits.hallucination.chair import ChairVocabulary, chair_metrics, merge_double_words
from probe.errors import InputError
from tests.hallucination.metric_fixtures import CHAIR_FILE, MINI_LISTS

REFERENCE_CASES = [
    # women -> woman (irregular "men" suffix), puppies -> puppy (-ies rule), "fire hydrant" merged.
    ("A man and two women walk their puppies past a fire hydrant.",
     [("man", "person"), ("woman", "person"), ("puppy", "dog"), ("fire hydrant", "fire hydrant")]),
    # people -> person (irregular), knives -> knife ("([nlw]i)ves$"), "cell phones" -> cell + phone (final s
    # dropped) merged, mice -> mouse ("([m|l])ice$").
    ("People are holding knives and cell phones near the mice.",
     [("person", "person"), ("knife", "knife"), ("cell phone", "cell phone"), ("mouse", "mouse")]),
    # pattern drops the final s of "bus" ("bu", no object) but "(bus)es$" singularises "buses": one mention.
    ("A bus parked beside two buses.", [("bus", "bus")]),
    # glasses -> glass ("(x|ch|ss|sh)es$") then "wine glass" merged; "glass" alone -> "glas", so "wine glass"
    # becomes "wine glas", which double_word_dict maps to "wine glass"; a lone "glas" is no object;
    # "dining table" is not a listed pair, so "table" alone maps to dining table.
    ("Wine glasses, a wine glass and a glass on the dining table.",
     [("wine glass", "wine glass"), ("wine glass", "wine glass"), ("table", "dining table")]),
    # "baby elephant" -> elephant and "passenger train" -> train (no false "person" from baby/passenger);
    # "adult" alone is a person word.
    ("A baby elephant and an adult near a passenger train.",
     [("elephant", "elephant"), ("adult", "person"), ("train", "train")]),
    # "teddy bear" merged; "toilet seat" -> toilet; with a toilet present every "seat" is dropped,
    # so "chair seat" leaves only "chair".
    ("A teddy bear sits on a toilet seat next to a chair seat.",
     [("teddy bear", "teddy bear"), ("toilet", "toilet"), ("chair", "chair")]),
    # "bow tie" -> tie; "motor bike" merges to "motor bike", which the lists spell " motor bike": no mention.
    ("The man in a bow tie rides a motor bike.", [("man", "person"), ("tie", "tie")]),
    # "hot dogs" -> hot + dog, merged to "hot dog"; doughnut and desk are synonyms of donut and dining table.
    ("Two hot dogs and a doughnut on a desk.",
     [("hot dog", "hot dog"), ("doughnut", "donut"), ("desk", "dining table")]),
    # skis -> ski (final s) -> skis; "scissors" is uninflected; watches -> watch; sheep unchanged.
    ("A skier with skis and scissors watches the sheep.",
     [("skier", "person"), ("ski", "skis"), ("scissors", "scissors"), ("sheep", "sheep")]),
    # "dogs'" tokenises to dogs + "'"; bowls -> bowl; "cookies" stays "cookies" (pattern's -ie list returns
    # the plural); negation is not read: "no cats" is still a mention.
    ("Several dogs' bowls and cookies, no cats.", [("dog", "dog"), ("bowl", "bowl"), ("cat", "cat")]),
    # ties -> "ty" ("^tie" in pattern's list never matches, the -ies rule applies): no tie; oxen -> ox -> cow.
    ("Two ties hang near the oxen.", [("ox", "cow")]),
    # doggie stays doggie (a dog word) but doggies stays "doggies" (no object); kitten -> cat.
    ("A doggie and two doggies beside a kitten.", [("doggie", "dog"), ("kitten", "cat")]),
    # policemen -> policeman (suffix "men"); motorcycles -> motorcycle; jet and "air plane" -> airplane.
    ("Policemen ride motorcycles past a jet and an air plane.",
     [("policeman", "person"), ("motorcycle", "motorcycle"), ("jet", "airplane"), ("air plane", "airplane")]),
    # children -> child; "home plate" and "train track" are merged but are no objects: no train.
    ("Children play on the home plate by the train tracks.", [("child", "person")]),
]


def vocabularies() -> list:
    params = [pytest.param(lambda: ChairVocabulary.from_lists(MINI_LISTS), id="fixture-lists")]
    skip = pytest.mark.skipif(not CHAIR_FILE.exists(), reason="../shared/data/chair is not here")
    params.append(pytest.param(lambda: ChairVocabulary.from_file(CHAIR_FILE), id="chair-file", marks=skip))
    return params


@pytest.fixture(scope="module")
def mini() -> ChairVocabulary:
    return ChairVocabulary.from_lists(MINI_LISTS)


@pytest.mark.parametrize("make", vocabularies())
def test_mentions_agree_with_the_reference(make):
    vocabulary = make()
    for caption, expected in REFERENCE_CASES:
        assert [(m.word, m.category) for m in vocabulary.objects_in(caption)] == expected, caption


def test_positions_are_token_indices(mini):
    mentions = mini.objects_in("A teddy bear and a dog.")
    assert [(m.word, m.position) for m in mentions] == [("teddy bear", 1), ("dog", 5)]


def test_keep_known_counts_a_bus():
    vocabulary = ChairVocabulary.from_lists(MINI_LISTS, singular="keep_known")
    assert [m.word for m in vocabulary.objects_in("A bus parked beside two buses.")] == ["bus", "bus"]
    assert [m.word for m in vocabulary.objects_in("Wine glasses and a wine glass.")] == ["wine glass"] * 2


def test_merges_go_left_to_right():
    pairs = {"a b": "ab", "b c": "bc"}
    assert merge_double_words(["a", "b", "c"], pairs) == [("ab", 0), ("c", 2)]


# Hand-computed fixture: per caption, mentions (category) -> hallucinated, recalled / truth.
#   1 "A man and a dog on a couch."   truth {person, dog}: person, dog, couch -> couch hallucinated; recalls 2 of 2
#   2 "Two dogs and another dog."     truth {dog, cat}:    dog, dog -> none; recalls 1 (dog) of 2
#   3 "A quiet street."               truth {car}:         no mention; recalls 0 of 1
#   4 "A cat chasing a mouse and a bird."  truth {cat}:    cat, mouse, bird -> 2 hallucinated; recalls 1 of 1
# CHAIR_S = 2/4; CHAIR_I = (1 + 0 + 0 + 2) / (3 + 2 + 0 + 3) = 3/8; recall = (2 + 1 + 0 + 1) / (2 + 2 + 1 + 1) = 4/6.
CAPTIONS = ["A man and a dog on a couch.", "Two dogs and another dog.", "A quiet street.",
            "A cat chasing a mouse and a bird."]
TRUTHS = [{"person", "dog"}, {"dog", "cat"}, {"car"}, {"cat"}]


def test_metrics_equal_hand_counts(mini):
    metrics = chair_metrics(mini, CAPTIONS, TRUTHS)
    assert (metrics.chair_s, metrics.chair_i, metrics.recall, metrics.n) == (0.5, 3 / 8, pytest.approx(4 / 6), 4)
    per_caption = [(c.chair_s, c.chair_i, c.recall) for c in metrics.captions]
    assert per_caption == [(True, 1 / 3, 1.0), (False, 0.0, 0.5), (False, 0.0, 0.0), (True, 2 / 3, 1.0)]
    assert [[m.word for m in c.hallucinated] for c in metrics.captions] == [["couch"], [], [], ["mouse", "bird"]]
    record = metrics.to_dict()
    assert (record["mentions"], record["hallucinated"], record["truth"], record["recalled"]) == (8, 3, 6, 4)
    assert record["captions"][3]["hallucinated"] == [["mouse", "mouse"], ["bird", "bird"]]
    assert "captions" not in metrics.to_dict(details=False)


def test_intervals_bracket_the_values(mini):
    intervals = chair_metrics(mini, CAPTIONS * 5, TRUTHS * 5).intervals(n_boot=300)
    assert intervals["chair_i"].value == 3 / 8 and intervals["chair_s"].value == 0.5
    for interval in intervals.values():
        assert interval.low <= interval.value <= interval.high


def test_no_mentions_and_no_truth_give_zero(mini):
    metrics = chair_metrics(mini, ["An empty room."], [set()])
    assert (metrics.chair_s, metrics.chair_i, metrics.recall) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("captions, truths, word", [
    (["a dog"], [], "one set per caption"),
    ([], [], "no captions"),
    ("a dog", [{"dog"}], "one string"),
    (["a dog"], ["dog"], "set of category names"),
    (["a puppy"], [{"puppy"}], "category"),
])
def test_bad_calls_name_the_fix(mini, captions, truths, word):
    with pytest.raises(InputError, match=word):
        chair_metrics(mini, captions, truths)


def test_unknown_singular_rules():
    with pytest.raises(InputError, match="keep_known"):
        ChairVocabulary.from_lists(MINI_LISTS, singular="wordnet")
