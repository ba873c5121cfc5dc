"""``python -m corpus calibrate --labelled FILE [--config filters.yaml]``: how the quality rules do on
documents a person labelled.

The labelled file is JSON lines, one document a line: ``{"text", "lang": "zh"|"en", "label":
"clean"|"junk"|"harmful", "genre", "source"}`` (``genre`` and ``source`` are free text used to group
the figures). Each document is cleaned as the build cleans it (:func:`corpus.clean.clean`) and then
checked by every rule of :mod:`corpus.quality`, not only the first it fails, so a rule's figures do
not depend on the rules before it:

- per rule: the share of clean documents it would drop (false positives), per language and genre,
  and the share of junk documents it catches (recall);
- overall (first failing rule, as the build decides): clean documents dropped per language, junk
  dropped, and the harmful rule's precision and recall against the ``harmful`` label.

``tests/data/real/calibration.jsonl`` is the set the shipped thresholds were measured on; run this on
your own sample before you change ``configs/corpus/filters.yaml``. A bad line (not JSON, a missing key,
an unknown label or language) fails naming ``FILE:LINE``.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

from common.errors import InputDataError
from common.jsonl import BadLine, iter_jsonl
from corpus.clean import clean
from corpus.quality import RULE_NAMES, QualityConfig, failing_rules

LABELS = ("clean", "junk", "harmful")
LANGS = ("zh", "en")
REQUIRED = ("text", "lang", "label")


@dataclass(frozen=True)
class Labelled:
    text: str
    lang: str
    label: str
    genre: str
    source: str
    where: str   # FILE:LINE


def load_labelled(path: str | os.PathLike) -> list[Labelled]:
    """Every record of a labelled JSON-lines file; the first bad one raises ``FILE:LINE: why``."""
    out = []
    for lineno, obj in iter_jsonl(path, on_error="raise"):
        assert not isinstance(obj, BadLine)
        here = f"{path}:{lineno}"
        missing = [k for k in REQUIRED if k not in obj]
        if missing:
            raise InputDataError(f"{here}: missing key(s) {', '.join(missing)} (a record needs "
                                 f"{', '.join(REQUIRED)}; genre and source are optional)")
        if not isinstance(obj["text"], str):
            raise InputDataError(f"{here}: text is a JSON {type(obj['text']).__name__}, not a string")
        if obj["lang"] not in LANGS:
            raise InputDataError(f"{here}: lang {obj['lang']!r} is not one of {', '.join(LANGS)}")
        if obj["label"] not in LABELS:
            raise InputDataError(f"{here}: label {obj['label']!r} is not one of {', '.join(LABELS)}")
        out.append(Labelled(obj["text"], obj["lang"], obj["label"], str(obj.get("genre") or "-"),
                            str(obj.get("source") or "-"), here))
    if not out:
        raise InputDataError(f"{path}: no labelled records")
    return out


def _share(hit: int, total: int) -> float | None:
    return hit / total if total else None


def _failing_with(module: Any) -> Any:
    """``failing_rules`` for a quality module that has none (an older corpus/quality.py, loaded by
    bench/quality.py to compare): its rule table run to the end."""
    def failing(text: str, lang: str, cfg: Any) -> list[str]:
        d = module._Doc(text, lang)
        return [name for name, langs, fails in module.RULES_PROSE if lang in langs and fails(d, cfg)]
    return failing


def evaluate(records: list[Labelled], cfg: Any = None, *, clean_first: bool = True,
             module: Any = None) -> dict[str, Any]:
    """The figures :func:`format_figures` prints, as a JSON-able dict (the tests and bench read it).
    ``module``: another implementation of corpus.quality to measure (its ``RULE_NAMES``,
    ``RULES_PROSE`` and ``_Doc``), with ``cfg`` one of its configs."""
    failing_, rule_names = failing_rules, RULE_NAMES
    if module is not None:
        rule_names = module.RULE_NAMES
        failing_ = getattr(module, "failing_rules", None) or _failing_with(module)
    cfg = cfg or QualityConfig()
    groups: Counter = Counter()            # (lang, label, genre) -> documents
    first: Counter = Counter()             # (lang, label, genre) -> documents dropped by some rule
    rule_hits: dict[str, Counter] = defaultdict(Counter)   # rule -> (lang, label, genre) -> documents it fails
    first_rule: Counter = Counter()        # (lang, label, rule) -> documents whose first failing rule it is
    dropped_examples: dict[tuple[str, str], list[str]] = defaultdict(list)
    harmful_fired = harmful_true = harmful_label = harmful_clean = 0
    for r in records:
        text = clean(r.text, r.lang) if clean_first else r.text
        key = (r.lang, r.label, r.genre)
        groups[key] += 1
        fails = failing_(text, r.lang, cfg)
        rule = fails[0] if fails else None   # what check() returns: the first failing rule
        if rule is not None:
            first[key] += 1
            first_rule[(r.lang, r.label, rule)] += 1
            if r.label == "clean" and len(dropped_examples[(r.lang, rule)]) < 3:
                dropped_examples[(r.lang, rule)].append(r.where)
        for name in fails:
            rule_hits[name][key] += 1
        harmful_label += r.label == "harmful"
        if "harmful" in fails:
            harmful_fired += 1
            harmful_true += r.label == "harmful"
            harmful_clean += r.label == "clean"

    def total(pred) -> tuple[int, int]:
        keys = [k for k in groups if pred(k)]
        return sum(first[k] for k in keys), sum(groups[k] for k in keys)

    overall: dict[str, Any] = {}
    for lang in LANGS:
        d, n = total(lambda k, lang=lang: k[0] == lang and k[1] == "clean")
        overall[f"clean_dropped_{lang}"] = _share(d, n)
        overall[f"clean_{lang}"] = n
    d, n = total(lambda k: k[1] == "junk")
    overall["junk_recall"], overall["junk"] = _share(d, n), n
    for lang in LANGS:
        d, n = total(lambda k, lang=lang: k[0] == lang and k[1] == "junk")
        overall[f"junk_recall_{lang}"] = _share(d, n)
    d, n = total(lambda k: k[1] == "harmful")
    overall["harmful_dropped"], overall["harmful"] = _share(d, n), n
    # The lexicon holds spam vocabulary too ("click here", "payday loans"), so a junk spam mail it
    # flags is a right call: precision is the share of flagged documents that are not clean; the
    # strict figure counts only those labelled harmful.
    overall["harmful_precision"] = _share(harmful_fired - harmful_clean, harmful_fired)
    overall["harmful_precision_strict"] = _share(harmful_true, harmful_fired)
    overall["harmful_clean_flagged"] = harmful_clean
    overall["harmful_recall"] = _share(harmful_true, harmful_label)
    overall["harmful_flagged"] = harmful_fired

    per_group = [{"lang": k[0], "label": k[1], "genre": k[2], "documents": groups[k], "dropped": first[k]}
                 for k in sorted(groups)]
    rules = []
    for name in rule_names:
        hits = rule_hits.get(name, Counter())
        fp = {f"{k[0]}/{k[2]}": _share(hits[k], groups[k]) for k in sorted(groups) if k[1] == "clean"}
        c_hit = sum(v for k, v in hits.items() if k[1] == "clean")
        c_all = sum(v for k, v in groups.items() if k[1] == "clean")
        j_hit = sum(v for k, v in hits.items() if k[1] == "junk")
        j_all = sum(v for k, v in groups.items() if k[1] == "junk")
        rules.append({"rule": name, "false_positive_rate": _share(c_hit, c_all), "false_positive_by_genre": fp,
                      "junk_recall": _share(j_hit, j_all),
                      "first_rule_drops": {f"{lang}/{label}": first_rule[(lang, label, name)]
                                           for lang in LANGS for label in LABELS if first_rule[(lang, label, name)]},
                      "clean_examples": {lang: dropped_examples.get((lang, name), []) for lang in LANGS
                                         if dropped_examples.get((lang, name))}})
    return {"documents": len(records), "overall": overall, "groups": per_group, "rules": rules}


def _pct(x: float | None) -> str:
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def format_figures(fig: dict[str, Any]) -> str:
    o = fig["overall"]
    lines = [f"{fig['documents']} labelled documents", "",
             "overall (a document is dropped by the first rule it fails, as in a build):",
             f"  clean zh dropped   {_pct(o['clean_dropped_zh'])}  of {o['clean_zh']}",
             f"  clean en dropped   {_pct(o['clean_dropped_en'])}  of {o['clean_en']}",
             f"  junk dropped       {_pct(o['junk_recall'])}  of {o['junk']}  "
             f"(zh {_pct(o['junk_recall_zh'])}, en {_pct(o['junk_recall_en'])})",
             f"  harmful dropped    {_pct(o['harmful_dropped'])}  of {o['harmful']}",
             f"  harmful rule: precision {_pct(o['harmful_precision'])} (flagged and not clean; "
             f"labelled harmful: {_pct(o['harmful_precision_strict']).strip()}), recall {_pct(o['harmful_recall'])}, "
             f"{o['harmful_flagged']} flagged, {o['harmful_clean_flagged']} of them clean", "",
             "per group (lang / label / genre): documents, dropped by any rule",
             ]
    for g in fig["groups"]:
        lines.append(f"  {g['lang']} {g['label']:<8} {g['genre']:<22} {g['documents']:>5} {g['dropped']:>5}"
                     f"  {_pct(g['dropped'] / g['documents'])}")
    lines += ["", "per rule, on its own: false positives on clean documents, recall on junk",
              f"  {'rule':<20} {'clean FP':>8} {'junk':>7}  clean FP by lang/genre (only where > 0)"]
    for r in fig["rules"]:
        fps = ", ".join(f"{k} {_pct(v).strip()}" for k, v in r["false_positive_by_genre"].items() if v)
        lines.append(f"  {r['rule']:<20} {_pct(r['false_positive_rate']):>8} {_pct(r['junk_recall']):>7}  {fps}")
        for lang, where in r["clean_examples"].items():
            lines.append(f"      first rule for clean {lang}: {'; '.join(where)}")
    return "\n".join(lines)


def main(labelled: str, config: str | None = None) -> dict[str, Any]:
    from corpus.quality import load_quality_config

    return evaluate(load_labelled(labelled), load_quality_config(config))


def old_rules(tmp: str | os.PathLike) -> QualityConfig:
    """The zh side of the rules as they were before issue 13, in today's code (the tests compare
    with it; bench/quality.py also runs the old module itself): zh n-grams over every non-space
    character with Gopher's word thresholds, cjk_ratio 0.3, no punctuation or line-ending rules,
    and the shipped harmful lexicons without their negative-weight context lines (written to
    ``tmp``; the spam phrases added with them stay), no spam score. The en changes to word
    statistics (layout tokens and lines, dotted leaders, sentence ends inside lines) have no switch
    and apply here too."""
    from importlib import resources
    from pathlib import Path

    files = {}
    for lang in LANGS:
        shipped = (resources.files("corpus") / "data" / f"harmful_{lang}.txt").read_text(encoding="utf-8")
        kept = [line for line in shipped.splitlines() if not re.search(r"\s@-\d", line)]
        path = Path(tmp) / f"harmful_{lang}_old.txt"
        path.write_text("\n".join(kept) + "\n", encoding="utf-8")
        files[lang] = str(path)
    return QualityConfig(ngram_units_zh="chars", top_ngram_max_zh=[0.20, 0.18, 0.16],
                         dup_ngram_max_zh=[0.15, 0.14, 0.13, 0.12, 0.11, 0.10], min_cjk_ratio=0.3,
                         min_punct_per_cjk=0.0, min_terminal_lines_en=0.0, max_spam_score=float("inf"),
                         harmful_zh_file=files["zh"], harmful_en_file=files["en"])
