"""Wikitext → prose: ours (corpus.sources.wikitext) side by side with mwparserfromhell's ``strip_code()``.

    PYTHONPATH=. python bench/wiki_text.py [DUMP.xml[.bz2]] [--tables drop|text] [--json OUT]

On the article pages (namespace 0, no redirects) of a real dump fragment — by default the one committed
under ``tests/data/real/wiki/`` (real enwiki pages, CC BY-SA; see its README) — it prints, for both:

- **markup left**: residual ``{{``, ``}}``, ``[[``, ``]]``, ``|``, ``<ref``, other tags, ``=``-heading lines,
  table markup, bold/italic quotes, entities, ``thumb|``/``File:``/``Category:`` leftovers, per 1,000
  characters of output;
- **prose kept**: the share of prose probes found in the output — runs of 6 words taken from the
  article's paragraphs by an independent, crude reading of the wikitext (links as their labels, every
  template, ref, table and tag a cut that no probe spans), so neither tool's own rules decide what prose is;
- **reference-section text kept**: the share of probes from See also / References / External links …
  sections found in the output, and their characters per 1,000 of output;
- **template values kept**: the share of the numbers of ``{{convert|N|…}}`` and the years of date
  templates (``{{birth date|YYYY|…}}``…) in the prose part whose value is in the output (strip_code
  drops every template, leaving "At , Alabama has");
- output size and speed (MB of wikitext per second, with the ratio of the two).

Then one line per figure says whether ours is better or worse. ``tests/test_wikitext.py`` asserts on
the same figures (:func:`compare`), with margins, not timings.
"""

from __future__ import annotations

import argparse
import bz2
import html
import json
import re
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from corpus.sources.wikitext import REFERENCE_SECTIONS, strip_wikitext

ROOT = Path(__file__).resolve().parent.parent
FRAGMENT = ROOT / "tests" / "data" / "real" / "wiki" / "enwiki-fragment-pages-articles.xml.bz2"

# What counts as markup left in prose output; "|" inside table rows kept on purpose (tables: text)
# is counted too, so compare with tables: drop.
MARKUP: dict[str, re.Pattern[str]] = {
    "{{ }}": re.compile(r"\{\{|\}\}"),
    "[[ ]]": re.compile(r"\[\[|\]\]"),
    "|": re.compile(r"\|"),
    "<ref": re.compile(r"<ref|</ref", re.I),
    "other tags": re.compile(r"</?(?!ref)[a-zA-Z][a-zA-Z0-9]*\b[^<>]*>"),
    "= heading": re.compile(r"^[ \t]*=+[^=\n]+=+[ \t]*$", re.M),
    "table": re.compile(r"\{\||\|\}|^[ \t]*\|[-+]|^[ \t]*!", re.M),
    "'' quotes": re.compile(r"'{2,}"),
    "&entity;": re.compile(r"&(?:#\d+|#x[0-9a-fA-F]+|[a-zA-Z]+);"),
    "file/category": re.compile(r"\b(?:thumb|thumbnail|upright|left|right|center)\|"
                                r"|\b(?:File|Image|Category):", re.I),
    "__MAGIC__": re.compile(r"__[A-Z]{3,}__"),
    # holes a dropped template leaves: "Albedo ()", "（；）", "(, born", "At , Alabama"
    "holes ( ) ,": re.compile(r"\([\s,;]*\)|（[\s,;，；、]*）|[(（][ \t]*[,;，；]|(?<=\w) ,(?= \w)"),
}

_NS = re.compile(r"^\{[^}]*\}")
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_REFS = re.compile(r"<ref\b[^>]*/\s*>|<ref\b[^>]*>.*?</ref\s*>", re.I | re.S)
_BLOCK_TAGS = re.compile(r"<(math|gallery|timeline|syntaxhighlight|source|score|chem|imagemap)\b.*?</\1\s*>", re.I | re.S)
_HEADING = re.compile(r"^[ \t]*(={1,6})(.+?)\1[ \t]*$", re.M)
_LINK = re.compile(r"\[\[([^\[\]|]*)(?:\|([^\[\]]*))?\]\]")
_EXTERNAL = re.compile(r"\[(?:https?:|//)[^\s\]]*\s*([^\]]*)\]")
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>")
_CUT = "\x00"
_FILE_PREFIX = re.compile(r"^\s*:?\s*(file|image|category|media|wikipedia|wp|help)\s*:", re.I)


# --------------------------------------------------------------------------- input


def pages(path: Path) -> Iterator[tuple[str, str]]:
    """``(title, wikitext)`` of every article page (namespace 0, not a redirect) of a dump."""
    f = bz2.open(path) if path.name.endswith(".bz2") else open(path, "rb")
    with f:
        for _, elem in ET.iterparse(f):
            if _NS.sub("", elem.tag) != "page":
                continue
            fields = {_NS.sub("", c.tag): c for c in elem}
            text = next((c.text for c in fields["revision"] if _NS.sub("", c.tag) == "text"), None) \
                if "revision" in fields else None
            if fields.get("ns") is not None and (fields["ns"].text or "0").strip() == "0" \
                    and "redirect" not in fields and text and not text.lstrip().lower().startswith("#redirect"):
                yield fields["title"].text or "", text
            elem.clear()


# --------------------------------------------------------------------------- probes


def _cut_balanced(text: str, opener: str, closer: str) -> str:
    """Every outermost ``opener…closer`` span replaced by a cut (unmatched tokens too)."""
    token = re.compile(re.escape(opener) + "|" + re.escape(closer))
    out, depth, last = [], 0, 0
    for m in token.finditer(text):
        if m.group() == opener:
            if depth == 0:
                out.append(text[last:m.start()])
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                out.append(_CUT)
                last = m.end()
    out.append(text[last:] if depth == 0 else _CUT)
    return "".join(out)


def _cut_files(text: str) -> str:
    """Every outermost ``[[File:…]]`` / ``[[Image:…]]`` / ``[[Category:…]]`` (captions hold links) a cut."""
    out, stack, last = [], [], 0
    for m in re.finditer(r"\[\[|\]\]", text):
        if m.group() == "[[":
            stack.append(m.start())
        elif stack:
            start = stack.pop()
            if not stack and start >= last and _FILE_PREFIX.match(text[start + 2:start + 40]):
                out.append(text[last:start] + _CUT)
                last = m.end()
    out.append(text[last:])
    return "".join(out)


def _crude(text: str) -> str:
    """An independent, crude reading: links as labels, every template / table / ref / tag / file a cut."""
    text = _REFS.sub(_CUT, text)
    text = _BLOCK_TAGS.sub(_CUT, text)
    text = _cut_balanced(text, "{{", "}}")
    text = _cut_balanced(text, "{|", "|}")
    text = _cut_files(text)
    for _ in range(3):   # nested links (file captions) from the inside out
        text = _LINK.sub(lambda m: _CUT if _FILE_PREFIX.match(m.group(1)) else (m.group(2) or m.group(1)), text)
    text = _EXTERNAL.sub(lambda m: m.group(1), text)
    text = re.sub(r"'{2,}", "", text)
    text = _TAG.sub(_CUT, text)
    return html.unescape(text).replace("\u00a0", " ")


def _sections(text: str) -> tuple[str, str]:
    """(prose part, reference part) of a page's wikitext, split at its reference-section headings."""
    prose, refs = [], []
    last, skipping = 0, 0
    for m in _HEADING.finditer(text):
        level = len(m.group(1))
        key = "".join(re.sub(r"'{2,}|<[^>]*>", "", m.group(2)).split()).casefold().rstrip(":")
        if skipping and level <= skipping:
            refs.append(text[last:m.start()])
            last, skipping = m.start(), 0
        if not skipping and key in REFERENCE_SECTIONS:
            prose.append(text[last:m.start()])
            last, skipping = m.end(), level
    (refs if skipping else prose).append(text[last:])
    return "".join(prose), "".join(refs)


_VALUE_TEMPLATES = re.compile(r"\{\{\s*(?:convert|cvt)\s*\|\s*([-\d.,]+)\s*\||"
                             r"\{\{\s*(?:start|end|birth|death|film|release) date(?: and age)?\s*\|"
                             r"(?:\s*(?:df|mf)\s*=\s*\w+\s*\|)?\s*(\d{3,4})\s*[|}]", re.I)


def template_values(wikitext: str) -> list[str]:
    """The convert numbers and date-template years of a page's prose part (reference sections aside)."""
    prose, _ = _sections(_COMMENT.sub("", _REFS.sub("", wikitext)))
    return [m.group(1) or m.group(2) for m in _VALUE_TEMPLATES.finditer(prose)]


def probes(wikitext: str) -> tuple[list[str], list[str]]:
    """(prose probes, reference probes) of one page: see the module docstring."""
    text = _COMMENT.sub("", wikitext)
    prose, refs = _sections(text)
    prose_probes: list[str] = []
    for line in _crude(prose).split("\n"):
        if len(line) < 80 or line[:1] in "=*#:;|!{":
            continue   # paragraphs only
        for seg in line.split(_CUT):
            words = seg.strip(" ()[]（）,;:").split()   # brackets a cut leaves empty are not prose
            prose_probes += [" ".join(words[i:i + 6]) for i in range(0, len(words) - 5, 6)]
    ref_probes: list[str] = []
    for line in _crude(refs).split("\n"):
        if _HEADING.match(line):
            continue
        for seg in line.split(_CUT):
            seg = " ".join(seg.strip(" *#:;,.()").split())
            if len(seg) >= 8 and " " in seg:
                ref_probes.append(seg)
    return prose_probes, ref_probes


# --------------------------------------------------------------------------- figures


def strip_code(wikitext: str) -> str:
    import mwparserfromhell

    return mwparserfromhell.parse(wikitext).strip_code()


def markup_counts(text: str) -> Counter[str]:
    return Counter({name: len(p.findall(text)) for name, p in MARKUP.items()})


def _normal(text: str) -> str:
    return " ".join(text.replace("\u00a0", " ").split())


def value_found(value: str, flat: str) -> bool:
    """``value`` (a number, maybe with thousands separators) stands in ``flat`` as a number of its own,
    written with or without separators."""
    plain = value.replace(",", "")
    forms = {value, plain}
    if plain.isdigit():
        forms.add(f"{int(plain):,}")
    return any(re.search(r"(?<![\d,.])" + re.escape(f) + r"(?!\d|,\d)", flat) for f in forms)


def measure(outputs: list[str], page_probes: list[tuple[list[str], list[str]]],
            page_values: list[list[str]] | None = None) -> dict[str, Any]:
    """The figures of one tool's outputs (one per page) against the pages' probes and template values."""
    chars = sum(len(o) for o in outputs)
    marks: Counter[str] = Counter()
    prose_found = prose_all = ref_found = ref_all = ref_chars = 0
    values_found = values_all = 0
    for out, values in zip(outputs, page_values or [[] for _ in outputs]):
        flat = _normal(out)
        values_all += len(values)
        values_found += sum(1 for v in values if value_found(v, flat))
    for out, (prose, refs) in zip(outputs, page_probes):
        marks.update(markup_counts(out))
        flat = _normal(out)
        prose_all += len(prose)
        prose_found += sum(1 for p in prose if p in flat)
        ref_all += len(refs)
        hits = [r for r in refs if r in flat]
        ref_found += len(hits)
        ref_chars += sum(len(r) for r in hits)
    per_k = 1000 / max(chars, 1)
    return {
        "chars": chars,
        "markup_per_1k": round(sum(marks.values()) * per_k, 3),
        "markup": {k: round(v * per_k, 3) for k, v in sorted(marks.items())},
        "prose_kept": round(prose_found / max(prose_all, 1), 4),
        "prose_probes": prose_all,
        "reference_kept": round(ref_found / max(ref_all, 1), 4),
        "reference_probes": ref_all,
        "reference_chars_per_1k": round(ref_chars * per_k, 3),
        "template_values_kept": round(values_found / max(values_all, 1), 4),
        "template_values": values_all,
    }


def compare(path: Path = FRAGMENT, tables: str = "drop") -> dict[str, Any]:
    """Both tools on every article page of ``path``: ``{"ours": figures, "strip_code": figures, "pages": n}``."""
    items = list(pages(path))
    page_probes = [probes(raw) for _, raw in items]
    page_values = [template_values(raw) for _, raw in items]
    mb = sum(len(raw.encode()) for _, raw in items) / 1e6
    t0 = time.perf_counter()
    ours = [strip_wikitext(raw, tables=tables, lang="en") for _, raw in items]   # type: ignore[arg-type]
    t1 = time.perf_counter()
    theirs = [strip_code(raw) for _, raw in items]
    t2 = time.perf_counter()
    result = {"pages": len(items), "wikitext_mb": round(mb, 3), "tables": tables,
              "ours": measure(ours, page_probes, page_values), "strip_code": measure(theirs, page_probes, page_values)}
    result["ours"]["mb_per_s"] = round(mb / max(t1 - t0, 1e-9), 2)
    result["strip_code"]["mb_per_s"] = round(mb / max(t2 - t1, 1e-9), 2)
    return result


def _verdicts(r: dict[str, Any]) -> list[str]:
    o, t = r["ours"], r["strip_code"]
    lines = []

    def say(what: str, ours: float, theirs: float, higher_is_better: bool) -> None:
        if ours == theirs:
            lines.append(f"{what}: the same ({ours})")
            return
        better = (ours > theirs) == higher_is_better
        lines.append(f"{what}: ours {'better' if better else 'WORSE'} ({ours} vs {theirs})")

    say("markup left per 1k chars", o["markup_per_1k"], t["markup_per_1k"], False)
    say("prose kept", o["prose_kept"], t["prose_kept"], True)
    say("reference-section probes kept", o["reference_kept"], t["reference_kept"], False)
    say("template values kept", o["template_values_kept"], t["template_values_kept"], True)
    say("speed MB/s", o["mb_per_s"], t["mb_per_s"], True)
    for k in o["markup"]:
        if o["markup"][k] > t["markup"][k]:
            lines.append(f"  markup {k!r}: ours WORSE ({o['markup'][k]} vs {t['markup'][k]} per 1k)")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("dump", nargs="?", type=Path, default=FRAGMENT)
    ap.add_argument("--tables", choices=("drop", "text"), default="drop")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    r = compare(args.dump, args.tables)
    o, t = r["ours"], r["strip_code"]
    print(f"{args.dump.name}: {r['pages']} article pages, {r['wikitext_mb']} MB of wikitext, tables: {args.tables}")
    print(f"{'':32}{'ours':>12}{'strip_code':>12}")
    rows = [("output chars", "chars"), ("markup left / 1k chars", "markup_per_1k"), ("prose kept (share)", "prose_kept"),
            ("reference probes kept (share)", "reference_kept"), ("reference chars / 1k", "reference_chars_per_1k"),
            ("template values kept (share)", "template_values_kept"),
            ("speed (MB/s)", "mb_per_s")]
    for label, key in rows:
        print(f"{label:32}{o[key]:>12}{t[key]:>12}")
    print(f"{'  markup, by kind (per 1k):':32}")
    for k in o["markup"]:
        print(f"{'    ' + k:32}{o['markup'][k]:>12}{t['markup'][k]:>12}")
    print(f"probes: {o['prose_probes']} prose, {o['reference_probes']} reference, {o['template_values']} template values; "
          f"speed ratio ours/strip_code: {o['mb_per_s'] / max(t['mb_per_s'], 1e-9):.2f}")
    for line in _verdicts(r):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
