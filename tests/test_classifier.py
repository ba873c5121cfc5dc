"""corpus.classifier: the linear text classifier behind the spam rule and `corpus train-classifier`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from corpus.classifier import (LinearClassifier, TrainConfig, features, load_classifier, save_classifier,
                               train_classifier)
from corpus.errors import CorpusError

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "data" / "real" / "calibration.jsonl"


def _real_mail() -> tuple[list[str], list[str]]:
    """The calibration set's SpamAssassin bodies: (spam, ham), real mail nobody here wrote."""
    spam, ham = [], []
    for line in REAL.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if r["source"].startswith("spamassassin:"):
            (ham if r["label"] == "clean" else spam).append(r["text"])
    return spam, ham


def test_features_are_words_and_word_pairs_each_once() -> None:
    f = features("Click HERE, click here! It’s $5.")
    assert {"click", "here", "click here", "!", "$", "5", "it's", "here click", "$ 5"} <= f
    assert "click here click" not in f and "," not in f


def test_learns_real_spam_from_half_the_mail_and_scores_the_other_half() -> None:
    spam, ham = _real_mail()
    assert len(spam) >= 90 and len(ham) >= 50
    clf = train_classifier(spam[::2], ham[::2], TrainConfig(min_df=2))
    # the held-out half, ranked: the share of (spam, ham) pairs where the spam scores higher (AUC)
    s_spam = [clf.score(t) for t in spam[1::2]]
    s_ham = [clf.score(t) for t in ham[1::2]]
    auc = sum(a > b for a in s_spam for b in s_ham) / (len(s_spam) * len(s_ham))
    assert auc >= 0.9, auc
    assert 0.0 < clf.probability(spam[1]) <= 1.0


def test_training_is_deterministic_and_the_file_round_trips(tmp_path: Path) -> None:
    spam, ham = _real_mail()
    a = train_classifier(spam[:30], ham[:30], TrainConfig(steps=50))
    b = train_classifier(spam[:30], ham[:30], TrainConfig(steps=50))
    assert a == b and a.weights
    path = tmp_path / "m.tsv"
    save_classifier(a, path, "two\nheader lines")
    text = path.read_text(encoding="utf-8").splitlines()
    assert text[:3] == ["# two", "# header lines", f"@bias {a.bias}"]
    weights = [abs(float(line.split("\t")[0])) for line in text[3:]]
    assert weights == sorted(weights, reverse=True)            # strongest features first
    assert load_classifier(path) == a
    assert load_classifier(path).score(spam[0]) == pytest.approx(a.score(spam[0]))


def test_bad_model_files_name_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("@bias 0.5\n1.0\tclick\nnot a weight line\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.tsv:3: expected 'WEIGHT<TAB>FEATURE'"):
        load_classifier(bad)
    bad.write_text("1.0\tclick\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"bad\.tsv: no '@bias B' line"):
        load_classifier(bad)
    with pytest.raises(CorpusError, match=r"nope\.tsv: cannot read"):
        load_classifier(tmp_path / "nope.tsv")
    with pytest.raises(CorpusError, match="both classes"):
        train_classifier(["only spam"], [])


def test_shipped_model_loads_and_separates_the_calibration_mail() -> None:
    # trained without any calibration document (tests/data/real/train_spam_model.py): a held-out check
    from corpus.quality import QualityConfig, spam_score

    cfg = QualityConfig()
    spam, ham = _real_mail()
    assert sum(spam_score(t, cfg) >= cfg.max_spam_score for t in spam) / len(spam) >= 0.9
    assert sum(spam_score(t, cfg) >= cfg.max_spam_score for t in ham) <= 1


def test_cli_trains_on_jsonl_and_reports_bad_lines(tmp_path: Path) -> None:
    spam, ham = _real_mail()
    pos, neg, out = tmp_path / "pos.jsonl", tmp_path / "neg.jsonl", tmp_path / "model.tsv"
    pos.write_text("".join(json.dumps({"text": t}) + "\n" for t in spam[:40]), encoding="utf-8")
    neg.write_text("".join(json.dumps({"body": t}) + "\n" for t in ham[:40]), encoding="utf-8")
    cmd = [sys.executable, "-m", "corpus", "train-classifier", "--positive", str(pos), "--negative", str(neg),
           "--out", str(out), "--steps", "60"]
    run = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 2 and f"{neg}:1: no key 'text'" in run.stderr, run.stderr
    neg.write_text("".join(json.dumps({"body": t}) + "\n" for t in ham[:40]), encoding="utf-8")
    pos.write_text("".join(json.dumps({"body": t}) + "\n" for t in spam[:40]), encoding="utf-8")
    run = subprocess.run(cmd + ["--text-key", "body"], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
    clf = load_classifier(out)
    assert isinstance(clf, LinearClassifier) and "40 positive, 40 negative" in run.stdout
    assert clf.score(spam[50]) > clf.score(ham[50])
