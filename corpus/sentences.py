"""Lossless sentence and block splitting for zh, en and code, on UTF-8 bytes.

The packer cuts each document into samples made of whole sentences, so this module decides *where a
document may be cut*. It works on UTF-8 bytes and returns byte offsets because the caller maps them
onto sentencepiece token positions. Nothing is dropped or normalised: the pieces between consecutive
offsets concatenate back to the input exactly.

Every splitter returns the *ends* of its pieces: a strictly increasing int64 array whose last
element is ``len(data)`` (empty for empty input). Every offset lies on a character boundary because
every pattern consumes whole UTF-8 sequences (UTF-8 is self-synchronising: a multi-byte delimiter
matched as a byte sequence can only match at a character start).

Rules shared by the text modes (zh, en)
  * Line breaks (``\\n``, ``\\r\\n``, ``\\r``; a run of them, blank lines holding only spaces
    included) end a sentence and belong to the sentence before them. Spaces at the end of a line
    go with the line break, so no piece is whitespace only (unless the whole input is).
  * A terminator run followed by line breaks takes them along (no "\\n"-only pieces).
  * Closing quotes and brackets right after a terminator stay with the sentence they close
    (``”’」』）)】》〕〉］]｝}〗"'``); the original CaMA splitter moved them to the next one.
  * Spaces and tabs after a terminator belong to the NEXT sentence: sentencepiece attaches a space
    to the word after it ("▁Next"), so a cut before the space is a cut between tokens.
  * Leading whitespace of a document joins its first sentence.

zh
  * A run of terminators holding a full-width one (``。！？；．``, mixed with ASCII ``.!?;``:
    ``！？``, ``。。``, ``?！`` stay together) always ends a sentence, unless the closers are
    followed by a comma or colon (``“好！”，他说``: the quote sits inside a longer sentence).
    ``．`` before a digit (``３．１４``) is a decimal point, not a terminator.
  * A run of ASCII ``!?;`` ends a sentence unless printable ASCII follows directly (``a?b``,
    ``?q=1`` in a URL, ``i<n;i++``): ``你好!我`` splits, ``http://x.cn/?q=1`` does not.
  * ASCII periods follow the en rules, so English sentences inside Chinese split as in en.
  * The ellipsis ``……`` alone is not a terminator.

en
  * A run of ``.!?`` plus closers ends a sentence when followed by whitespace and then a character
    that is not a lowercase ASCII letter, by the end of the text, or directly by a CJK character.
  * Full-width terminators end sentences as in zh (mixed text); ASCII ``;`` does not.
  * A lone period does not end a sentence after a listed abbreviation (``Mr. Dr. Fig. Jan.``, see
    ``ABBREVIATIONS``), a single capital initial (``J. K. Rowling``) or a dotted abbreviation
    (``e.g. i.e. U.S. a.m.``). An ASCII ellipsis (``...``) is not split before CJK text, where it
    is an ellipsis inside a Chinese sentence.
  * Decimals, versions, domains (``3.14 v2.0 example.com``) never split: no whitespace follows.

code
  * Never cut inside a line. ``sentence_ends`` returns blocks: a block ends after a run of blank
    lines (which belong to the block before), and a new block starts before a top-level definition
    at column 0 (``def class async fn func function public struct impl ...``, see
    ``DEFINITION_KEYWORDS``). Decorators, attributes and comment lines directly above a definition
    stay with it. ``line_ends`` is the per-line fallback for blocks that are too long.

Speed: the rules are compiled bytes regexes, but re's scanner tries a pattern like these at every
byte in its VM (~3 MB/s), while it finds a literal prefix in C at hundreds of MB/s. So candidate
start offsets come first (from literal searches for small documents, from numpy for large ones),
the common certain cases ("。" before a Han character, "word. Next") are settled there, and the
regex runs only at the remaining candidates: a Python step per sentence, never per character.
``_reference_ends`` is the plain ``finditer`` that the tests hold the fast paths to. Possessive
quantifiers (``*+``) keep the rules free of backtracking; they need Python 3.11.
"""

from __future__ import annotations

import re
import sys
from typing import Final, Iterable, Iterator

import numpy as np

if sys.version_info < (3, 11):  # possessive quantifiers and atomic groups arrived in 3.11
    raise ImportError("corpus.sentences needs Python >= 3.11 (possessive regex quantifiers)")

__all__ = [
    "LANGS",
    "ABBREVIATIONS",
    "DEFINITION_KEYWORDS",
    "sentence_ends",
    "line_ends",
    "split",
]

LANGS: Final = ("zh", "en", "code")

# Case matters: "No." is an abbreviation, "no." usually ends "I said no.". NLTK's Punkt data cannot
# be downloaded on the cluster, so the list ships here. Dotted forms (e.g. i.e. a.m. U.S.) and
# single initials are handled by pattern, not listed. No entry may end in four lowercase letters:
# the "word. Next" shortcut (_ASCII_PLAIN_END) relies on it (a test checks).
ABBREVIATIONS: Final = (
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Rev", "Hon", "Gen", "Col", "Lt",
    "Capt", "Sgt", "Gov", "Sen", "Rep", "Pres", "vs", "cf", "al", "Inc", "Ltd", "Co",
    "Corp", "Dept", "Univ", "No", "Nos", "Fig", "Figs", "Eq", "Eqs", "Vol", "Vols", "Ch", "Sec",
    "pp",
    "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
)

# Words that start a top-level definition at column 0 in the languages the corpus holds. A cut
# before one falls between two units a reader would also separate, so packing keeps them whole.
DEFINITION_KEYWORDS: Final = (
    "def", "class", "async", "function", "fn", "func", "fun", "pub", "public", "private",
    "protected", "internal", "static", "abstract", "final", "sealed", "override", "virtual",
    "inline", "extern", "unsafe", "impl", "struct", "enum", "union", "trait", "interface", "type",
    "typedef", "template", "namespace", "module", "object", "export", "const", "void",
    "macro_rules!",
)

# ---------------------------------------------------------------------------------------------
# pattern pieces (bytes; each consumes whole UTF-8 characters)


def _alt(chars: Iterable[str]) -> bytes:
    """Alternation of the UTF-8 encodings of ``chars``: a multi-byte character must match as a
    sequence (a byte class would match its bytes one by one, inside other characters)."""
    return b"(?:" + b"|".join(re.escape(c.encode("utf-8")) for c in chars) + b")"


# Horizontal whitespace: ASCII blanks, NBSP and the ideographic space that indents Chinese text.
# Written unrolled (a class run, then the rare multi-byte ones) because an alternation inside a
# repeat costs re a branch per byte, which halves the scan speed on indented code.
_HWS1: Final = rb"(?:[ \t\x0b\x0c]|\xc2\xa0|\xe3\x80\x80)"
_HWS_STAR: Final = rb"[ \t\x0b\x0c]*+(?:(?:\xc2\xa0|\xe3\x80\x80)[ \t\x0b\x0c]*+)*+"
_HWS_PLUS: Final = _HWS1 + _HWS_STAR
_LB: Final = rb"(?:\r\n?+|\n)"  # possessive: "\r\n" is one line break, never two


def _lb_run(lb: bytes, more: bytes = b"*+") -> bytes:
    """A line break then ``more`` further ones, blank lines holding only spaces included.

    Spaces left at the very end of the text join the run, so the last piece is never whitespace."""
    return rb"%s(?:%s%s)%s(?:%s\Z)?+" % (lb, _HWS_STAR, lb, more, _HWS_PLUS)


# What a terminator takes with it: the spaces ending its line and the line breaks, or the spaces
# ending the text.
_LB_TAIL: Final = _HWS_STAR + _lb_run(_LB)
_END_TAIL: Final = _HWS_STAR + rb"\Z"
_UNCOND_TAIL: Final = rb"(?:%s|%s)?+" % (_LB_TAIL, _END_TAIL)

_CLOSERS: Final = _alt("\"')]}”’」』）】》〕〉］｝〗") + b"*+"
# Full-width terminators 。！？；．, except "．" directly before a digit: a decimal point (３．１４).
_FW_TERM: Final = rb"(?:%s|\xef\xbc\x8e(?![0-9]|\xef\xbc[\x90-\x99]))" % _alt("。！？；")
# A quoted sentence followed by a comma sits inside a longer one: “好！”，他说。
_NO_COMMA: Final = rb"(?!%s)" % _alt(",:，、：")
# Lead bytes of U+3000..U+9FFF (CJK punctuation, kana, Han) and of the full-width forms.
_CJK_AHEAD: Final = rb"(?=[\xe3-\xe9]|\xef[\xbc\xbd])"
_WS_THEN_NOT_LOWER: Final = rb"(?=%s(?![a-z]))" % _HWS_PLUS
_EN_COND: Final = rb"(?:%s|%s|%s|%s)" % (_LB_TAIL, _END_TAIL, _WS_THEN_NOT_LOWER, _CJK_AHEAD)
_ELLIPSIS_COND: Final = rb"(?:%s|%s|%s)" % (_LB_TAIL, _END_TAIL, _WS_THEN_NOT_LOWER)

# Runs are judged whole. finditer also tries the positions inside a run whose start failed, and
# such a suffix (the "." of "!." or of "。.") must not succeed where the whole run did not.
_RUN_START: Final = rb"(?<![.!?;])(?<!\xe3\x80\x82)(?<!\xef\xbc[\x81\x8e\x9b\x9f])"
_RUN_OVER: Final = rb"(?![.!?;]|%s)" % _FW_TERM


def _abbreviation_guards(abbreviations: Iterable[str]) -> bytes:
    """Negative lookbehinds, placed after a period, that reject it after an abbreviation.

    re's lookbehind must be fixed width, so the words are grouped by length, one lookbehind per
    length; they run only where a period already matched, so they cost nothing elsewhere."""
    by_len: dict[int, list[bytes]] = {}
    for word in abbreviations:
        by_len.setdefault(len(word), []).append(re.escape(word.encode("ascii")))
    guards = [rb"(?<!\b(?:%s)\.)" % b"|".join(sorted(ws)) for _, ws in sorted(by_len.items())]
    guards.append(rb"(?<!\b[A-Z]\.)")  # initials: J. K. Rowling
    guards.append(rb"(?<!\b[A-Za-z]\.[A-Za-z]\.)")  # dotted: e.g. i.e. a.m. p.m. U.S. U.K.
    return b"".join(guards)


# ---------------------------------------------------------------------------------------------
# text boundaries: each match ends exactly where a sentence ends

# A run holding a full-width terminator ends a sentence whatever follows, but a comma.
_FW_RUN: Final = rb"[.!?;]*+%s(?:[.!?;]|%s)*+%s%s%s" % (
    _FW_TERM, _FW_TERM, _CLOSERS, _NO_COMMA, _UNCOND_TAIL,
)
# A lone period: the en rules, abbreviation-aware.
_PERIOD: Final = rb"%s\.%s%s%s%s" % (
    _RUN_START, _RUN_OVER, _abbreviation_guards(ABBREVIATIONS), _CLOSERS, _EN_COND,
)
# "..." or "......": like a period, but not before CJK, where it is an ellipsis inside a sentence.
_DOTS: Final = rb"%s\.\.++%s%s%s" % (_RUN_START, _RUN_OVER, _CLOSERS, _ELLIPSIS_COND)
# zh: ASCII !?; end a sentence unless glued to more ASCII (a URL's "?q=", "a?b", "i<n;i++").
_ZH_ASCII_RUN: Final = rb"%s(?=[.!?;]*[!?;])[.!?;]++%s%s(?![\x21-\x7e])%s%s" % (
    _RUN_START, _RUN_OVER, _CLOSERS, _NO_COMMA, _UNCOND_TAIL,
)
# en: !? take the en condition; ';' is no terminator.
_EN_ASCII_RUN: Final = rb"%s(?=[.!?]*[!?])[.!?]++%s%s%s" % (
    _RUN_START, _RUN_OVER, _CLOSERS, _EN_COND,
)
# A line break that no terminator claimed.
_BARE_LB: Final = _lb_run(_LB)

# The alternatives exclude each other at any one position (they need different runs), so their
# order does not change what matches.
_TEXT_PATTERNS: Final = {
    "zh": re.compile(b"|".join((_FW_RUN, _ZH_ASCII_RUN, _PERIOD, _DOTS, _BARE_LB))),
    "en": re.compile(b"|".join((_FW_RUN, _EN_ASCII_RUN, _PERIOD, _DOTS, _BARE_LB))),
}


# ---------------------------------------------------------------------------------------------
# candidates: where a text match can start
#
# re's scanner tries every byte position in its regex VM, a few MB/s for these patterns, while its
# search for a literal prefix runs in C at hundreds of MB/s. So the text modes first list the few
# offsets where a match can start, then try the pattern at those only (``_scan``). Two finders
# give the same answer: small documents use literal searches only, because numpy costs ~1-3 us
# per call whatever the size; large ones use numpy, which costs ~3x less per byte.

_SMALL_TEXT: Final = 16 * 1024
_PAD: Final = 4

# A lone 。！？； followed by a Han character or an ASCII letter/digit is a boundary whatever run
# it ends, with no closer, comma, space or line break to take: no regex needed.
_PLAIN_NEXT_CLASS: Final = rb"[\xe4-\xe9A-Za-z0-9]"
_FW_CERTAIN: Final = (
    re.compile(rb"\xe3\x80\x82(?=%s)" % _PLAIN_NEXT_CLASS),
    re.compile(rb"\xef\xbc[\x81\x9f\x9b](?=%s)" % _PLAIN_NEXT_CLASS),
)
_FW_MAYBE: Final = (
    re.compile(rb"\xe3\x80\x82(?!%s)" % _PLAIN_NEXT_CLASS),
    # ．is always left to the regex: before a digit it is a decimal point.
    re.compile(rb"\xef\xbc(?:[\x81\x9f\x9b](?!%s)|\x8e)" % _PLAIN_NEXT_CLASS),
)
# An ASCII terminator glued to one of these (3.14, e.g, a?b, example.com) starts no match: every
# rule needs a terminator, closer, space, line break, CJK or the end of the text next.
_GLUED: Final = bytes(b for b in range(0x21, 0x7F) if b not in b".!?;\"')]}")


def _marker_table(marked: bytes) -> bytes:
    """A ``bytes.translate`` table that turns the ``marked`` bytes into 0x01 (and a real 0x01 into
    0x00), so one literal search finds them all. Other bytes keep their value."""
    table = bytearray(range(256))
    table[1] = 0
    for b in marked:
        table[b] = 1
    return bytes(table)


# en needs no ';': it starts no en match, except at the head of a full-width run (";。"), whose
# full-width terminator is a candidate too and ends the same match.
_ASCII_MARKS: Final = {"zh": _marker_table(b".!?;"), "en": _marker_table(b".!?")}
# The common English end, "word. Next": a lone terminator after four lowercase letters (so after
# no listed abbreviation) before a space and a capital is a boundary in both modes (0x01 stands
# for the marked terminator).
_ASCII_PLAIN_END: Final = rb"(?<=[a-z]{4}\x01) [A-Z]"
_ASCII_CERTAIN: Final = re.compile(rb"\x01(?=%s)" % _ASCII_PLAIN_END)
_ASCII_MAYBE: Final = {
    "zh": re.compile(rb"\x01(?![%s])(?!%s)" % (re.escape(_GLUED), _ASCII_PLAIN_END)),
    # en rules never end a sentence before " lowercase".
    "en": re.compile(rb"\x01(?![%s])(?! [a-z])(?!%s)" % (re.escape(_GLUED), _ASCII_PLAIN_END)),
}


def _flag_table(marked: bytes) -> bytes:
    """A ``bytes.translate`` table that turns the ``marked`` bytes into 1 and all others into 0."""
    table = bytearray(256)
    for b in marked:
        table[b] = 1
    return bytes(table)


def _lookup(marked: bytes) -> np.ndarray:
    """A boolean table over byte values: True for the ``marked`` ones."""
    table = np.zeros(256, dtype=np.bool_)
    table[list(marked)] = True
    return table


_START_FLAGS: Final = {"zh": _flag_table(b".!?;\xe3\xef"), "en": _flag_table(b".!?\xe3\xef")}
_PLAIN_NEXT: Final = _lookup(
    bytes(range(0xE4, 0xEA)) + bytes(range(0x30, 0x3A)) + bytes(range(0x41, 0x5B))
    + bytes(range(0x61, 0x7B))
)
_GLUED_NEXT: Final = _lookup(_GLUED)
_LOWER: Final = _lookup(bytes(range(0x61, 0x7B)))
_UPPER: Final = _lookup(bytes(range(0x41, 0x5B)))


def _candidates_small(data: bytes, lang: str) -> tuple[list[int], list[int]]:
    """(certain ends, start offsets for the regex) by re's literal searches alone."""
    certain = [m.end() for p in _FW_CERTAIN for m in p.finditer(data)]
    starts = [m.start() for p in _FW_MAYBE for m in p.finditer(data)]
    marked = data.translate(_ASCII_MARKS[lang])
    certain += [m.end() for m in _ASCII_CERTAIN.finditer(marked)]
    starts += [m.start() for m in _ASCII_MAYBE[lang].finditer(marked)]
    starts.sort()
    return certain, starts


def _candidates_large(data: bytes, lang: str) -> tuple[list[int], list[int]]:
    """The same as ``_candidates_small``, vectorised with numpy."""
    # Padding lets the bytes around a candidate be read without bounds checks; a 0 byte is neither
    # plain, glued, a letter nor a space, so a candidate at either end decides like the edge.
    a = np.frombuffer(b"\0" * _PAD + data + b"\0" * _PAD, dtype=np.uint8)
    pos = _positions(data, _START_FLAGS[lang])
    at = pos + _PAD
    multibyte = a[at] >= 0x80

    # E3/EF leads: the (second, third) bytes as one number; 。 is E3 80 82, ！？；． are EF BC xx.
    fw = at[multibyte]
    tail = (a[fw + 1].astype(np.uint16) << 8) | a[fw + 2]
    stop = (tail == 0x8082) | (tail == 0xBC81) | (tail == 0xBC9F) | (tail == 0xBC9B)
    fw_certain = stop & _PLAIN_NEXT[a[fw + 3]]
    fw_maybe = fw[(stop & ~fw_certain) | (tail == 0xBC8E)]

    asc = at[~multibyte]
    nxt = a[asc + 1]
    dead = _GLUED_NEXT[nxt]
    before_lower = (nxt == 0x20) & _LOWER[a[asc + 2]]
    # en rules never end a sentence before " lowercase"; zh applies them to periods only.
    dead |= before_lower if lang == "en" else before_lower & (a[asc] == 0x2E)
    plain_end = (nxt == 0x20) & _UPPER[a[asc + 2]]  # _ASCII_PLAIN_END
    for back in range(1, 5):
        plain_end &= _LOWER[a[asc - back]]

    certain = np.concatenate((fw[fw_certain] + 3, asc[plain_end] + 1)) - _PAD
    starts = np.concatenate((asc[~(dead | plain_end)], fw_maybe)) - _PAD
    starts.sort()
    return certain.tolist(), starts.tolist()


# ---------------------------------------------------------------------------------------------
# code

_DEFINITION: Final = rb"(?:%s)(?:[<(]|[ \t]++[A-Za-z_$(*&<\[])" % b"|".join(
    re.escape(k.encode("ascii")) for k in DEFINITION_KEYWORDS
)
# Column-0 lines that belong to the definition below them: decorators and annotations (@),
# attributes and comments (#, #[...]), C-family and SQL/Lua comments, and the " * " lines of a
# /** */ doc comment.
_LEAD_LINE: Final = rb"(?:[@#]|//|/\*|--|[ \t]*+\*)[^\r\n]*+%s" % _LB


def _def_start(lb: bytes) -> re.Pattern[bytes]:
    """The line break before a definition, or before the decorators/comments directly above one.

    The run of lead lines is consumed whether or not a definition follows, so a long comment block
    is scanned once (a failing lookahead would make the scanner retry from each of its lines). The
    first lookahead is a cheap filter: both kinds of line start with one of these bytes."""
    return re.compile(
        rb"(?P<lb>%s)(?=[@#/\-a-z \t])(?:(?P<lead>(?:%s)++)(?P<def>(?=%s))?|(?=%s))"
        % (lb, _LEAD_LINE, _DEFINITION, _DEFINITION)
    )


# Decorators and comments at the top of a file belong to its first block whatever follows.
_LEAD_AT_START: Final = re.compile(rb"(?:%s)*+" % _LEAD_LINE)
# Patterns starting with a literal "\n" let re skip ahead with its fast literal search; that only
# covers text without "\r", the rest goes through the candidate scan on the generic patterns.
_LF_LINE: Final = re.compile(_lb_run(rb"\n"))
_LF_BLANK_RUN: Final = re.compile(_lb_run(rb"\n", b"++"))
_LF_BEFORE_BLANK_LINE: Final = re.compile(rb"\n(?=%s(?:\n|\Z))" % _HWS_STAR)
_LF_DEF_START: Final = _def_start(rb"\n")
_ANY_LINE: Final = re.compile(_lb_run(_LB))
_ANY_BLANK_RUN: Final = re.compile(_lb_run(_LB, b"++"))
_ANY_DEF_START: Final = _def_start(_LB)
_LB_FLAGS: Final = _flag_table(b"\r\n")

_WS_ONLY: Final = re.compile(rb"(?:%s|[\r\n])*+" % _HWS1)

# ---------------------------------------------------------------------------------------------
# public API


def sentence_ends(data: bytes, lang: str) -> np.ndarray:
    """Byte offsets (int64, exclusive, strictly increasing, last == ``len(data)``) where the
    sentences of ``data`` end; see the module docstring for the rules.

    For ``lang == "code"`` the pieces are blocks (definitions, blank-line separated paragraphs),
    never cut inside a line; ``line_ends`` cuts a block that is still too long."""
    if lang not in LANGS:
        raise ValueError(f"unknown lang {lang!r}: expected one of {LANGS}")
    data = bytes(data)
    if not data:
        return np.zeros(0, dtype=np.int64)
    ends = _code_cuts(data) if lang == "code" else _text_ends(data, lang)
    return _finish(ends, data)


def line_ends(data: bytes) -> np.ndarray:
    """Offsets after every run of line breaks: the finest cut allowed in code (any language).

    Blank lines holding only spaces join the run, so no piece is a whitespace-only line."""
    data = bytes(data)
    return _finish(_line_run_ends_large(data), data)


def split(text: str, lang: str) -> list[str]:
    """The sentences of ``text`` as strings; ``"".join(split(text, lang)) == text`` always.

    Lone surrogates survive the round trip ("surrogatepass"): their three bytes match no pattern,
    so no cut falls inside one."""
    data = text.encode("utf-8", "surrogatepass")
    start = 0
    pieces: list[str] = []
    for end in sentence_ends(data, lang).tolist():
        pieces.append(data[start:end].decode("utf-8", "surrogatepass"))
        start = end
    return pieces


# ---------------------------------------------------------------------------------------------
# scanning


def _positions(data: bytes, flags: bytes) -> np.ndarray:
    """Offsets of the bytes that ``flags`` (from ``_flag_table``) marks.

    ``bytes.translate`` then ``flatnonzero`` on the 0/1 bytes read as booleans is several times
    faster than numpy fancy indexing with a lookup table."""
    return np.flatnonzero(np.frombuffer(data.translate(flags), dtype=np.bool_))


def _match_ends(matches: Iterable[re.Match[bytes]]) -> np.ndarray:
    """End offsets of ``matches`` as int64 (one Python step per match)."""
    return np.array([m.end() for m in matches], dtype=np.int64)


def _matches_at(
    pattern: re.Pattern[bytes], data: bytes, starts: list[int]
) -> Iterator[re.Match[bytes]]:
    """``pattern.finditer(data)``, trying only the given start offsets.

    It equals finditer as long as no match can start elsewhere: a candidate inside the previous
    match is skipped, as finditer resumes after that match."""
    last = 0
    for pos in starts:
        if pos >= last:
            m = pattern.match(data, pos)
            if m is not None:
                last = m.end()
                yield m


def _scan(pattern: re.Pattern[bytes], data: bytes, starts: list[int]) -> list[int]:
    """The ends of ``_matches_at``, inlined: this is the hot loop of the text modes."""
    ends: list[int] = []
    last = 0
    match = pattern.match
    for pos in starts:
        if pos < last:
            continue
        m = match(data, pos)
        if m is not None:
            last = m.end()
            ends.append(last)
    return ends


def _line_run_ends_small(data: bytes) -> list[int]:
    """Ends of the runs of line breaks (``_lb_run``), one re match per run."""
    if b"\r" in data:
        return _scan(_ANY_LINE, data, _positions(data, _LB_FLAGS).tolist())
    return [m.end() for m in _LF_LINE.finditer(data)]


def _line_run_ends_large(data: bytes) -> np.ndarray:
    """The same as ``_line_run_ends_small``, without a Python step per line when it can."""
    if b"\r" in data:
        return np.array(_line_run_ends_small(data), dtype=np.int64)
    # Every "\n" ends a run unless a blank line (few, found by re's literal search) follows.
    after_lf = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A) + 1
    keep = np.ones(after_lf.size, dtype=np.bool_)
    keep[np.searchsorted(after_lf, _match_ends(_LF_BEFORE_BLANK_LINE.finditer(data)))] = False
    return after_lf[keep]


def _text_ends(data: bytes, lang: str, small: bool | None = None) -> np.ndarray:
    """Sentence ends for zh/en: the certain ones, the regex matches at the candidates, and the ends
    of the line-break runs. ``small`` picks the candidate finder (tests force each one).

    Line breaks are left out of the candidates: wherever a run of them is, some match ends right
    after it (the tail of a terminator before it, or a bare line-break match), so the ends of the
    runs can be listed directly, as ``line_ends`` does. A match ending at a certain terminator or
    at a line break may so be found twice."""
    if small is None:
        small = len(data) < _SMALL_TEXT
    pattern = _TEXT_PATTERNS[lang]
    if small:
        certain, starts = _candidates_small(data, lang)
        found = certain + _scan(pattern, data, starts) + _line_run_ends_small(data)
        return np.array(sorted(set(found)), dtype=np.int64)
    certain, starts = _candidates_large(data, lang)
    found = np.array(certain + _scan(pattern, data, starts), dtype=np.int64)
    return np.unique(np.concatenate((found, _line_run_ends_large(data))))


def _code_cuts(data: bytes) -> np.ndarray:
    """Block cuts: after each run of blank lines and before each top-level definition (with its
    decorators and comments). All are line starts, so no cut falls inside a line."""
    first = _LEAD_AT_START.match(data).end()
    if b"\r" in data:
        starts = _positions(data, _LB_FLAGS)
        blank_ends = np.array(_scan(_ANY_BLANK_RUN, data, starts.tolist()), dtype=np.int64)
        defs = _matches_at(_ANY_DEF_START, data, starts[starts >= first].tolist())
    else:
        blank_ends = _match_ends(_LF_BLANK_RUN.finditer(data))
        defs = _LF_DEF_START.finditer(data, first)
    return np.union1d(blank_ends, _definition_cuts(defs))


def _definition_cuts(matches: Iterable[re.Match[bytes]]) -> np.ndarray:
    """Line starts of the definition matches that found a definition (a comment run may not)."""
    return np.array(
        [m.end("lb") for m in matches if m.group("lead") is None or m.group("def") is not None],
        dtype=np.int64,
    )


def _finish(ends: np.ndarray, data: bytes) -> np.ndarray:
    """Close the last piece at ``len(data)`` and fold leading whitespace into the first piece.

    Leading blank lines are the only whitespace-only piece the patterns can produce (elsewhere
    whitespace sticks to a line break or to the text after it); merging keeps every piece useful."""
    n = len(data)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if ends.size == 0 or ends[-1] != n:
        ends = np.append(ends, np.int64(n))
    if ends.size > 1 and _WS_ONLY.fullmatch(data, 0, int(ends[0])):
        ends = ends[1:]
    return ends


# ---------------------------------------------------------------------------------------------
# reference: plain finditer over every byte; slow, obviously right; the tests hold the fast paths
# above to it.


def _reference_ends(data: bytes, lang: str) -> np.ndarray:
    data = bytes(data)
    if lang == "code":
        first = _LEAD_AT_START.match(data).end()
        blank = _match_ends(_ANY_BLANK_RUN.finditer(data))
        defs = _definition_cuts(_ANY_DEF_START.finditer(data, first))
        return _finish(np.union1d(blank, defs), data)
    return _finish(_match_ends(_TEXT_PATTERNS[lang].finditer(data)), data)


def _reference_line_ends(data: bytes) -> np.ndarray:
    data = bytes(data)
    return _finish(_match_ends(_ANY_LINE.finditer(data)), data)
