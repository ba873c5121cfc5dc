"""Quality and harmful-content filters for zh and en prose (Gopher / C4 style) and a length check for code.

Each rule is a small function ``(doc statistics, cfg) -> bool`` (True = the document fails) registered
under its rule name in :data:`RULES_PROSE`; :func:`check` returns the name of the FIRST rule a document fails, in the fixed order of :data:`RULES_PROSE`, or
None when it passes. A fixed order makes the per-rule rejection counts in the build report
reproducible and lets cheap rules (length, harmful keywords) run before the n-gram statistics.

Units: zh counts *characters* (there are no spaces between Chinese words) and uses character
n-grams; en counts whitespace-separated words and uses word n-grams, weighted by characters as in
Gopher (Rae et al. 2021, appendix A). All thresholds live in :class:`QualityConfig`, loaded from YAML
(``configs/corpus/filters.yaml`` ships the defaults) through :func:`common.config.load_config`, so an
unknown key fails naming the key.

Speed: n-gram statistics use numpy rolling hashes over code points / word ids rather than Python
tuples, and two exact shortcuts — duplicate-n-gram coverage can only shrink as n grows, and a
hashed-bucket count bounds the top n-gram count from above — skip most of the work for normal text.
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

__all__ = [
    "QualityConfig",
    "check",
    "load_quality_config",
    "harmful_density",
    "load_patterns",
    "RULES_PROSE",
    "RULES_CODE",
]


@dataclass
class QualityConfig:
    """Thresholds for :func:`check`. Defaults follow Gopher where it gives a number; see
    ``configs/corpus/filters.yaml`` for the reasoning behind each."""

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
    # en only
    min_alpha_words: float = 0.8
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    min_stop_words: int = 2
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])
    # repetition
    max_dup_lines: float = 0.30
    max_dup_line_chars: float = 0.20
    max_dup_paragraphs: float = 0.30
    max_dup_paragraph_chars: float = 0.20
    top_ngram_max: list[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])                 # n = 2, 3, 4
    dup_ngram_max: list[float] = field(default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])  # n = 5..10
    # zh only
    min_cjk_ratio: float = 0.3
    # harmful content: weighted matches per 1,000 characters, and a floor on the weighted count so a
    # single mention in a short page never rejects it
    max_harmful_density: float = 2.0
    min_harmful_matches: float = 3.0
    harmful_zh_file: str | None = None   # None: the list shipped in corpus/data/
    harmful_en_file: str | None = None

    def __post_init__(self) -> None:
        if len(self.top_ngram_max) != 3:
            raise ValueError("top_ngram_max needs 3 values (n = 2, 3, 4)")
        if len(self.dup_ngram_max) != 6:
            raise ValueError("dup_ngram_max needs 6 values (n = 5..10)")


def load_quality_config(path: str | Path | None = None) -> QualityConfig:
    """Thresholds from a YAML file (unknown keys rejected by name); defaults when ``path`` is None."""
    return load_config(QualityConfig, path)


# --- features: computed lazily, once per document ----------------------------------------------------

_CJK_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
_ELLIPSIS = re.compile(r"\.\.\.|……|…")   # "……" is one Chinese ellipsis
_BULLET_LINE = re.compile(r"^[ \t]*[•●○◦▪▫■□◆◇‣∙·*\-–—>](?:\s|$)", re.M)
_ELLIPSIS_END = re.compile(r"(?:\.\.\.|…)[ \t]*$", re.M)
_PARAGRAPH_SPLIT = re.compile(r"\n[ \t]*\n+")
_HAS_ALPHA = re.compile(r"[^\W\d_]")   # a letter in any script
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
    def lines(self) -> list[str]:
        return [s for s in (line.strip() for line in self.text.split("\n")) if s]

    @functools.cached_property
    def line_dups(self) -> tuple[float, float]:
        return _dup_fractions(self.lines)

    @functools.cached_property
    def paragraph_dups(self) -> tuple[float, float]:
        paragraphs = [p.strip() for p in _PARAGRAPH_SPLIT.split(self.text) if p.strip()]
        return _dup_fractions(paragraphs)

    @functools.cached_property
    def tokens(self) -> tuple[np.ndarray, np.ndarray]:
        """The units n-grams are made of, as integer ids, and their character weights:
        zh = non-space characters (weight 1), en = words (weight = word length)."""
        if self.lang == "zh":
            ids = self.nonspace.astype(np.uint64)
            return ids, np.ones(ids.size, dtype=np.int64)
        # Python's str hash is salted per process, but only equality of ids matters here (64-bit
        # collisions aside), so results do not depend on the salt; map(hash) runs at C speed.
        ids = np.fromiter(map(hash, self.words), dtype=np.int64, count=len(self.words)).view(np.uint64)
        weights = np.fromiter(map(len, self.words), dtype=np.int64, count=len(self.words))
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


def _fails_cjk_ratio(d: _Doc, cfg: QualityConfig) -> bool:
    cp = d.nonspace
    if cp.size == 0:
        return True
    cjk = np.zeros(cp.size, dtype=bool)
    for lo, hi in _CJK_RANGES:
        cjk |= (cp >= lo) & (cp <= hi)
    return cjk.sum() / cp.size < cfg.min_cjk_ratio


def _fails_symbol_ratio(d: _Doc, cfg: QualityConfig) -> bool:
    # == text.count("#") + len(_ELLIPSIS.findall(text)): a run of k "…" is ceil(k/2) regex matches
    # ("……" first, then "…"), which is count("…") - count("……"); "..." cannot overlap them.
    t = d.text
    symbols = t.count("#") + t.count("...") + t.count("…") - t.count("……")
    if d.lang == "zh":
        return symbols / max(d.n_chars, 1) > cfg.max_symbol_ratio_zh
    return symbols / max(len(d.words), 1) > cfg.max_symbol_ratio_en


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


def _fails_alpha_words(d: _Doc, cfg: QualityConfig) -> bool:
    # str.isalpha settles most words at C speed; only the rest ("word,", "1990s", "42") need a regex
    # ("word," and "end." settle after stripping punctuation: a non-empty isalpha() string has a letter)
    words = d.words
    rest = list(itertools.filterfalse(str.isalpha, words))
    alpha = len(words) - len(rest) + sum(1 for w in rest if w.strip(_PUNCT).isalpha() or _HAS_ALPHA.search(w))
    return alpha / max(len(words), 1) < cfg.min_alpha_words


def _fails_mean_word_length(d: _Doc, cfg: QualityConfig) -> bool:
    words = d.words
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
    top = int(np.argmax(counts))
    if counts[top] < 2:
        return 0.0
    start = int(first[top])
    return float(counts[top] * weights[start : start + n].sum() / weights.sum())


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


def _top_ngrams_surely_pass(d: _Doc, cfg: QualityConfig) -> bool:
    """One bucket count of 2-grams settles n = 2, 3, 4 for most documents: an n-gram occurs at most
    as often as its leading 2-gram, so (2-gram count bound) x (4 heaviest tokens) / total weight
    bounds every top-n-gram fraction from above."""
    cached = getattr(d, "_top_pass", None)
    if cached is None:
        ids, weights = d.tokens
        cached = False
        if ids.size >= 2:
            bound = _top_ngram_bound(_ngram_hashes(ids, 2))
            heaviest = int(np.sort(weights)[-4:].sum()) if weights.size >= 4 else int(weights.sum())
            cached = bound * heaviest / weights.sum() <= min(cfg.top_ngram_max)
        d._top_pass = cached  # type: ignore[attr-defined]
    return cached


def _fails_top_ngram(n: int) -> Callable[[_Doc, QualityConfig], bool]:
    def rule(d: _Doc, cfg: QualityConfig) -> bool:
        ids, weights = d.tokens
        limit = cfg.top_ngram_max[n - 2]
        if ids.size < n or _top_ngrams_surely_pass(d, cfg):
            return False
        # Cheap exact pre-check: if even the bucket bound times the longest possible n-gram weight
        # stays under the limit, the exact fraction does too.
        bound = _top_ngram_bound(_ngram_hashes(ids, n))
        max_w = int(weights.max()) * n
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
    ids, weights = d.tokens
    out: dict[int, float] = {}
    first = dup_ngram_fraction(ids, weights, 5)
    if first <= min(cfg.dup_ngram_max):
        # Coverage by duplicate n-grams can only shrink as n grows (a repeated (n+1)-gram is two
        # overlapping repeated n-grams), so every n passes: skip five more sorts.
        out = {n: first for n in range(5, 11)}
    else:
        out = {5: first, **{n: dup_ngram_fraction(ids, weights, n) for n in range(6, 11)}}
    d._dup_cache = out  # type: ignore[attr-defined]
    return out


def _fails_dup_ngram(n: int) -> Callable[[_Doc, QualityConfig], bool]:
    def rule(d: _Doc, cfg: QualityConfig) -> bool:
        return _dup_ngram_all(d, cfg)[n] > cfg.dup_ngram_max[n - 5]

    rule.__name__ = f"_fails_dup_ngram_{n}"
    rule.__doc__ = f"too many characters inside repeated {n}-grams"
    return rule


Rule = Callable[[_Doc, QualityConfig], bool]

# The order in which rules run and the name each reports. Langs: which languages the rule applies to.
RULES_PROSE: list[tuple[str, frozenset[str], Rule]] = [
    ("length", frozenset({"zh", "en"}), _fails_length),
    ("harmful", frozenset({"zh", "en"}), _fails_harmful),
    ("cjk_ratio", frozenset({"zh"}), _fails_cjk_ratio),
    ("symbol_ratio", frozenset({"zh", "en"}), _fails_symbol_ratio),
    ("bullet_lines", frozenset({"zh", "en"}), _fails_bullet_lines),
    ("ellipsis_lines", frozenset({"zh", "en"}), _fails_ellipsis_lines),
    ("alpha_words", frozenset({"en"}), _fails_alpha_words),
    ("mean_word_length", frozenset({"en"}), _fails_mean_word_length),
    ("stop_words", frozenset({"en"}), _fails_stop_words),
    ("dup_lines", frozenset({"zh", "en"}), _fails_dup_lines),
    ("dup_line_chars", frozenset({"zh", "en"}), _fails_dup_line_chars),
    ("dup_paragraphs", frozenset({"zh", "en"}), _fails_dup_paragraphs),
    ("dup_paragraph_chars", frozenset({"zh", "en"}), _fails_dup_paragraph_chars),
    *[(f"top_{n}gram", frozenset({"zh", "en"}), _fails_top_ngram(n)) for n in (2, 3, 4)],
    *[(f"dup_{n}gram", frozenset({"zh", "en"}), _fails_dup_ngram(n)) for n in range(5, 11)],
]
RULES_CODE: list[tuple[str, frozenset[str], Rule]] = [("length", frozenset({"code"}), _fails_length)]

RULE_NAMES: list[str] = [name for name, _, _ in RULES_PROSE]


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
    for name, langs, fails in rules:
        if lang in langs and fails(d, cfg):
            return name
    return None


# --- harmful-content lexicon -----------------------------------------------------------------------------

_WEIGHT_SUFFIX = re.compile(r"^(.*?)\s+@(\d+(?:\.\d+)?)$")


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
    1), blank lines and ``#`` comment lines ignored. A bad regex fails naming the file and line.

    With ``ignore_case`` (en) the text is lower-cased once instead of compiling with IGNORECASE,
    and every match must start at a word boundary: a leading ``\\b`` is stripped from the pattern
    and checked on each match instead, because a leading ``\\b`` stops Python's regex engine from
    skipping ahead by first character and made the scan ~5x slower."""
    by_weight: dict[float, list[str]] = {}
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        weight = 1.0
        m = _WEIGHT_SUFFIX.match(line)
        if m:
            line, weight = m.group(1), float(m.group(2))
        if ignore_case:
            line = line.removeprefix(r"\b")   # en patterns are written in lower case
        try:
            re.compile(line)
        except re.error as exc:
            raise ConfigError(f"{path}:{lineno}: bad pattern {line!r}: {exc}") from None
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
    fine; a page that repeats gambling keywords every other line is spam."""
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
