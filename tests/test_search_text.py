"""search.text: segmentation, stemming, normalisation, synonyms and highlights (no services)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib import resources

import pytest

from market import refdata
from search import text


def tokens(*texts: str) -> set[str]:
    return set(text.token_list(text.index_tokens(*texts)))


def test_chinese_is_segmented_into_words_with_the_domain_dictionary():
    assert text.query_words("方向机转向器雨刮刮水器电控单元卡钳制动钳") == [
        "方向机",
        "转向器",
        "雨刮",
        "刮水器",
        "电控单元",
        "卡钳",
        "制动钳",
    ]
    # Taxonomy words are in the dictionary: 毫米波雷达 stays one word.
    assert text.query_words("毫米波雷达供应商") == ["毫米波雷达", "供应商"]


def test_a_text_is_indexed_with_its_words_their_dictionary_sub_words_and_characters():
    indexed = tokens("盘式制动器")
    assert {"盘式", "制动器", "制动", "盘", "器"} <= indexed
    assert "动器" in indexed  # a bigram: what the dictionary cannot segment is found in order
    assert "器动" not in indexed


def test_unknown_chinese_in_a_query_matches_in_order_not_scattered():
    (group,) = text.parse_query("动制").groups
    assert group == ("动制",)
    assert not set(group) & tokens("制动卡钳")
    assert set(group) & tokens("自动制冷")  # 动制 does occur there, in that order


def test_english_is_lower_cased_and_stemmed_and_acronyms_are_kept():
    assert text.query_words("Braking BRAKES brake") == ["brake"]
    assert text.query_words("Calipers") == text.query_words("caliper")
    assert text.query_words("ABS ECU EPB") == ["abs", "ecu", "epb"]  # not "ab"
    assert text.query_words("ISO26262") == ["iso", "26262"]


def test_full_width_letters_and_digits_are_normalised():
    assert text.query_words("ＬｉＤＡＲ　ＩＳＯ２６２６２") == ["lidar", "iso", "26262"]


def test_punctuation_emoji_and_quotes_are_not_words():
    assert text.query_words('!!! ""「」*?🚗🔧 \'') == []
    assert not text.parse_query("🚗")
    assert text.query_words('"刹车') == ["刹车"]
    assert text.query_words("刹车🚗brake") == ["刹车", "brake"]
    assert text.word_count("w " * 11) == 11  # repeats count toward the limit


def test_synonyms_are_expanded_both_ways_and_merged_with_word_forms():
    (brake,) = text.parse_query("刹车").groups
    assert {"刹车", "制动", "brake"} <= set(brake)
    assert text.parse_query("制动").groups == text.parse_query("Braking").groups
    (caliper,) = text.parse_query("卡钳").groups
    assert {"卡钳", "制动钳", "calip"} <= set(caliper)
    assert {"方向机", "转向器"} <= set(text.parse_query("方向机").groups[0])
    assert {"雨刮", "刮水器"} <= set(text.parse_query("刮水器").groups[0])
    assert {"ecu", "电控单元"} <= set(text.parse_query("ECU").groups[0])
    # Two words of one group ask for one thing.
    assert len(text.parse_query("刹车 制动 brake").groups) == 1


def _synonym_groups() -> list[dict[str, object]]:
    with resources.files("market.data").joinpath("trade_synonyms.json").open() as fh:
        groups: list[dict[str, object]] = json.load(fh)["groups"]
    return groups


def test_the_synonym_table_has_sixty_pairs_each_with_a_reason_and_one_token_words():
    groups = _synonym_groups()
    pairs = sum(len(g["words"]) - 1 for g in groups)  # type: ignore[arg-type]
    assert len(groups) >= 60 and pairs >= 60
    for group in groups:
        assert len(str(group["reason"])) > 10, group
        for word in group["words"]:  # type: ignore[attr-defined]
            assert len(text.query_words(word)) == 1, (word, text.query_words(word))


def test_every_taxonomy_category_has_an_english_name_in_a_synonym_or_its_own_tokens():
    # The English names are searchable through the categories themselves (search.text
    # category_tokens); check a few the issue names.
    assert "chassis.braking" in text.categories_matching(text.parse_query("brake").groups[0])
    assert "chassis.steering" in text.categories_matching(text.parse_query("方向机").groups[0])
    # Descendants come along even where the slug does not start with the parent's.
    found = text.categories_matching(text.parse_query("物流").groups[0])
    assert "logistics.dangerous-goods" in found
    assert refdata.categories()["logistics.dangerous-goods"].parent == "warehousing-logistics"


def test_highlights_are_spans_of_the_original_text():
    source = "广州华南制动系统：盘式制动器、ＥＰＢ and Braking"
    wanted = text.parse_query("刹车 epb").tokens
    spans = text.highlight_spans(source, wanted)
    assert [source[s:e] for s, e in spans] == ["制动", "制动", "ＥＰＢ", "Braking"]
    long = "前言" * 200 + "卡钳"
    marked = text.highlight(long, text.parse_query("卡钳").tokens)
    assert marked is not None and len(marked["text"]) <= text.EXCERPT_CHARS
    assert [marked["text"][s:e] for s, e in marked["spans"]] == ["卡钳"]
    assert text.highlight("无关", wanted) is None


def test_the_segmenter_loads_quietly():
    """jieba prints "Building prefix dict…" through its own handler: not here."""
    script = "from search import text; text.warm_up(); print(text.query_words('刹车'))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "['刹车']"
    assert done.stderr == ""
    assert logging.getLogger("jieba").level == logging.WARNING


@pytest.mark.parametrize("size", [10_000])
def test_long_input_is_handled_in_reasonable_time(size):
    assert len(text.query_words("刹车" * (size // 2))) == 1
