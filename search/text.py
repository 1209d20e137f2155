"""Text analysis shared by both search backends: normalise, segment, stem, expand, highlight.

Elasticsearch and the database backend never analyse text themselves: this module turns a text
into a *token set* when it is written (stored in a column, indexed by Elasticsearch with a plain
whitespace analyzer) and a query into *groups* of tokens. A text matches a query when, for every
group, it holds at least one token of the group — the same set comparison on both backends, so
they cannot disagree about which texts match.

- Normalisation: NFKC per character (full-width letters and digits become ASCII), lower case.
- Chinese runs are segmented by jieba (precise mode, no HMM: new-word discovery depends on the
  surrounding text, so the same word could be cut differently in a query and in a document),
  with a domain dictionary of the part taxonomy's, the certifications' and the synonym table's
  Chinese words. A text is indexed with each word, the dictionary words inside it and its single
  characters and character bigrams, so ``制动`` finds ``制动器`` and ``盘`` finds ``制动盘``;
  a query uses the words (and bigrams for what the dictionary cannot segment).
- Latin runs are split at letter/digit boundaries and stemmed with the Snowball English stemmer,
  so ``brake`` finds ``Braking``.
- Synonyms (market/data/trade_synonyms.json) are expanded at query time only.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from market import refdata

# CJK unified ideographs (with extension A and the compatibility block): jieba's territory.
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# In the rest: letters, or digits (``iso26262`` → ``iso``, ``26262``).
_LATIN = re.compile(r"[^\W\d_]+|\d+")
# Dictionary words come from names like "制动器/制动盘/卡钳" and "发动机（含混动专用发动机）".
_DICTIONARY_SPLIT = re.compile(r"[^\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_MAX_DICTIONARY_WORD = 6

_lock = threading.Lock()


@dataclass(frozen=True)
class Token:
    """A token and where it came from in the original text (``[start, end)``)."""

    text: str
    start: int
    end: int


# --- the segmenter and the stemmer, set up once -------------------------------------------------


@cache
def _stemmer() -> Any:
    import snowballstemmer

    return snowballstemmer.stemmer("english")


_tokenizer: Any = None


def _segmenter() -> Any:
    """jieba's tokenizer with the domain dictionary, built on first use (about a second)."""
    global _tokenizer
    if _tokenizer is None:
        with _lock:
            if _tokenizer is None:
                import jieba

                # jieba logs "Building prefix dict..." at DEBUG/INFO through its own handler.
                logging.getLogger("jieba").setLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                for word in domain_words():
                    tokenizer.add_word(word)
                _tokenizer = tokenizer
    return _tokenizer


def warm_up() -> None:
    """Load the segmenter now (workers call this at start so no request pays for it)."""
    _segmenter()


def _dictionary_pieces(name: str) -> Iterator[str]:
    for piece in _DICTIONARY_SPLIT.split(normalise(name)):
        if 2 <= len(piece) <= _MAX_DICTIONARY_WORD:
            yield piece


@cache
def domain_words() -> tuple[str, ...]:
    """Chinese words of the trade: taxonomy names, certification names, synonym words."""
    words: dict[str, None] = {}
    for category in refdata.categories().values():
        words.update(dict.fromkeys(_dictionary_pieces(category.zh)))
    for standard in refdata.standards().values():
        words.update(dict.fromkeys(_dictionary_pieces(standard.name)))
    for group in _synonym_source():
        for word in group["words"]:
            words.update(dict.fromkeys(_dictionary_pieces(word)))
    return tuple(words)


# --- normalising and tokenising -----------------------------------------------------------------


def normalise(text: str) -> str:
    """NFKC and lower case, character by character (so offsets can be mapped back)."""
    return "".join(_normalise_char(ch) for ch in text)


@cache
def _normalise_char(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).lower()


def _normalised_with_offsets(text: str) -> tuple[str, list[int]]:
    """The normalised text and, for each of its characters, the index of its source character."""
    chars: list[str] = []
    origin: list[int] = []
    for index, ch in enumerate(text):
        normal = _normalise_char(ch)
        chars.append(normal)
        origin.extend([index] * len(normal))
    return "".join(chars), origin


# Short words are mostly acronyms (ABS, ECU, EPB): stemming would only mangle them ("abs" → "ab").
_MIN_STEMMED = 4


@lru_cache(maxsize=1 << 16)  # the Snowball stemmer is pure Python; the vocabulary is small
def _stem(word: str) -> str:
    if len(word) < _MIN_STEMMED or not (word.isalpha() and word.isascii()):
        return word
    return str(_stemmer().stemWord(word))


def _is_dictionary_word(word: str) -> bool:
    return bool(_segmenter().FREQ.get(word))


def _words(normal: str, *, query: bool = False) -> Iterator[Token]:
    """Words of a normalised text with their offsets: jieba words and stemmed Latin words.

    In a query, Chinese the dictionary cannot segment (two or more single characters in a row,
    e.g. ``动制``) stands for its character bigrams, which every text is indexed with: such a
    run matches where it occurs in that order, not wherever its characters are scattered.
    """
    position = 0
    for cjk in _CJK.finditer(normal):
        yield from _latin_words(normal[position : cjk.start()], position)
        words = [
            Token(word, cjk.start() + start, cjk.start() + end)
            for word, start, end in _segment(cjk.group())
        ]
        yield from _as_bigrams(words) if query else words
        position = cjk.end()
    yield from _latin_words(normal[position:], position)


@lru_cache(maxsize=1 << 16)  # runs such as 有限公司 or 供应商 recur in many texts
def _segment(run: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(_segmenter().tokenize(run, HMM=False))


def _as_bigrams(words: list[Token]) -> Iterator[Token]:
    """Words, with each run of two or more single characters replaced by its bigrams."""
    run: list[Token] = []
    for word in [*words, Token("", -1, -1)]:  # a sentinel ends the last run
        if len(word.text) == 1:
            run.append(word)
            continue
        if len(run) == 1:
            yield run[0]
        for first, second in itertools.pairwise(run):
            yield Token(first.text + second.text, first.start, second.end)
        run = []
        if word.text:
            yield word


def _bigrams(normal: str) -> Iterator[Token]:
    """Every pair of adjacent Chinese characters (indexing only)."""
    for cjk in _CJK.finditer(normal):
        run = cjk.group()
        for index in range(len(run) - 1):
            yield Token(run[index : index + 2], cjk.start() + index, cjk.start() + index + 2)


def _latin_words(segment: str, offset: int) -> Iterator[Token]:
    for found in _LATIN.finditer(segment):
        yield Token(_stem(found.group()), offset + found.start(), offset + found.end())


def _inner_tokens(word: Token) -> Iterator[Token]:
    """A Chinese word's dictionary sub-words and single characters (indexing only)."""
    for inner, start, end in _inner_words(word.text):
        yield Token(inner, word.start + start, word.start + end)


@lru_cache(maxsize=1 << 16)  # words repeat across texts; the dictionary look-ups do not change
def _inner_words(text: str) -> tuple[tuple[str, int, int], ...]:
    if len(text) < 2 or not _CJK.fullmatch(text):
        return ()
    found = [(ch, index, index + 1) for index, ch in enumerate(text)]
    for size in range(2, len(text)):
        for index in range(len(text) - size + 1):
            inner = text[index : index + size]
            if _is_dictionary_word(inner):
                found.append((inner, index, index + size))
    return tuple(found)


def index_tokens(*texts: str | None) -> str:
    """The token set of some texts as stored and indexed: ``" tok1 tok2 "`` (space-delimited,
    with a space at each end so that SQL can compare whole tokens), or ``" "`` for none."""
    seen: dict[str, None] = {}
    for text in texts:
        if not text:
            continue
        normal = normalise(text)
        for word in _words(normal):
            seen[word.text] = None
            for inner in _inner_tokens(word):
                seen[inner.text] = None
        for bigram in _bigrams(normal):
            seen[bigram.text] = None
    return " " + "".join(token + " " for token in seen)


def token_list(stored: str | None) -> list[str]:
    return (stored or "").split()


# --- queries --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextQuery:
    """A query's words, each with its synonyms: every group must match (AND), any token of a
    group will do (OR)."""

    words: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]

    @property
    def tokens(self) -> frozenset[str]:
        return frozenset(token for group in self.groups for token in group)

    def __bool__(self) -> bool:
        return bool(self.groups)


def query_words(text: str) -> list[str]:
    """The distinct words of a query, in order (no sub-words: a query word is what was meant)."""
    return list(dict.fromkeys(token.text for token in _words(normalise(text), query=True)))


def word_count(text: str) -> int:
    """How many words a query has, repeats included (what a length limit should count)."""
    return sum(1 for _ in _words(normalise(text), query=True))


def parse_query(text: str) -> TextQuery:
    words = query_words(text)
    synonyms = synonym_table()
    # Two words of one synonym group ("刹车 brake") ask for the same thing once.
    groups = dict.fromkeys(tuple(sorted({word, *synonyms.get(word, ())})) for word in words)
    return TextQuery(words=tuple(words), groups=tuple(groups))


def _synonym_source() -> list[dict[str, Any]]:
    with (
        resources.files("market.data").joinpath("trade_synonyms.json").open(encoding="utf-8") as fh
    ):
        groups: list[dict[str, Any]] = json.load(fh)["groups"]
    return groups


@cache
def synonym_table() -> dict[str, frozenset[str]]:
    """Token → every token it may stand for (its groups merged; the table is symmetric)."""
    table: dict[str, set[str]] = {}
    for group in _synonym_source():
        tokens = {token for word in group["words"] for token in query_words(word)}
        for token in tokens:
            table.setdefault(token, set()).update(tokens)
    return {token: frozenset(others) for token, others in table.items()}


@cache
def category_tokens() -> dict[str, frozenset[str]]:
    """Category slug → the index tokens of its Chinese and English names."""
    return {
        slug: frozenset(token_list(index_tokens(category.zh, category.en)))
        for slug, category in refdata.categories().items()
    }


def categories_matching(group: Iterable[str]) -> list[str]:
    """The categories whose name holds a token of the group, and their descendants (sorted).

    Descendants are listed because slugs are not always prefixed by their parent's
    (``warehousing-logistics`` → ``logistics.road-freight``), and filters match by prefix.
    """
    wanted = set(group)
    found = {slug for slug, tokens in category_tokens().items() if tokens & wanted}
    return sorted({slug for root in found for slug in _descendants(root)})


@cache
def _descendants(slug: str) -> tuple[str, ...]:
    category = refdata.categories()[slug]
    return (slug, *(d for child in category.children for d in _descendants(child)))


def text_matches(stored: str | None, group: Iterable[str]) -> bool:
    """Whether a stored token set holds a token of the group (the reference semantics)."""
    tokens = set(token_list(stored))
    return any(token in tokens for token in group)


# --- highlights -----------------------------------------------------------------------------------

EXCERPT_CHARS = 160
_EXCERPT_LEAD = 40


def highlight_spans(text: str | None, tokens: frozenset[str]) -> list[tuple[int, int]]:
    """``[start, end)`` spans of ``text`` whose token is one of ``tokens``, merged, in order."""
    if not text or not tokens:
        return []
    normal, origin = _normalised_with_offsets(text)
    spans: list[tuple[int, int]] = []
    for word in _words(normal):
        found = [word] if word.text in tokens else []
        if not found:
            found = [inner for inner in _inner_tokens(word) if inner.text in tokens]
        spans.extend((origin[t.start], origin[t.end - 1] + 1) for t in found)
    for bigram in _bigrams(normal):
        if bigram.text in tokens:
            spans.append((origin[bigram.start], origin[bigram.end - 1] + 1))
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(text: str | None, tokens: frozenset[str]) -> dict[str, Any] | None:
    """An excerpt of at most :data:`EXCERPT_CHARS` around the first match, with its spans
    relative to the excerpt; None when nothing in the text matched."""
    spans = highlight_spans(text, tokens)
    if not text or not spans:
        return None
    start = 0
    if len(text) > EXCERPT_CHARS:
        start = max(0, min(spans[0][0] - _EXCERPT_LEAD, len(text) - EXCERPT_CHARS))
    end = start + EXCERPT_CHARS
    return {
        "text": text[start:end],
        "spans": [[s - start, min(e, end) - start] for s, e in spans if s < end],
    }
