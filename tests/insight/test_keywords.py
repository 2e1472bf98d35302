"""How transcript matches and keyphrase firings become hits, and what sensitivity does.

The recogniser itself is exercised on real audio in test_analyse.py; here its outputs
are given, so each rule is checked alone."""

from __future__ import annotations

from array import array

import pytest

from attribution.insight.keywords import Keyword, disposition, in_transcript, spot, tags
from attribution.insight.transcriber import Word

PHONES = {
    "wrong": "R AO NG", "raw": "R AA", "number": "N AH M B ER", "the": "DH AH", "have": "HH AE V",
    "quote": "K W OW T", "coat": "K OW T", "a": "AH", "for": "F AO R", "cancel": "K AE N S AH L",
    "council": "K AW N S AH L", "my": "M AY", "order": "AO R D ER",
}


def pronounce(word):
    return PHONES[word].split() if word in PHONES else None


def words(text, confidence=0.6):
    return [Word(w, 0.3 * i, 0.3 * i + 0.25, confidence) for i, w in enumerate(text.split())]


def test_exact_words_match_with_the_engines_confidence():
    found = in_transcript(words("i have the wrong number", 0.6), Keyword("wrong number"), pronounce)
    assert found == [(pytest.approx(0.9), pytest.approx(0.8))]


def test_near_sounding_words_match_only_when_sensitive_enough():
    heard = words("you have the raw number")
    assert in_transcript(heard, Keyword("wrong number", sensitivity=0.3), pronounce) == []
    [(at, score)] = in_transcript(heard, Keyword("wrong number", sensitivity=0.8), pronounce)
    assert at == pytest.approx(0.9) and 0.5 < score < 0.8  # less than an exact match
    assert in_transcript(heard, Keyword("wrong number", sensitivity=0.8)) == []  # spelling only


def test_short_words_need_a_close_sound():
    assert in_transcript(words("a coat for the roof"), Keyword("quote", sensitivity=0.5), pronounce) == []


class Search:
    """Stands in for the keyphrase search: fires where it is told to."""

    def __init__(self, firings):
        self.firings = firings

    def spot(self, audio, keywords):
        return self.firings

    def pronounce(self, word):
        return pronounce(word)


PIECE = array("h", [0] * 160)


def test_sensitivity_decides_whether_the_keyphrase_search_alone_is_enough():
    firing = Search([("cancel", 1.0)])
    quiet = [(10.0, PIECE, words("please check my order"))]
    assert spot([Keyword("cancel", sensitivity=0.5)], "caller", quiet, firing) == []
    [hit] = spot([Keyword("cancel", sensitivity=0.9)], "caller", quiet, firing)
    assert hit["at_seconds"] == 11.0 and hit["via"] == ["search"]


def test_both_listeners_agreeing_raise_the_score():
    heard = [(10.0, PIECE, words("please cancel my order", 0.2))]
    [alone] = spot([Keyword("cancel")], "caller", heard, Search([]))
    [both] = spot([Keyword("cancel")], "caller", heard, Search([("cancel", 0.4)]))
    assert alone["via"] == ["transcript"] and both["via"] == ["transcript", "search"]
    assert both["score"] > alone["score"]
    assert both["at_seconds"] == pytest.approx(10.3)


def test_sides_and_meanings():
    heard = [(0.0, PIECE, words("the wrong number"))]
    keywords = [Keyword("wrong number", side="agent", means="disposition:wrong_number")]
    assert spot(keywords, "caller", heard, Search([])) == []
    hits = spot(keywords, "agent", heard, Search([]))
    assert hits[0]["side"] == "agent" and disposition(hits) == "wrong_number"
    mixed = spot(keywords, "mixed", heard, Search([]))  # a mono recording: any side's keyword
    assert mixed and mixed[0]["side"] == "mixed"
    tagged = [{"means": "tag:price"}, {"means": "fraud:script"}, {"means": "tag:price"}, {}]
    assert tags(tagged) == ["price"] and tags(tagged, "fraud") == ["script"]
