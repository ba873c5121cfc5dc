"""Quality and harmful-content filters for zh and en prose (Gopher / C4 style) and a length check for code.

Each rule is a small function ``(doc statistics, cfg) -> bool`` (True = the document fails) registered
under its rule name in :data:`RULES_PROSE`; :func:`check` returns the name of the FIRST rule a document fails, in the fixed order of :data:`RULES_PROSE`, or
None when it passes. A fixed order makes the per-rule rejection counts in the build report
reproducible and lets cheap rules (length, harmful keywords) run before the n-gram statistics.

Units: zh lengths count *characters* (there are no spaces between Chinese words); its n-grams are
made of CJK characters and Latin/digit words (:func:`zh_units`: "iPhone 15" is two units, not eight
letters; punctuation is no unit), so Gopher's word-n-gram statistics keep their meaning, with zh
thresholds of their own. en counts whitespace-separated words and uses word n-grams (tokens with no
letter or digit — table borders, quote marks — are layout, not words), weighted by characters as in
Gopher (Rae et al. 2021, appendix A). All thresholds live in :class:`QualityConfig`, loaded from YAML
(``configs/corpus/filters.yaml`` ships the defaults, each measured on the real labelled documents of
``tests/data/real/``: ``python -m corpus calibrate``) through :func:`common.config.load_config`, so an
unknown key fails naming the key.

English only: layout lines (quoted mail, text-table rows, a lone URL or path) are not the
document's own prose; the line, word and repetition rules measure the document without them when
what remains still passes the length rule (:func:`_own_view`). The ``spam`` rule scores bulk mail
written as ordinary prose with a linear classifier over the words and word pairs it contains
(:func:`spam_score`, :mod:`corpus.classifier`, ``corpus/data/spam_en_model.tsv``).

Speed: n-gram statistics use numpy rolling hashes over unit ids rather than Python tuples (zh unit
ids come from the code points at numpy speed, :func:`_zh_unit_ids`), and two exact shortcuts —
duplicate-n-gram coverage can only shrink as n grows, and a hashed-bucket count bounds the top
n-gram count from above — skip most of the work for normal text.
"""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from common.config import load_config
from common.errors import ConfigError
from corpus.classifier import LinearClassifier, load_classifier

__all__ = [
    "QualityConfig",
    "check",
    "failing_rules",
    "load_quality_config",
    "harmful_density",
    "spam_score",
    "load_patterns",
    "RULES_PROSE",
    "RULES_CODE",
]


@dataclass
class QualityConfig:
    """Thresholds for :func:`check`. Defaults follow Gopher where it gives a number and the
    calibration set (tests/data/real) where a language needs its own; ``configs/corpus/filters.yaml``
    gives the figures behind each."""

    # length: zh in characters (non-space), en in words, code in characters
    min_chars_zh: int = 50
    max_chars_zh: int = 500_000
    min_words_en: int = 50
    max_words_en: int = 100_000
    min_chars_code: int = 20
    max_chars_code: int = 1_000_000
    # '#' and ellipses per word (en) / per non-space character (zh: a word is ~1.5 characters, so
    # Gopher's 0.1 per word is ~0.067 per character; 0.05 is a little stricter)
    max_symbol_ratio_en: float = 0.1
    max_symbol_ratio_zh: float = 0.05
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    # lines that start with a section number ("3.1. 指导原则", "5.15.2 manpage.sgml.ex"): a table of contents
    max_numbered_lines: float = 0.3
    # en only
    min_alpha_words: float = 0.8
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])
    # repetition: lines and paragraphs (both languages), then n-grams per language. zh n-gram units
    # are CJK characters and Latin/digit words (ngram_units_zh: "mixed"; "chars" = every non-space
    # character, the rule before issue 13, kept for comparisons); en units are words.
    max_dup_lines: float = 0.45
    max_dup_line_chars: float = 0.30
    max_dup_paragraphs: float = 0.30
    max_dup_paragraph_chars: float = 0.20
    top_ngram_max_en: list[float] = field(default_factory=lambda: [0.20, 0.25, 0.28])                 # n = 2, 3, 4
    dup_ngram_max_en: list[float] = field(default_factory=lambda: [0.33, 0.30, 0.28, 0.26, 0.24, 0.22])  # n = 5..10
    top_ngram_max_zh: list[float] = field(default_factory=lambda: [0.20, 0.22, 0.25])
    dup_ngram_max_zh: list[float] = field(default_factory=lambda: [0.45, 0.42, 0.39, 0.36, 0.33, 0.30])
    ngram_units_zh: str = "mixed"
    # zh only
    min_cjk_ratio: float = 0.1
    # zh only: Chinese punctuation marks (，。、；：！？) per CJK character; prose has one every 5-20
    # characters, dictionary and keyword lists, tables of contents and tagged corpora almost none
    min_punct_per_cjk: float = 0.02
    # en only: share of non-empty lines that end like a sentence (. ! ? : ; quotes …); index pages and
    # word lists have almost none (documents of fewer than 3 lines pass)
    min_terminal_lines_en: float = 0.04
    # harmful content: weighted matches per 1,000 characters, and a floor on the weighted count so a
    # single mention in a short page never rejects it. Patterns with a negative weight in the lexicon
    # (the context of news and law enforcement) subtract from the count.
    max_harmful_density: float = 2.0
    min_harmful_matches: float = 3.0
    harmful_zh_file: str | None = None   # None: the list shipped in corpus/data/
    harmful_en_file: str | None = None
    # en only: bulk-mail spam written as ordinary prose. A linear classifier's log-odds of spam
    # (corpus.classifier: words and word pairs present), rejected at >= max_spam_score.
    max_spam_score: float = 1.5
    spam_en_model: str | None = None     # None: the model shipped in corpus/data/spam_en_model.tsv

    def __post_init__(self) -> None:
        for lang in ("en", "zh"):
            if len(getattr(self, f"top_ngram_max_{lang}")) != 3:
                raise ValueError(f"top_ngram_max_{lang} needs 3 values (n = 2, 3, 4)")
            if len(getattr(self, f"dup_ngram_max_{lang}")) != 6:
                raise ValueError(f"dup_ngram_max_{lang} needs 6 values (n = 5..10)")
        for key in ("harmful_zh_file", "harmful_en_file", "spam_en_model"):
            path = getattr(self, key)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"{key}: no file {path} (null: the one shipped in corpus/data/)")
        if self.ngram_units_zh not in ("mixed", "chars"):
            raise ValueError(f"ngram_units_zh is {self.ngram_units_zh!r}: 'mixed' (CJK characters and "
                             f"Latin/digit words) or 'chars' (every non-space character)")

    def top_ngram_max(self, lang: str) -> list[float]:
        return self.top_ngram_max_zh if lang == "zh" else self.top_ngram_max_en

    def dup_ngram_max(self, lang: str) -> list[float]:
        return self.dup_ngram_max_zh if lang == "zh" else self.dup_ngram_max_en


def load_quality_config(path: str | Path | None = None) -> QualityConfig:
    """Thresholds from a YAML file (unknown keys rejected by name); defaults when ``path`` is None."""
    return load_config(QualityConfig, path)


# --- features: computed lazily, once per document ----------------------------------------------------

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_ELLIPSIS = re.compile(r"\.{3,}|……|…")   # "……" is one Chinese ellipsis, a run of dots one ellipsis
_DOTS = re.compile(r"\.{3,}")
_BULLET_LINE = re.compile(r"^[ \t]*[•●○◦▪▫■□◆◇‣∙·*\-–—>](?:\s|$)", re.M)
_ELLIPSIS_END = re.compile(r"(?:\.\.\.|…)[ \t]*$", re.M)
_PARAGRAPH_SPLIT = re.compile(r"\n[ \t]*\n+")
_HAS_ALPHA = re.compile(r"[^\W\d_]")   # a letter in any script
_HAS_ALNUM = re.compile(r"[^\W_]")      # a letter or digit
_PUNCT = ".,;:!?\"'()[]"
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_PRIME = np.uint64(1_000_003)


class _Doc:
    """The statistics the rules need, each computed on first use (early rejection skips the rest)."""

    def __init__(self, text: str, lang: str) -> None:
        self.text = text
        self.lang = lang

    @functools.cached_property
    def words(self) -> list[str]:
        return self.text.split()

    @functools.cached_property
    def prose_words(self) -> list[str]:
        """The words with at least one letter or digit: "|", "+-----+", "====", ">" are layout (table
        borders, rules, quote marks), not words, for the n-gram and word-length statistics."""
        words = self.words
        if all(map(str.isalnum, words)):
            return words
        return [w for w in words if w.isalnum() or _HAS_ALNUM.search(w)]

    @functools.cached_property
    def codepoints(self) -> np.ndarray:
        # utf-32 gives one uint32 per character with a C-speed encode
        return np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)

    @functools.cached_property
    def nonspace(self) -> np.ndarray:
        cp = self.codepoints
        return cp[(cp != 0x20) & (cp != 0x0A) & (cp != 0x09) & (cp != 0x0D) & (cp != 0x3000)]

    @functools.cached_property
    def n_chars(self) -> int:
        return int(self.nonspace.size)

    @functools.cached_property
    def n_cjk(self) -> int:
        cp = self.nonspace
        cjk = np.zeros(cp.size, dtype=bool)
        for lo, hi in _CJK_RANGES:
            cjk |= (cp >= lo) & (cp <= hi)
        return int(cjk.sum())

    @functools.cached_property
    def lines(self) -> list[str]:
        return [s for s in (line.strip() for line in self.text.split("\n")) if s]

    @functools.cached_property
    def line_dups(self) -> tuple[float, float]:
        # Lines with no letter or digit ("-----", "====", ">" of a quoted mail) are rules and
        # spacing, not repeated text: they are left out of the line repetition figures.
        return _dup_fractions([line for line in self.lines if _HAS_ALNUM.search(line)])

    @functools.cached_property
    def paragraph_dups(self) -> tuple[float, float]:
        paragraphs = [p.strip() for p in _PARAGRAPH_SPLIT.split(self.text) if p.strip()]
        return _dup_fractions(paragraphs)

    def tokens(self, units_zh: str = "mixed") -> tuple[np.ndarray, np.ndarray]:
        """The units n-grams are made of, as integer ids, and their character weights (cached per
        unit kind). en: whitespace-separated words with a letter or digit, weight = length.
        zh ("mixed"): each CJK character is a unit of weight 1 and each run of other letters or
        digits ("iPhone", "2024") one unit weighing its length, as a Chinese word and an English word
        are each one unit of meaning; punctuation and symbols are not units (Gopher's n-grams are of
        words, not marks). zh ("chars"): every non-space character, weight 1."""
        cache = self.__dict__.setdefault("_tokens", {})
        key = units_zh if self.lang == "zh" else "words"
        if key in cache:
            return cache[key]
        if key == "chars":
            ids = self.nonspace.astype(np.uint64)
            out = ids, np.ones(ids.size, dtype=np.int64)
        elif key == "mixed" and (self.codepoints.size == 0 or int(self.codepoints.max()) <= 0xFFFF):
            out = _zh_unit_ids(self.codepoints)
        else:
            units = self.prose_words if key == "words" else zh_units(self.text)
            # Each distinct unit's id is the position of its first occurrence (dict.setdefault over
            # map runs at C speed). Not hash(): CPython hashes a string's raw buffer, so "US" (two
            # 1-byte code units 0x55 0x53) and "单" (one 2-byte unit 0x5355) hash alike in every process.
            first: dict[str, int] = {}
            ids = np.fromiter(map(first.setdefault, units, itertools.count()), dtype=np.uint64, count=len(units))
            weights = np.fromiter(map(len, units), dtype=np.int64, count=len(units))
            out = ids, weights
        cache[key] = out
        return out


_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_ZH_UNIT = re.compile(f"[{_CJK_CLASS}]|[^\\W_{_CJK_CLASS}]+")


def zh_units(text: str) -> list[str]:
    """The n-gram units of Chinese text: every CJK character, and every run of other letters or
    digits as one word; punctuation, symbols and spaces are left out. (The definition; the filter
    computes the same units' ids with numpy, :func:`_zh_unit_ids`, and the tests compare the two.)"""
    return _ZH_UNIT.findall(text)


@functools.lru_cache(maxsize=1)
def _bmp_alnum() -> np.ndarray:
    """str.isalnum() of every BMP code point ([^\\W_] in a regex): built once, ~10 ms."""
    return np.fromiter((chr(c).isalnum() for c in range(0x10000)), dtype=bool, count=0x10000)


_HIGH = np.uint64(1 << 63)


def _zh_unit_ids(cp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What hashing :func:`zh_units` gives (equal units, equal ids; weights = unit lengths), from
    the code points at numpy speed, for text in the BMP: a CJK character's id is its code point,
    a run of other letters and digits gets a polynomial hash of its code points with the top bit
    set (so it never equals a character's id). Regex + a dict of every unit string was ~1.5x slower."""
    if cp.size == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64)
    alnum = _bmp_alnum()[cp]
    cjk = np.zeros(cp.size, dtype=bool)
    for lo, hi in _CJK_RANGES:
        cjk |= (cp >= lo) & (cp <= hi)
    word = alnum & ~cjk
    starts = word.copy()
    starts[1:] &= ~word[:-1]
    unit_start = cjk | starts
    pos = np.flatnonzero(unit_start)
    ids = cp[pos].astype(np.uint64)
    weights = np.ones(pos.size, dtype=np.int64)
    wpos = np.flatnonzero(word)
    if wpos.size:
        run = np.cumsum(starts[wpos]) - 1                  # run number of every word position
        first = np.flatnonzero(starts[wpos])                 # index in wpos where each run starts
        offset = np.arange(wpos.size) - first[run]           # position inside its run
        with np.errstate(over="ignore"):
            # sum of cp * P^offset over the run: a polynomial hash (wrapping uint64), plus the length
            powers = np.cumprod(np.concatenate(([np.uint64(1)], np.full(int(offset.max()), _PRIME, dtype=np.uint64))))
            terms = (cp[wpos].astype(np.uint64) + np.uint64(1)) * powers[offset]
            h = np.add.reduceat(terms, first)
            lengths = np.diff(np.append(first, wpos.size))
            h = (h * _PRIME + lengths.astype(np.uint64)) | _HIGH
        is_run = starts[pos]
        ids[is_run] = h
        weights[is_run] = lengths
    return ids, weights


# --- rules: each returns True when the document FAILS --------------------------------------------------

def _fails_length(d: _Doc, cfg: QualityConfig) -> bool:
    if d.lang == "zh":
        return not cfg.min_chars_zh <= d.n_chars <= cfg.max_chars_zh
    if d.lang == "en":
        return not cfg.min_words_en <= len(d.words) <= cfg.max_words_en
    return not cfg.min_chars_code <= len(d.text) <= cfg.max_chars_code


def _fails_harmful(d: _Doc, cfg: QualityConfig) -> bool:
    path = cfg.harmful_zh_file if d.lang == "zh" else cfg.harmful_en_file
    weighted, density = harmful_density(d.text, d.lang, path)
    return weighted >= cfg.min_harmful_matches and density > cfg.max_harmful_density


def _fails_spam(d: _Doc, cfg: QualityConfig) -> bool:
    return spam_score(d.text, cfg) >= cfg.max_spam_score


def spam_score(text: str, cfg: QualityConfig | None = None) -> float:
    """The log-odds that an English text is bulk-mail spam: the linear classifier of
    ``cfg.spam_en_model`` (default ``corpus/data/spam_en_model.tsv``) over the words and word
    pairs it contains (:mod:`corpus.classifier`)."""
    cfg = cfg or QualityConfig()
    return _spam_model(cfg.spam_en_model).score(text)


@functools.lru_cache(maxsize=8)
def _spam_model(path: str | None) -> LinearClassifier:
    if path is None:
        path = str(resources.files("corpus") / "data" / "spam_en_model.tsv")
    return load_classifier(path)


def _fails_cjk_ratio(d: _Doc, cfg: QualityConfig) -> bool:
    if d.nonspace.size == 0:
        return True
    return d.n_cjk / d.nonspace.size < cfg.min_cjk_ratio


_TAGGED = re.compile(f"[{_CJK_CLASS}]/[A-Za-z]")
_ZH_PUNCT = frozenset("，。、；：！？")


def _fails_punct_per_cjk(d: _Doc, cfg: QualityConfig) -> bool:
    if cfg.min_punct_per_cjk <= 0:
        return False
    t = d.text
    punct = sum(t.count(c) for c in _ZH_PUNCT)
    return punct / max(d.n_cjk, 1) < cfg.min_punct_per_cjk


_TERMINAL = (".", "!", "?", ":", ";", '"', "'", "…", "”", "’")
_SENTENCE_INSIDE = re.compile(r"[a-z)][.!?][\"')’”]? +[A-Z]")


def _fails_terminal_lines(d: _Doc, cfg: QualityConfig) -> bool:
    if cfg.min_terminal_lines_en <= 0:
        return False
    # layout lines (a table's rows, quoted mail, a lone URL) are left out even when the document is
    # judged whole (_own_view): a title, a sentence and a table is a page with one sentence in three lines
    lines = [line.strip() for line in _prose_lines(d.text.split("\n")) if line.strip()]
    if len(lines) < 3:   # a paragraph or two on one line each says nothing about page structure
        return False
    # A line ends a sentence at its end, or inside it (". The"): hard-wrapped mail (72 columns) ends
    # its sentences mid-line as often as not; index pages and word lists do neither.
    ends = sum(1 for line in lines if line.endswith(_TERMINAL) or _SENTENCE_INSIDE.search(line))
    return ends / len(lines) < cfg.min_terminal_lines_en


def _fails_symbol_ratio(d: _Doc, cfg: QualityConfig) -> bool:
    t = d.text
    symbols = t.count("#") + _count_ellipses(t)
    if d.lang == "zh":
        # zh also counts "word/tag" marks (迈向/v 充满/v): a part-of-speech-tagged corpus scraped as text
        symbols += len(_TAGGED.findall(t))
        return symbols / max(d.n_chars, 1) > cfg.max_symbol_ratio_zh
    return symbols / max(len(d.words), 1) > cfg.max_symbol_ratio_en


def _count_ellipses(t: str) -> int:
    """== len(_ELLIPSIS.findall(t)): a run of k "…" is ceil(k/2) regex matches ("……" first, then
    "…"), which is count("…") - count("……"); a run of 3 or more dots is one (a dotted leader
    "........" in a table of contents or a mail is one mark, not a third of its length)."""
    dots = len(_DOTS.findall(t)) if "..." in t else 0
    return dots + t.count("…") - t.count("……")


def _fails_bullet_lines(d: _Doc, cfg: QualityConfig) -> bool:
    return _count_bullet_lines(d.text) / max(len(d.lines), 1) > cfg.max_bullet_lines


def _fails_ellipsis_lines(d: _Doc, cfg: QualityConfig) -> bool:
    return _count_ellipsis_lines(d.text) / max(len(d.lines), 1) > cfg.max_ellipsis_lines


# The same counts as len(_BULLET_LINE.findall(text)) and len(_ELLIPSIS_END.findall(text)), line by
# line: a "^…$" pattern under re.M is tried at every character, which cost more than the rest of
# the line rules together (tests compare both ways).
_BULLETS = frozenset("•●○◦▪▫■□◆◇‣∙·*-–—>")


def _count_bullet_lines(text: str) -> int:
    n = 0
    for line in text.split("\n"):
        s = line.lstrip(" \t")
        if s and s[0] in _BULLETS and (len(s) == 1 or s[1].isspace()):
            n += 1
    return n


def _count_ellipsis_lines(text: str) -> int:
    if "..." not in text and "…" not in text:
        return 0
    return sum(1 for line in text.split("\n") if line.rstrip(" \t").endswith(("...", "…")))


_NUMBERED = re.compile(r"\d+(?:\.\d+)+\.?[ \t]+[^\d\s]")   # "3.1. Title", not "0.000 10.413"


def _fails_numbered_lines(d: _Doc, cfg: QualityConfig) -> bool:
    lines = d.lines
    numbered = sum(1 for line in lines if line[0].isdigit() and _NUMBERED.match(line))
    return numbered / max(len(lines), 1) > cfg.max_numbered_lines


def _fails_alpha_words(d: _Doc, cfg: QualityConfig) -> bool:
    # str.isalpha settles most words at C speed; only the rest ("word,", "1990s", "42") need a regex
    # ("word," and "end." settle after stripping punctuation: a non-empty isalpha() string has a letter)
    words = d.words
    rest = list(itertools.filterfalse(str.isalpha, words))
    alpha = len(words) - len(rest) + sum(1 for w in rest if w.strip(_PUNCT).isalpha() or _HAS_ALPHA.search(w))
    # Tokens with no letter or digit at all ("|", "+-----+", "--", ">") are layout, not words: a
    # text rendering of a table or a quoted mail is not less English for its borders (issue 13:
    # they dropped 11 of 55 handbook sections). Numbers still count against the document.
    layout = sum(1 for w in rest if not _HAS_ALNUM.search(w))
    return alpha / max(len(words) - layout, 1) < cfg.min_alpha_words


def _fails_mean_word_length(d: _Doc, cfg: QualityConfig) -> bool:
    words = d.prose_words
    mean = len("".join(words)) / max(len(words), 1)
    return not cfg.min_mean_word_length <= mean <= cfg.max_mean_word_length


def _fails_stop_words(d: _Doc, cfg: QualityConfig) -> bool:
    stop = _stop_set(tuple(cfg.stop_words))
    found = 0
    for w in d.words:
        if w.lower().strip(".,;:!?\"'()") in stop:
            found += 1
            if found >= cfg.min_stop_words:
                return False
    return True


@functools.lru_cache(maxsize=8)
def _stop_set(words: tuple[str, ...]) -> frozenset[str]:
    return frozenset(w.lower() for w in words)


def _dup_fractions(items: list[str]) -> tuple[float, float]:
    """(fraction of items that repeat an earlier item, fraction of characters in those repeats)."""
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    dup_n = dup_chars = total_chars = 0
    for s in items:
        total_chars += len(s)
        if s in seen:
            dup_n += 1
            dup_chars += len(s)
        else:
            seen.add(s)
    return dup_n / len(items), dup_chars / max(total_chars, 1)


def _fails_dup_lines(d: _Doc, cfg: QualityConfig) -> bool:
    return d.line_dups[0] > cfg.max_dup_lines


def _fails_dup_line_chars(d: _Doc, cfg: QualityConfig) -> bool:
    return d.line_dups[1] > cfg.max_dup_line_chars


def _fails_dup_paragraphs(d: _Doc, cfg: QualityConfig) -> bool:
    return d.paragraph_dups[0] > cfg.max_dup_paragraphs


def _fails_dup_paragraph_chars(d: _Doc, cfg: QualityConfig) -> bool:
    return d.paragraph_dups[1] > cfg.max_dup_paragraph_chars


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """Polynomial rolling hash of every n-gram (uint64, wrapping); collisions are ~2^-64 per pair."""
    h = ids[: ids.size - n + 1].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            h = h * _PRIME + ids[k : ids.size - n + 1 + k]
    return h


def top_ngram_fraction(ids: np.ndarray, weights: np.ndarray, n: int, *, exact: bool = True) -> float:
    """Gopher's "fraction of characters in the most common n-gram": count of the top n-gram times
    its character length over all characters. Only n-grams seen more than once count."""
    if ids.size < n:
        return 0.0
    h = _ngram_hashes(ids, n)
    _, first, counts = np.unique(h, return_index=True, return_counts=True)
    most = int(counts.max())
    if most < 2:
        return 0.0
    # Several n-grams can share the top count; with units of different lengths (zh Latin words,
    # en words) they cover different numbers of characters, so take the heaviest: a fixed answer
    # (argmax would pick whichever np.unique's hash order puts first) and the reading that
    # catches the most repetition.
    cw = np.concatenate(([0], np.cumsum(weights)))
    starts = first[counts == most]
    return float(most * int((cw[starts + n] - cw[starts]).max()) / weights.sum())


def _top_ngram_bound(h: np.ndarray) -> int:
    """Upper bound on the most frequent n-gram count: bucket counts can only over-count."""
    buckets = 1 << max(10, int(h.size * 4).bit_length())
    return int(np.bincount((h & np.uint64(buckets - 1)).astype(np.intp), minlength=1).max())


def dup_ngram_fraction(ids: np.ndarray, weights: np.ndarray, n: int) -> float:
    """Gopher's "fraction of characters in duplicate n-grams": characters covered by an n-gram that
    already occurred earlier in the document (overlapping occurrences merged), over all characters."""
    if ids.size < n:
        return 0.0
    h = _ngram_hashes(ids, n)
    # A stable argsort of every n-gram was the filter's largest cost; most documents repeat few or
    # none, so a plain sort (several times cheaper) finds the repeated values, and the stable
    # argsort runs only over the positions holding one of them (in position order, so "the first
    # of each group is the earliest" still holds).
    sh = np.sort(h)
    eq = sh[1:] == sh[:-1]
    if not eq.any():
        return 0.0
    cand = np.flatnonzero(np.isin(h, sh[1:][eq]))
    hc = h[cand]
    order = np.argsort(hc, kind="stable")
    shc = hc[order]
    repeat = cand[order[1:][shc[1:] == shc[:-1]]]
    size = ids.size + 1
    delta = np.bincount(repeat, minlength=size) - np.bincount(repeat + n, minlength=size)
    covered = np.cumsum(delta[:-1]) > 0
    return float(weights[covered].sum() / weights.sum())


def _heaviest_window(weights: np.ndarray, n: int) -> int:
    """The largest total weight of ``n`` consecutive units (all of them when there are fewer)."""
    if weights.size <= n:
        return int(weights.sum())
    cw = np.cumsum(weights)
    return int(max(cw[n - 1], (cw[n:] - cw[:-n]).max()))


def _top_ngrams_surely_pass(d: _Doc, cfg: QualityConfig) -> bool:
    """One bucket count of 2-grams settles n = 2, 3, 4 for most documents: an n-gram occurs at most
    as often as its leading 2-gram, so (2-gram count bound) x (4 heaviest tokens) / total weight
    bounds every top-n-gram fraction from above."""
    cached = getattr(d, "_top_pass", None)
    if cached is None:
        ids, weights = d.tokens(cfg.ngram_units_zh)
        cached = False
        if ids.size >= 2:
            bound = _top_ngram_bound(_ngram_hashes(ids, 2))
            # the heaviest run of 4 consecutive units weighs at least as much as any 2-, 3- or 4-gram
            # (tighter than the 4 heaviest units anywhere when a few long Latin words or URLs sit in zh)
            heaviest = _heaviest_window(weights, 4)
            cached = bound * heaviest / weights.sum() <= min(cfg.top_ngram_max(d.lang))
        d._top_pass = cached  # type: ignore[attr-defined]
    return cached


def _fails_top_ngram(n: int) -> Callable[[_Doc, QualityConfig], bool]:
    def rule(d: _Doc, cfg: QualityConfig) -> bool:
        ids, weights = d.tokens(cfg.ngram_units_zh)
        limit = cfg.top_ngram_max(d.lang)[n - 2]
        if ids.size < n or _top_ngrams_surely_pass(d, cfg):
            return False
        # Cheap exact pre-check: if even the bucket bound times the longest possible n-gram weight
        # stays under the limit, the exact fraction does too.
        bound = _top_ngram_bound(_ngram_hashes(ids, n))
        max_w = _heaviest_window(weights, n)
        if bound < 2 or bound * max_w / weights.sum() <= limit:
            return False
        return top_ngram_fraction(ids, weights, n) > limit

    rule.__name__ = f"_fails_top_ngram_{n}"
    rule.__doc__ = f"most frequent {n}-gram covers too many characters"
    return rule


def _dup_ngram_all(d: _Doc, cfg: QualityConfig) -> dict[int, float]:
    cached = getattr(d, "_dup_cache", None)
    if cached is not None:
        return cached
    ids, weights = d.tokens(cfg.ngram_units_zh)
    out: dict[int, float] = {}
    first = dup_ngram_fraction(ids, weights, 5)
    if first <= min(cfg.dup_ngram_max(d.lang)):
        # Coverage by duplicate n-grams can only shrink as n grows (a repeated (n+1)-gram is two
        # overlapping repeated n-grams), so every n passes: skip five more sorts.
        out = {n: first for n in range(5, 11)}
    else:
        out = {5: first, **{n: dup_ngram_fraction(ids, weights, n) for n in range(6, 11)}}
    d._dup_cache = out  # type: ignore[attr-defined]
    return out


def _fails_dup_ngram(n: int) -> Callable[[_Doc, QualityConfig], bool]:
    def rule(d: _Doc, cfg: QualityConfig) -> bool:
        return _dup_ngram_all(d, cfg)[n] > cfg.dup_ngram_max(d.lang)[n - 5]

    rule.__name__ = f"_fails_dup_ngram_{n}"
    rule.__doc__ = f"too many characters inside repeated {n}-grams"
    return rule


Rule = Callable[[_Doc, QualityConfig], bool]

# The order in which rules run and the name each reports. Langs: which languages the rule applies to.
RULES_PROSE: list[tuple[str, frozenset[str], Rule]] = [
    ("length", frozenset({"zh", "en"}), _fails_length),
    ("harmful", frozenset({"zh", "en"}), _fails_harmful),
    ("spam", frozenset({"en"}), _fails_spam),
    ("cjk_ratio", frozenset({"zh"}), _fails_cjk_ratio),
    ("punct_per_cjk", frozenset({"zh"}), _fails_punct_per_cjk),
    ("symbol_ratio", frozenset({"zh", "en"}), _fails_symbol_ratio),
    ("bullet_lines", frozenset({"zh", "en"}), _fails_bullet_lines),
    ("ellipsis_lines", frozenset({"zh", "en"}), _fails_ellipsis_lines),
    ("numbered_lines", frozenset({"zh", "en"}), _fails_numbered_lines),
    ("alpha_words", frozenset({"en"}), _fails_alpha_words),
    ("mean_word_length", frozenset({"en"}), _fails_mean_word_length),
    ("stop_words", frozenset({"en"}), _fails_stop_words),
    ("terminal_lines", frozenset({"en"}), _fails_terminal_lines),
    ("dup_lines", frozenset({"zh", "en"}), _fails_dup_lines),
    ("dup_line_chars", frozenset({"zh", "en"}), _fails_dup_line_chars),
    ("dup_paragraphs", frozenset({"zh", "en"}), _fails_dup_paragraphs),
    ("dup_paragraph_chars", frozenset({"zh", "en"}), _fails_dup_paragraph_chars),
    *[(f"top_{n}gram", frozenset({"zh", "en"}), _fails_top_ngram(n)) for n in (2, 3, 4)],
    *[(f"dup_{n}gram", frozenset({"zh", "en"}), _fails_dup_ngram(n)) for n in range(5, 11)],
]
RULES_CODE: list[tuple[str, frozenset[str], Rule]] = [("length", frozenset({"code"}), _fails_length)]

RULE_NAMES: list[str] = [name for name, _, _ in RULES_PROSE]

# Layout lines: a mail's quoted reply ("> ...", "TP> ..."), a text table's rows and borders ("| a | b |",
# "+----+"), a link or path alone on its line, a shell command ("$ man 1 bash"), a row of figures with
# no word in it ("1.398 6.104": a benchmark's output). They are a copy of another
# text, a grid, a listing -- not the document's own sentences -- so the line-shape, word and
# repetition rules measure the document without them (the rules below). Length, the harmful lexicon,
# the spam classifier, the stop words (a floor: any occurrence counts) and the symbol ratio see the
# whole text.
# Possessive quantifiers and lookaheads keep the match linear in the line's length: with plain ones a
# 100,000-character line of spaces or slashes took a minute (quadratic backtracking).
_LAYOUT_LINE = re.compile(r"[ \t]*+(?:[A-Za-z]{0,4}>|\||\+[-=+]|(?=[^\s/\\]*+[/\\])\S++[ \t]*+$|\$ \S"
                          r"|(?=[^A-Za-z\n]*+$)\D*+\d)")


def _prose_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if not _LAYOUT_LINE.match(line)]


_OWN_TEXT_RULES = frozenset(name for name in RULE_NAMES
                            if name not in ("length", "harmful", "spam", "stop_words", "symbol_ratio", "cjk_ratio",
                                            "punct_per_cjk"))


def _own_view(d: _Doc, cfg: QualityConfig) -> _Doc:
    """``d`` without its layout lines (:data:`_LAYOUT_LINE`), when what remains is still long enough
    to pass the length rule on its own (a page that is mostly one table or one quote is judged
    whole, as before); ``d`` itself when it has no layout lines."""
    if d.lang != "en":
        return d
    lines = d.text.split("\n")
    kept = _prose_lines(lines)
    if len(kept) == len(lines):
        return d
    own = _Doc("\n".join(kept), d.lang)
    if len(own.words) < cfg.min_words_en:
        return d
    return own


def check(text: str, lang: str, cfg: QualityConfig | None = None) -> str | None:
    """The name of the first rule ``text`` fails, or None if it passes every rule for ``lang``.

    Code documents only get the length rule: prose statistics (stop words, symbol ratios,
    repeated lines) mislabel perfectly good source files.
    """
    cfg = cfg or QualityConfig()
    if lang == "code":
        rules = RULES_CODE
    elif lang in ("zh", "en"):
        rules = RULES_PROSE
    else:
        raise ValueError(f"check: unknown lang {lang!r} (expected zh, en or code)")
    d = _Doc(text, lang)
    own = _own_view(d, cfg)
    for name, langs, fails in rules:
        if lang in langs and fails(own if name in _OWN_TEXT_RULES else d, cfg):
            return name
    return None


def failing_rules(text: str, lang: str, cfg: QualityConfig | None = None) -> list[str]:
    """Every rule ``text`` fails, in rule order (:func:`check` stops at the first): what
    ``corpus calibrate`` counts, so a rule's figures do not depend on the rules before it."""
    cfg = cfg or QualityConfig()
    rules = RULES_CODE if lang == "code" else RULES_PROSE
    d = _Doc(text, lang)
    own = _own_view(d, cfg)
    return [name for name, langs, fails in rules if lang in langs and fails(own if name in _OWN_TEXT_RULES else d, cfg)]


# --- harmful-content lexicon -----------------------------------------------------------------------------

_WEIGHT_SUFFIX = re.compile(r"^(.*?)\s+@(-?\d+(?:\.\d+)?)$")


def read_weighted_patterns(path: str | Path, *, strip_word_start: bool = False) -> list[tuple[str, float]]:
    """(regular expression, weight) per line of a pattern file: an optional ``@weight`` suffix (default 1;
    negative: context that counts against), blank and ``#`` lines ignored; with ``strip_word_start`` a
    leading ``\\b`` is removed (the caller checks word starts itself). A bad regex fails naming the file
    and line."""
    out = []
    for lineno, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        weight = 1.0
        m = _WEIGHT_SUFFIX.match(line)
        if m:
            line, weight = m.group(1), float(m.group(2))
        if strip_word_start:
            line = line.removeprefix(r"\b")
        try:
            re.compile(line)
        except re.error as exc:
            raise ConfigError(f"{path}:{lineno}: bad pattern {line!r}: {exc}") from None
        out.append((line, weight))
    return out


@dataclass(frozen=True)
class _Lexicon:
    """Patterns grouped by weight into one alternation per weight, so a document is scanned once
    per distinct weight rather than once per pattern."""

    groups: tuple[tuple[float, re.Pattern[str]], ...]
    word_start: bool   # en: a match must start at a word boundary (checked outside the regex, see below)
    # Per group, the literal text every one of its patterns starts with (one per pattern), or None
    # when some pattern has none: then the group is scanned with its regex as a whole.
    prefixes: tuple[tuple[str, ...] | None, ...] = ()


def load_patterns(path: str | Path, *, ignore_case: bool) -> _Lexicon:
    """Read a pattern file: one regular expression per line, optional ``@weight`` suffix (default
    1; a negative weight is context that counts against, ``公安 @-1``), blank lines and ``#``
    comment lines ignored. A bad regex fails naming the file and line.

    With ``ignore_case`` (en) the text is lower-cased once instead of compiling with IGNORECASE,
    and every match must start at a word boundary: a leading ``\\b`` is stripped from the pattern
    and checked on each match instead, because a leading ``\\b`` stops Python's regex engine from
    skipping ahead by first character and made the scan ~5x slower."""
    by_weight: dict[float, list[str]] = {}
    # en patterns are written in lower case, their word starts checked on each match
    for line, weight in read_weighted_patterns(path, strip_word_start=ignore_case):
        by_weight.setdefault(weight, []).append(f"(?:{line})")
    groups = tuple((w, re.compile("|".join(ps))) for w, ps in sorted(by_weight.items()))
    # en only: its patterns start with common Latin letters, so the regex engine tries its branches
    # at most positions; zh patterns start with rarer characters, which it already skips quickly.
    prefixes = tuple(_literal_prefixes(ps) if ignore_case else None for _, ps in sorted(by_weight.items()))
    return _Lexicon(groups, word_start=ignore_case, prefixes=prefixes)


def _literal_prefixes(patterns: list[str]) -> tuple[str, ...] | None:
    """The leading literal characters of each pattern (as the regex parser sees them), or None if a
    pattern starts with anything else (a class, a group, an anchor) or sets flags."""
    import re._parser as sre_parse   # the parser behind re.compile (CPython 3.11+)
    from re._constants import LITERAL

    out = []
    for p in patterns:
        try:
            parsed = sre_parse.parse(p)
        except re.error:
            return None
        if parsed.state.flags & ~re.UNICODE:
            return None
        items = list(parsed)
        if len(items) == 1 and items[0][0] is sre_parse.SUBPATTERN:   # the "(?:…)" load_patterns wraps it in
            _, (group, add, rem, sub) = items[0]
            if add or rem:
                return None
            items = list(sub)
        chars = []
        for op, arg in items:
            if op is not LITERAL:
                break
            chars.append(chr(arg))
        if not chars:
            return None
        out.append("".join(chars))
    return tuple(sorted(set(out)))


@functools.lru_cache(maxsize=8)
def _lexicon(lang: str, path: str | None) -> _Lexicon:
    if path is None:
        path = str(resources.files("corpus") / "data" / f"harmful_{lang}.txt")
    return load_patterns(path, ignore_case=(lang == "en"))


def harmful_density(text: str, lang: str, path: str | None = None) -> tuple[float, float]:
    """(weighted match count, weighted matches per 1,000 characters) of the harmful lexicon for
    ``lang``. Density, not presence, decides: an encyclopedia article that names a casino once is
    fine; a page that repeats gambling keywords every other line is spam. Density alone does not
    tell a news report on a crackdown from the thing it reports, so patterns with a negative weight
    (the vocabulary of news and law enforcement) subtract from the count, never below zero."""
    lex = _lexicon(lang, path)
    scan = text.lower() if lex.word_start else text
    weighted = 0.0
    for (weight, pattern), prefixes in zip(lex.groups, lex.prefixes or (None,) * len(lex.groups)):
        if lex.word_start:
            matches = pattern.finditer(scan) if prefixes is None else _matches_at_prefixes(pattern, scan, prefixes)
            # matches are rare, so checking the boundary here costs nothing
            n = sum(1 for m in matches if m.start() == 0 or not scan[m.start() - 1].isalnum())
        else:
            n = len(pattern.findall(scan))
        weighted += weight * n
    # Negative weights are context (news, law enforcement): they can cancel matches, never go below 0.
    weighted = max(weighted, 0.0)
    return weighted, weighted * 1000.0 / max(len(text), 1)


def _matches_at_prefixes(pattern: re.Pattern[str], scan: str, prefixes: tuple[str, ...]):
    """What ``pattern.finditer(scan)`` yields, found faster: a match can only start where one of
    its patterns' literal prefixes occurs, and ``str.find`` locates those at C speed (most
    documents have none), so the regex runs only there — leftmost first, non-overlapping, as
    finditer does. The regex engine scanning every position itself was ~40 % of the en check time."""
    starts: set[int] = set()
    for pre in prefixes:
        i = scan.find(pre)
        while i >= 0:
            starts.add(i)
            i = scan.find(pre, i + 1)
    end = 0
    for i in sorted(starts):
        if i < end:
            continue
        m = pattern.match(scan, i)
        if m is not None:
            yield m
            end = max(m.end(), i + 1)
