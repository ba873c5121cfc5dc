"""A small linear text classifier: logistic regression over which words and word pairs occur.

What the ``spam`` quality rule scores English documents with (``corpus/data/spam_en_model.tsv``), and
what ``python -m corpus train-classifier`` fits on a user's own examples, in the way GPT-3's and
CCNet's quality classifiers are fitted on "keep" and "drop" samples. Spam written as ordinary prose
has no shape a density rule can see; its vocabulary ("remove you from our list", "$", "order") gives
it away, and a linear model over that vocabulary is both accurate and readable: the model file is
one ``weight<TAB>feature`` line per word or word pair, largest first.

Features are binary (a word counts once however often it occurs, as a SpamAssassin body rule hits
once): lower-cased runs of letters and digits (an apostrophe inside a word kept), ``$`` and ``!``
as words of their own, and every pair of consecutive words. The score is the log-odds
``bias + sum(weights of the features present)``; a rule compares it with a threshold.

Training is full-batch Adam on the L2-regularised, class-balanced logistic loss, over the features
that occur in at least ``min_df`` training documents; deterministic (no sampling), numpy only.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common import atomic
from common.errors import InputDataError
from common.jsonl import iter_jsonl
from corpus.errors import CorpusError

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[$!]")


def features(text: str) -> set[str]:
    """The words and consecutive word pairs of ``text`` (lower-cased), each once."""
    words = _TOKEN.findall(text.lower().replace("\u2019", "'"))
    out = set(words)
    out.update(map(" ".join, zip(words, words[1:])))
    return out


@dataclass(frozen=True)
class LinearClassifier:
    weights: dict[str, float]
    bias: float

    def score(self, text: str) -> float:
        """The log-odds that ``text`` is of the positive class."""
        get = self.weights.get
        return self.bias + sum(get(f, 0.0) for f in features(text))

    def probability(self, text: str) -> float:
        return 1.0 / (1.0 + math.exp(-self.score(text)))


@dataclass(frozen=True)
class TrainConfig:
    l2: float = 1.0          # on the sum of squared weights, per training document
    min_df: int = 3          # a feature in fewer training documents is not learned from
    steps: int = 300         # full-batch Adam steps
    learning_rate: float = 0.1
    keep: float = 0.05       # weights smaller than this either way are left out of the model


def train_classifier(positive: Iterable[str], negative: Iterable[str],
                     cfg: TrainConfig | None = None) -> LinearClassifier:
    """A classifier that scores texts like ``positive`` above 0 and texts like ``negative`` below.
    The two classes weigh the same whatever their sizes."""
    cfg = cfg or TrainConfig()
    docs = [features(t) for t in positive]
    n_pos = len(docs)
    docs += [features(t) for t in negative]
    n = len(docs)
    if n_pos == 0 or n_pos == n:
        raise CorpusError(f"train-classifier: need examples of both classes (got {n_pos} positive, "
                          f"{n - n_pos} negative)")
    df = Counter(f for d in docs for f in d)
    names = sorted(f for f, c in df.items() if c >= cfg.min_df)
    index = {f: i for i, f in enumerate(names)}
    rows, cols = [], []
    for i, d in enumerate(docs):
        ids = [index[f] for f in d if f in index]
        rows.extend([i] * len(ids))
        cols.extend(ids)
    row = np.asarray(rows, dtype=np.int64)
    col = np.asarray(cols, dtype=np.int64)
    y = np.zeros(n)
    y[:n_pos] = 1.0
    sample_weight = np.where(y == 1.0, 0.5 / (n_pos / n), 0.5 / (1 - n_pos / n)) / n
    # one parameter vector: the feature weights, then the bias (not regularised)
    theta = np.zeros(len(names) + 1)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for step in range(1, cfg.steps + 1):
        w, b = theta[:-1], theta[-1]
        z = np.bincount(row, weights=w[col], minlength=n) + b
        residual = (_sigmoid(z) - y) * sample_weight
        grad = np.empty_like(theta)
        grad[:-1] = np.bincount(col, weights=residual[row], minlength=len(names)) + cfg.l2 * w / n
        grad[-1] = residual.sum()
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        theta -= cfg.learning_rate * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
    w = theta[:-1]
    kept = {names[i]: round(float(w[i]), 4) for i in np.flatnonzero(np.abs(w) >= cfg.keep)}
    return LinearClassifier(kept, round(float(theta[-1]), 4))


def read_texts(path: str | Path, key: str = "text") -> list[str]:
    """The ``key`` string of every record of a JSON-lines file; a bad line is named by file and line."""
    out = []
    for lineno, record in iter_jsonl(path):
        value = record.get(key)
        if not isinstance(value, str):
            what = "no key" if value is None else f"a JSON {type(value).__name__} in key"
            raise InputDataError(f"{path}:{lineno}: {what} {key!r} (the text to train on; --text-key names it)")
        out.append(value)
    return out


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))   # no overflow warning for large |z|


def save_classifier(clf: LinearClassifier, path: str | Path, header: str = "") -> None:
    """``path`` as a text file: ``header`` as '#' comments, ``@bias B``, then ``weight<TAB>feature``
    lines, largest |weight| first. Written whole or not at all."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    lines.append(f"@bias {clf.bias}")
    for name, weight in sorted(clf.weights.items(), key=lambda kv: (-abs(kv[1]), kv[0])):
        lines.append(f"{weight}\t{name}")
    atomic.write_text(path, "\n".join(lines) + "\n")


def load_classifier(path: str | Path) -> LinearClassifier:
    """Read a file written by :func:`save_classifier`; a bad line is named by file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise CorpusError(f"{path}: cannot read the classifier ({e.strerror or e})") from None
    weights: dict[str, float] = {}
    bias = None
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            if line.startswith("@bias "):
                bias = float(line[6:])
                continue
            weight, name = line.split("\t")
            weights[name] = float(weight)
        except ValueError:
            raise CorpusError(f"{path}:{lineno}: expected 'WEIGHT<TAB>FEATURE' or '@bias B', "
                              f"got {line[:80]!r}") from None
    if bias is None:
        raise CorpusError(f"{path}: no '@bias B' line: not a classifier written by corpus.classifier")
    return LinearClassifier(weights, bias)
