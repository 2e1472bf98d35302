"""Keyword spotting on each call leg.

Two listeners, both pocketsphinx with its bundled model:

- the keyphrase search, which listens for the listed phrases only and fires when a
  phrase's acoustic score beats a garbage model by the phrase's threshold;
- the rough transcript (``transcriber.py``), whose word sequence is searched for the
  phrase, with the engine's confidence per word.

On 8 kHz telephone audio the transcript is the stronger of the two and the keyphrase
search the more permissive (alone, it mostly fires on the wrong words). The transcript
is searched by sound, not spelling: its words and the phrase are turned into phones
with the model's dictionary, and a stretch of words whose phones are within a few edits
of the phrase's counts ("raw number" for "wrong number"), the edits allowed growing with
the phrase's ``sensitivity``.

A hit's score says who heard it and how well: (0.5 + half the transcript's mean word
confidence) times the share of phones that matched, for a transcript hit;
``SEARCH_ONLY`` when only the keyphrase search fired; ``AGREEMENT_BONUS`` more when both
did (within ``SAME_PLACE``). The sensitivity (0..1) also lowers the score a hit needs
(``_minimum_score``) and the keyphrase threshold: below 0.75 the transcript must have
heard the phrase; from there the keyphrase search alone is enough.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from array import array
from dataclasses import dataclass

from .transcriber import FRAMES_PER_SECOND, Word, make_decoder

SIDES = ("caller", "agent", "either")
DISPOSITIONS = ("qualified_lead", "appointment", "wrong_number", "not_a_lead")
SEARCH_ONLY = 0.18  # the score of a phrase heard by the keyphrase search alone
AGREEMENT_BONUS = 0.3
SAME_PLACE = 1.5  # seconds: two listeners hearing one phrase within this agree
MAX_PHRASE_WORDS = 6


class KeywordError(ValueError):
    """A keyword list entry is not usable."""


@dataclass(frozen=True)
class Keyword:
    """One entry of a site's keyword list.

    ``means`` is ``tag:<name>``, ``disposition:<one of DISPOSITIONS>``, ``fraud:<signal>``
    or a bare word the caller gives its own meaning to (``voicemail`` for the cues).
    """

    word: str
    side: str = "either"
    sensitivity: float = 0.5
    means: str | None = None


def parse_keywords(entries: list[dict]) -> list[Keyword]:
    """Validate a keyword list (dicts with word, side, sensitivity, means)."""
    keywords = []
    for n, entry in enumerate(entries):
        word = " ".join(re.sub(r"[^a-z' ]", " ", str(entry.get("word", "")).lower()).split())
        if not word or len(word.split()) > MAX_PHRASE_WORDS:
            raise KeywordError(f"keyword {n}: word must be 1-{MAX_PHRASE_WORDS} words of letters")
        side = entry.get("side", "either")
        if side not in SIDES:
            raise KeywordError(f"keyword {n}: side must be one of {', '.join(SIDES)}")
        sensitivity = entry.get("sensitivity", 0.5)
        if isinstance(sensitivity, bool) or not isinstance(sensitivity, int | float) \
                or not 0 <= sensitivity <= 1:
            raise KeywordError(f"keyword {n}: sensitivity must be a number from 0 to 1")
        means = entry.get("means")
        if means is not None:
            kind, _, value = str(means).partition(":")
            if kind == "disposition" and value not in DISPOSITIONS:
                raise KeywordError(f"keyword {n}: disposition must be one of {', '.join(DISPOSITIONS)}")
            if kind in ("tag", "fraud") and not value:
                raise KeywordError(f"keyword {n}: {kind}: needs a name")
        keywords.append(Keyword(word=word, side=side, sensitivity=float(sensitivity), means=means))
    return keywords


def _minimum_score(sensitivity: float) -> float:
    """The score a hit needs: 0.75 at sensitivity 0, 0.375 at the default 0.5, none at 1."""
    return 0.75 * (1.0 - sensitivity)


def _edits_allowed(phones: int, sensitivity: float) -> float:
    """Phone edits a transcript stretch may differ by: one in eight phones at 0.5."""
    return phones * 0.25 * sensitivity


# Phones of one kind are easily heard one for another: swapping them costs half an edit.
_KINDS = {phone: kind for kind, phones in {
    "vowel": "AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW",
    "nasal": "M N NG",
    "stop": "B D G K P T",
    "fricative": "DH F S SH TH V Z ZH HH",
    "affricate": "CH JH",
    "liquid": "L R W Y",
}.items() for phone in phones.split()}


def _distance(a: list[str], b: list[str]) -> float:
    """Edit distance between two phone sequences, near-swaps at half price."""
    previous = [float(j) for j in range(len(b) + 1)]
    for i, x in enumerate(a, 1):
        current = [float(i)]
        for j, y in enumerate(b, 1):
            swap = 0.0 if x == y else 0.5 if _KINDS.get(x, x) == _KINDS.get(y, y) else 1.0
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + swap))
        previous = current
    return previous[-1]


def _threshold_decades(phones: int, sensitivity: float) -> int:
    """The keyphrase threshold as 1e-N: longer phrases and higher sensitivity go lower."""
    per_phone = 1.0 + 4.0 * sensitivity
    return max(1, round(per_phone * phones))


def in_transcript(words: list[Word], keyword: Keyword,
                  pronounce=None) -> list[tuple[float, float]]:
    """(start seconds, score) of each place the transcript has the phrase.

    With ``pronounce`` (word -> phones or None) a stretch of words that sounds close
    enough counts too; without it, or for words the dictionary lacks, only the spelling.
    """
    target = keyword.word.split()
    target_phones = _phones_of(target, pronounce) if pronounce else None
    allowed = _edits_allowed(len(target_phones), keyword.sensitivity) if target_phones else 0
    found: list[tuple[float, float]] = []
    for i in range(len(words)):
        best = None
        for length in {max(1, len(target) - 1), len(target), len(target) + 1}:
            window = words[i:i + length]
            if len(window) < length:
                continue
            spelled = [w.word.lower() for w in window]
            if spelled == target:
                distance, size = 0, 1
            elif target_phones and (phones := _phones_of(spelled, pronounce)):
                distance, size = _distance(phones, target_phones), len(target_phones)
                if distance > allowed:
                    continue
            else:
                continue
            confidence = sum(w.confidence for w in window) / len(window)
            score = (0.5 + 0.5 * confidence) * (1 - distance / size)
            if best is None or score > best[1]:
                best = (window[0].start, score)
        if best and not (found and best[0] - found[-1][0] < SAME_PLACE):
            found.append(best)
        elif best and best[1] > found[-1][1]:
            found[-1] = best  # overlapping stretches: keep the closer
    return found


def _phones_of(words: list[str], pronounce) -> list[str] | None:
    phones: list[str] = []
    for word in words:
        said = pronounce(word)
        if said is None:
            return None
        phones += said
    return phones


class KeyphraseSearch:
    """pocketsphinx's keyphrase search over a set of keywords (one decoder per process)."""

    def __init__(self):
        self._decoder = make_decoder(lm=None)
        self._lock = threading.RLock()  # spot() looks words up while holding it
        self._searches: dict[tuple, str] = {}
        self._pronunciations: dict[str, list[str] | None] = {}
        self.unknown: set[str] = set()

    def pronounce(self, word: str) -> list[str] | None:
        """The dictionary's phones for a word (its first pronunciation), or None."""
        if word not in self._pronunciations:
            with self._lock:
                said = self._decoder.lookup_word(word)
            self._pronunciations[word] = said.split() if said else None
        return self._pronunciations[word]

    def _phones(self, phrase: str) -> int | None:
        phones = _phones_of(phrase.split(), self.pronounce)
        return len(phones) if phones else None

    def _search_for(self, keywords: list[Keyword]) -> str | None:
        lines = {}
        for kw in keywords:
            phones = self._phones(kw.word)
            if phones is None:
                self.unknown.add(kw.word)  # not in the dictionary: the transcript cannot have it either
                continue
            decades = _threshold_decades(phones, kw.sensitivity)
            lines[kw.word] = max(lines.get(kw.word, 0), decades)  # the most permissive wins
        key = tuple(sorted(lines.items()))
        if not key:
            return None
        if key not in self._searches:
            name = f"kws{len(self._searches)}"
            with tempfile.NamedTemporaryFile("w", suffix=".kws", delete=False) as handle:
                handle.write("".join(f"{phrase} /1e-{decades}/\n" for phrase, decades in key))
            try:
                self._decoder.add_kws(name, handle.name)
            finally:
                os.unlink(handle.name)
            self._searches[key] = name
        return self._searches[key]

    def spot(self, audio16k: array, keywords: list[Keyword]) -> list[tuple[str, float]]:
        """(phrase, start seconds) for each firing on 16 kHz audio."""
        with self._lock:
            name = self._search_for(keywords)
            if name is None:
                return []
            decoder = self._decoder
            decoder.activate_search(name)
            decoder.start_utt()
            decoder.process_raw(audio16k.tobytes(), full_utt=True)
            decoder.end_utt()
            return [(seg.word.strip(), seg.start_frame / FRAMES_PER_SECOND) for seg in decoder.seg() or []]


_search: KeyphraseSearch | None = None
_search_lock = threading.Lock()


def keyphrase_search() -> KeyphraseSearch:
    global _search
    with _search_lock:
        if _search is None:
            _search = KeyphraseSearch()
        return _search


def spot(keywords: list[Keyword], side: str, pieces: list[tuple[float, array, list[Word]]],
         search: KeyphraseSearch | None = None) -> list[dict]:
    """Keyword hits on one leg.

    ``pieces`` are the leg's stretches of talk: (offset seconds, 16 kHz samples, the
    transcript's words with times relative to the piece).
    """
    return [hit for _, hit in spot_pairs(keywords, side, pieces, search)]


def spot_pairs(keywords: list[Keyword], side: str, pieces: list[tuple[float, array, list[Word]]],
               search: KeyphraseSearch | None = None) -> list[tuple[Keyword, dict]]:
    """``spot``, each hit with the list entry that made it."""
    wanted = [kw for kw in keywords if kw.side in ("either", side) or side == "mixed"]
    if not wanted:
        return []
    search = search or keyphrase_search()
    candidates: list[dict] = []
    for offset, audio, words in pieces:
        heard = search.spot(audio, wanted)
        for kw in wanted:
            for start, score in in_transcript(words, kw, search.pronounce):
                candidates.append({"keyword": kw, "at": offset + start, "score": score,
                                   "via": ["transcript"]})
            for phrase, start in heard:
                if phrase != kw.word:
                    continue
                at = offset + start
                same = next((c for c in candidates if c["keyword"] is kw and abs(c["at"] - at) <= SAME_PLACE
                             and "search" not in c["via"]), None)
                if same:
                    same["score"] = min(1.0, same["score"] + AGREEMENT_BONUS)
                    same["via"].append("search")
                else:
                    candidates.append({"keyword": kw, "at": at, "score": SEARCH_ONLY, "via": ["search"]})
    hits = []
    for c in sorted(candidates, key=lambda c: c["at"]):
        kw = c["keyword"]
        if c["score"] < _minimum_score(kw.sensitivity):
            continue
        hit = {"word": kw.word, "side": side, "at_seconds": round(c["at"], 2),
               "score": round(c["score"], 3), "via": c["via"]}
        if kw.means:
            hit["means"] = kw.means
        hits.append((kw, hit))
    return hits


def disposition(hits: list[dict]) -> str | None:
    """The disposition the hits call for: the best-scored keyword that names one."""
    named = [h for h in hits if str(h.get("means", "")).startswith("disposition:")]
    return max(named, key=lambda h: h["score"])["means"].partition(":")[2] if named else None


def tags(hits: list[dict], kind: str = "tag") -> list[str]:
    """Distinct ``tag:`` (or ``fraud:``) names among the hits, in order heard."""
    seen: list[str] = []
    for hit in hits:
        means_kind, _, value = str(hit.get("means", "")).partition(":")
        if means_kind == kind and value not in seen:
            seen.append(value)
    return seen
