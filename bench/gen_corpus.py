"""Deterministic synthetic bilingual (zh / en / code) corpus for the corpus benchmarks.

    python bench/gen_corpus.py --out DIR --mb 200 [--seed 0] [--procs 2] [--file-mb 50] [--shares zh=1]

Writes ``DIR/part-NNNNN.jsonl`` (JSON lines ``{"id", "text", "lang"}``, UTF-8, ``ensure_ascii=False``)
holding at least ``--mb`` × 10^6 bytes of UTF-8 text, mixed by bytes roughly zh 55 %, en 30 %,
code 15 % (``--shares`` sets other shares: ``zh=1`` for Chinese only, ``code=1`` for code only), then ``DIR/manifest.json`` (files, counts, bytes per language; written last, so its
presence means the corpus is complete). Same seed, same machine ⇒ byte-identical output, whatever
``--procs``: every output file is generated from its own seed ``(seed, file_index)``.

Where the text comes from (nothing is downloaded):

* zh — words drawn by frequency from jieba's bundled dictionary, sentences of 8–40 words ending in
  。！？；, commas inside, occasional quotes “…”/「…」, English terms and numbers; a few sentences of
  hundreds of words (longer than 1024 tokens); paragraphs separated by "\\n"; documents of
  200 B–20 KB (log-normal) and a few long ones up to 200 KB.
* en — Zipf-sampled words from a vocabulary built from the comments and docstrings of the Python
  standard library, capitalised sentences with commas, periods, questions, abbreviations (Dr., e.g.)
  and decimals; paragraphs; same document size distribution.
* code — the Python standard library's sources and the C headers under /usr/include, in sorted
  order, chunked at line boundaries into documents of at most 16 KB. If a corpus needs more code
  than exists, later passes rename identifiers so that no document repeats (near-)exactly.

Generation is vectorised with numpy (sampling, punctuation, document boundaries) and split across
processes by output file.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import re
import sys
import sysconfig
import time
from collections import Counter
from pathlib import Path

import numpy as np

SHARES = {"zh": 0.55, "en": 0.30, "code": 0.15}
CODE_DOC_CHARS = 16_000
FMT_VERSION = 1  # bump when the output for a given seed changes

# --------------------------------------------------------------------------------------------
# shared vocabulary helpers


def _number_pool(rng: np.random.Generator, n: int, thousands: bool) -> list[str]:
    """Numbers as they appear in running text: years, decimals, percentages, counts."""
    out = []
    kinds = rng.integers(0, 6, size=n)
    for k in kinds:
        if k == 0:
            out.append(str(int(rng.integers(1900, 2031))))
        elif k == 1:
            out.append(f"{rng.random() * 10:.2f}")
        elif k == 2:
            out.append(f"{rng.random() * 100:.1f}%")
        elif k == 3:
            v = int(rng.integers(1000, 10_000_000))
            out.append(f"{v:,}" if thousands else str(v))
        elif k == 4:
            out.append(str(int(rng.integers(0, 100))))
        else:
            out.append(f"{rng.random():.{int(rng.integers(1, 5))}f}")
    return out


def _alias_table(weights: np.ndarray, size: int) -> np.ndarray:
    """A lookup table in which item i appears ~ weights[i] / sum * size times (fast sampling)."""
    w = np.asarray(weights, dtype=np.float64)
    counts = np.floor(w / w.sum() * size + 0.5).astype(np.int64)
    counts[np.argmax(w)] += max(0, size - int(counts.sum()))  # keep the table non-empty
    return np.repeat(np.arange(len(w), dtype=np.int32), counts)


class FlatVocab:
    """Strings stored as one UTF-32 code-point array; a token stream renders to text with numpy only."""

    def __init__(self, strings: list[str]) -> None:
        self.strings = strings
        self.lens = np.fromiter((len(t) for t in strings), dtype=np.int64, count=len(strings))
        self.off = np.concatenate([[0], np.cumsum(self.lens)[:-1]]).astype(np.int64)
        self.codes = np.frombuffer("".join(strings).encode("utf-32-le"), dtype=np.uint32)
        self.nbytes = np.fromiter((len(t.encode("utf-8")) for t in strings), dtype=np.float64,
                                  count=len(strings))

    def render(self, toks: np.ndarray, doc_starts: np.ndarray) -> list[str]:
        """Concatenate the strings of ``toks``; cut into documents at token indices ``doc_starts``."""
        lens = self.lens[toks]
        ends = np.cumsum(lens)
        begins = ends - lens
        idx = np.repeat(self.off[toks] - begins, lens) + np.arange(int(ends[-1]) if len(ends) else 0)
        data = self.codes[idx].tobytes()
        cuts = begins[doc_starts].tolist() + [int(ends[-1])]
        return [data[4 * x:4 * y].decode("utf-32-le").rstrip() for x, y in zip(cuts[:-1], cuts[1:])]


# --------------------------------------------------------------------------------------------
# zh


ZH_TERMS = [
    "GPU", "CPU", "AI", "LLaMA", "Python", "Transformer", "API", "Linux", "GitHub", "NLP", "BERT",
    "ChatGPT", "iPhone", "5G", "USB", "HTTP", "Slurm", "CUDA", "PyTorch", "Wi-Fi", "App", "PDF",
    "CEO", "NBA", "DNA", "OpenAI", "Google", "Windows", "JSON", "SQL",
]


class ZhSampler:
    """Token stream per sentence: [open quote] word word，word … word 。[close quote][\\n]."""

    TERM_MASS = 0.008
    NUM_MASS = 0.007

    def __init__(self) -> None:
        import jieba  # only for its bundled dictionary

        path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
        words, freqs = [], []
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[1].isdigit():
                    words.append(parts[0])
                    freqs.append(int(parts[1]))
        freqs = np.asarray(freqs, dtype=np.float64)
        nums = _number_pool(np.random.default_rng(20240601), 2000, thousands=False)
        weights = np.concatenate(
            [
                freqs / freqs.sum() * (1 - self.TERM_MASS - self.NUM_MASS),
                np.full(len(ZH_TERMS), self.TERM_MASS / len(ZH_TERMS)),
                np.full(len(nums), self.NUM_MASS / len(nums)),
            ]
        )
        vocab = words + ZH_TERMS + nums
        self.table = _alias_table(weights, 1 << 23)
        # suffix tokens: "" "，" then terminator × closing quote × paragraph break; opening quotes
        self.term_p = np.array([0.78, 0.06, 0.08, 0.08])
        sufs = ["", "，"]
        for t in ["。", "！", "？", "；"]:
            for c in ["", "”", "」"]:
                for para in ("", "\n"):
                    sufs.append(t + c + para)
        self.suf0 = len(vocab)
        self.pre0 = len(vocab) + len(sufs)
        self.vocab = FlatVocab(vocab + sufs + ["", "“", "「"])
        self.mean_word_bytes = float((self.vocab.nbytes[: len(weights)] * weights).sum() / weights.sum())

    def docs(self, rng: np.random.Generator, target_bytes: int) -> list[str]:
        """A batch of documents totalling about ``target_bytes`` of text."""
        sizes = _doc_sizes(rng, target_bytes)
        mean_sent_words = 24.0
        sent_bytes = mean_sent_words * self.mean_word_bytes + 0.15 * mean_sent_words * 3 + 4
        n_sent = np.maximum(1, np.rint(sizes / sent_bytes)).astype(np.int64)
        S = int(n_sent.sum())
        lengths = rng.integers(8, 41, size=S)
        longs = rng.random(S) < 0.002  # an enumeration with commas only: > 1024 tokens
        lengths[longs] = rng.integers(400, 1500, size=int(longs.sum()))
        W = int(lengths.sum())
        ends = np.cumsum(lengths)
        starts = ends - lengths
        ids = self.table[rng.integers(0, len(self.table), size=W)]
        suf = (rng.random(W) < 1 / 7).astype(np.int64)
        suf[starts] = 0
        term = rng.choice(4, size=S, p=self.term_p)
        quote = np.where(rng.random(S) < 0.06, np.where(rng.random(S) < 0.75, 1, 2), 0)
        para = (rng.random(S) < 0.2).astype(np.int64)
        suf[ends - 1] = 2 + term * 6 + quote * 2 + para
        pre = np.zeros(W, dtype=np.int64)
        pre[starts] = quote
        toks = np.empty(3 * W, dtype=np.int64)
        toks[0::3] = self.pre0 + pre
        toks[1::3] = ids
        toks[2::3] = self.suf0 + suf
        return self.vocab.render(toks, 3 * _doc_first_sentence(starts, n_sent))


# --------------------------------------------------------------------------------------------
# en

EN_ABBREV = ["e.g.", "i.e.", "Dr.", "Mr.", "Mrs.", "etc.", "vs.", "U.S.", "Fig.", "approx.", "No.", "St."]
_COMMENT_RE = re.compile(r"#[ \t]*([^\n]*)")
_DOCSTRING_RE = re.compile(r'"""(.*?)"""', re.S)
_WORD_RE = re.compile(r"\b[A-Za-z][a-z]+(?:'[a-z]+)?\b|\b[aAI]\b")
EN_ACRONYMS = ["HTTP", "URL", "API", "CPU", "UTF", "ASCII", "JSON", "XML", "HTML", "SQL", "TCP", "IP",
               "OS", "IO", "GUI", "RFC", "PEP", "UNIX", "POSIX", "NASA", "UK", "EU", "PhD", "AI"]


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def python_sources() -> list[Path]:
    root = stdlib_root()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__", "dist-packages"))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".py"))
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def build_en_vocab(max_words: int = 30_000) -> list[str]:
    """English words of the standard library's comments and docstrings, most frequent first."""
    counts: Counter[str] = Counter()
    for path in python_sources():
        rel = path.relative_to(stdlib_root()).as_posix()
        if rel.startswith("encodings/"):
            continue  # codec tables: character names, not prose
        try:
            src = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for m in _DOCSTRING_RE.finditer(src):
            counts.update(_WORD_RE.findall(m.group(1)))
        for m in _COMMENT_RE.finditer(src):
            counts.update(_WORD_RE.findall(m.group(1)))
    # Fold "The"/"the": keep the capitalised form only for words that are mostly capitalised
    # (proper nouns such as Python, Unix); all-caps acronyms stay as they are.
    folded: Counter[str] = Counter()
    for w, c in counts.items():
        if len(w) > 20:
            continue
        low = w.lower()
        if w == low or counts.get(low, 0) >= counts.get(low.capitalize(), 0):
            folded[low] += c
        else:
            folded[low.capitalize()] += c
    ranked = sorted((w for w, c in folded.items() if c >= 2), key=lambda w: (-folded[w], w))
    return ranked[:max_words]


class EnSampler:
    """Token stream: Capitalised word, words with " " / ", " after them, a terminator; "\\n" paragraphs."""

    ABBREV_MASS = 0.006
    NUM_MASS = 0.01

    def __init__(self, vocab: list[str]) -> None:
        nums = _number_pool(np.random.default_rng(20240602), 2000, thousands=True)
        ranks = np.arange(1, len(vocab) + 1, dtype=np.float64)
        zipf = 1.0 / (ranks + 2.7) ** 1.05
        weights = np.concatenate(
            [
                zipf / zipf.sum() * (1 - 2 * self.ABBREV_MASS - self.NUM_MASS),
                np.full(len(EN_ABBREV), self.ABBREV_MASS / len(EN_ABBREV)),
                np.full(len(EN_ACRONYMS), self.ABBREV_MASS / len(EN_ACRONYMS)),
                np.full(len(nums), self.NUM_MASS / len(nums)),
            ]
        )
        words = list(vocab) + EN_ABBREV + EN_ACRONYMS + nums
        self.table = _alias_table(weights, 1 << 22)
        self.n = len(words)  # ids [n, 2n) are the capitalised forms
        cap = [w[:1].upper() + w[1:] for w in words]
        # suffix tokens: " " ", " then terminator × paragraph break
        self.term_p = np.array([0.9, 0.05, 0.05])
        sufs = [" ", ", "]
        for t in [".", "?", "!"]:
            sufs += [t + " ", t + "\n"]
        self.suf0 = 2 * self.n
        self.vocab = FlatVocab(words + cap + sufs)
        self.mean_word_bytes = float((self.vocab.nbytes[: self.n] * weights).sum() / weights.sum()) + 1

    def docs(self, rng: np.random.Generator, target_bytes: int) -> list[str]:
        sizes = _doc_sizes(rng, target_bytes)
        mean_sent_words = 17.5
        sent_bytes = mean_sent_words * (self.mean_word_bytes + 0.1)
        n_sent = np.maximum(1, np.rint(sizes / sent_bytes)).astype(np.int64)
        S = int(n_sent.sum())
        lengths = rng.integers(5, 31, size=S)
        longs = rng.random(S) < 0.002
        lengths[longs] = rng.integers(600, 1500, size=int(longs.sum()))
        W = int(lengths.sum())
        ends = np.cumsum(lengths)
        starts = ends - lengths
        ids = self.table[rng.integers(0, len(self.table), size=W)]
        ids[starts] += self.n
        suf = (rng.random(W) < 0.08).astype(np.int64)
        term = rng.choice(3, size=S, p=self.term_p)
        para = (rng.random(S) < 0.2).astype(np.int64)
        suf[ends - 1] = 2 + term * 2 + para
        toks = np.empty(2 * W, dtype=np.int64)
        toks[0::2] = ids
        toks[1::2] = self.suf0 + suf
        return self.vocab.render(toks, 2 * _doc_first_sentence(starts, n_sent))


# --------------------------------------------------------------------------------------------
# documents


def _doc_sizes(rng: np.random.Generator, target_bytes: int) -> np.ndarray:
    """Document byte sizes: log-normal, 200 B–20 KB, 0.4 % long ones of 20–200 KB."""
    n = max(1, int(target_bytes / 3400))
    sizes = np.clip(rng.lognormal(np.log(2500), 0.9, size=n), 200, 20_000)
    long_ = rng.random(n) < 0.004
    sizes[long_] = np.exp(rng.uniform(np.log(20_000), np.log(200_000), size=int(long_.sum())))
    return sizes


def _doc_first_sentence(sent_starts: np.ndarray, n_sent: np.ndarray) -> np.ndarray:
    """Word index at which each document begins."""
    return sent_starts[np.concatenate([[0], np.cumsum(n_sent)[:-1]]).astype(np.int64)]


def code_sources() -> list[Path]:
    out = python_sources()
    inc = Path("/usr/include")
    if inc.is_dir():
        hdrs = []
        for dirpath, dirnames, filenames in os.walk(inc):
            dirnames.sort()
            hdrs.extend(Path(dirpath) / f for f in sorted(filenames) if f.endswith(".h"))
        out += sorted(hdrs, key=lambda p: p.as_posix())
    return [p for p in out if p.is_file() and not p.is_symlink()]


_IDENT_RE = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]{2,}\b")
_KEEP = frozenset(
    "and as assert async await break class continue def del elif else except False finally for from "
    "global if import in is lambda None nonlocal not or pass raise return True try while with yield "
    "self cls int char void const static struct union enum unsigned signed long short double float "
    "typedef extern define include ifdef ifndef endif undef sizeof inline register volatile".split()
)


def _rename_identifiers(text: str, pass_no: int) -> str:
    """Later passes over the code sources: rename identifiers so documents are not duplicates."""
    suffix = f"_{pass_no}"

    def sub(m: re.Match) -> str:
        w = m.group(0)
        return w if w in _KEEP else w + suffix

    return _IDENT_RE.sub(sub, text)


def code_docs(path: str, pass_no: int) -> list[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return []
    if pass_no:
        text = _rename_identifiers(text, pass_no)
    docs, cur, size = [], [], 0
    for line in text.splitlines(keepends=True):
        if size + len(line) > CODE_DOC_CHARS and cur:
            docs.append("".join(cur))
            cur, size = [], 0
        cur.append(line)
        size += len(line)
    if cur:
        docs.append("".join(cur))
    return [d for d in docs if d.strip()]


def assign_code(n_files: int, code_bytes_per_file: float) -> list[list[tuple[str, int]]]:
    """Which code source files (and pass number) go into which output file, by cumulative size."""
    srcs = [(str(p), p.stat().st_size) for p in code_sources()]
    plan: list[list[tuple[str, int]]] = [[] for _ in range(n_files)]
    if not srcs:
        return plan
    total, pass_no = 0, 0
    need = n_files * code_bytes_per_file
    while total < need:
        for path, size in srcs:
            i = int(total // code_bytes_per_file)
            if i >= n_files:
                break
            plan[i].append((path, pass_no))
            total += size
        pass_no += 1
    return plan


# --------------------------------------------------------------------------------------------
# one output file per task

_STATE: dict = {}


def _init_worker(en_vocab: list[str]) -> None:
    _STATE["zh"] = ZhSampler()
    _STATE["en"] = EnSampler(en_vocab)


def _write_file(task: tuple) -> dict:
    out_dir, index, seed, budget, code_plan, shares = task
    shares = {k: v for k, v in shares.items() if v > 0}
    rng = np.random.default_rng([seed, index, FMT_VERSION])
    zh, en = _STATE["zh"], _STATE["en"]
    buffers: dict[str, list[str]] = {"zh": [], "en": [], "code": []}
    code_iter = iter(code_plan)
    written = {k: 0 for k in SHARES}
    ndocs = {k: 0 for k in SHARES}
    exhausted = set()
    total = 0
    final = Path(out_dir) / f"part-{index:05d}.jsonl"
    tmp = final.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        while total < budget:
            left = [k for k in shares if k not in exhausted]
            if not left:
                break   # code-only, and every code source used (they repeat renamed: rarely reached)
            lang = min(left, key=lambda k: written[k] / shares[k])
            buf = buffers[lang]
            if not buf:
                if lang == "zh":
                    buf.extend(reversed(zh.docs(rng, 2_000_000)))
                elif lang == "en":
                    buf.extend(reversed(en.docs(rng, 2_000_000)))
                else:
                    while not buf:
                        nxt = next(code_iter, None)
                        if nxt is None:
                            exhausted.add("code")
                            break
                        buf.extend(reversed(code_docs(*nxt)))
                    if not buf:
                        continue
            text = buf.pop()
            n = len(text.encode("utf-8"))
            rec = {"id": f"{lang}-{index:05d}-{ndocs[lang]:07d}", "text": text, "lang": lang}
            f.write(json.dumps(rec, ensure_ascii=False))
            f.write("\n")
            written[lang] += n
            ndocs[lang] += 1
            total += n
    os.replace(tmp, final)
    return {"file": final.name, "bytes": written, "docs": ndocs, "file_bytes": final.stat().st_size}


def parse_shares(text: str) -> dict[str, float]:
    """``zh=1`` / ``zh=0.5,en=0.3,code=0.2`` → shares of the three languages (missing ones 0)."""
    shares = {k: 0.0 for k in SHARES}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if key.strip() not in SHARES or not sep:
            raise ValueError(f"--shares: {item!r} is not LANG=SHARE with LANG one of {', '.join(SHARES)}")
        shares[key.strip()] = float(value)
    if sum(shares.values()) <= 0:
        raise ValueError("--shares: at least one language needs a share > 0")
    return shares


def generate(out: str | os.PathLike, mb: float, seed: int = 0, procs: int | None = None,
             file_mb: float = 50.0, quiet: bool = False, shares: dict[str, float] | None = None) -> dict:
    """Write the corpus into ``out`` and return its manifest (also written as manifest.json).
    ``shares``: the byte share of each language (default :data:`SHARES`; the default's output is
    unchanged by this option)."""
    if shares is None:
        shares = dict(SHARES)
    else:
        norm = sum(shares.values())
        shares = {k: shares.get(k, 0.0) / norm for k in SHARES}
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("part-*.jsonl")) + list(out.glob("part-*.tmp")) + [out / "manifest.json"]:
        if old.exists():
            old.unlink()
    total = int(math.ceil(mb * 1e6))
    n_files = max(4, int(math.ceil(mb / file_mb)))
    budget = total / n_files
    plan = assign_code(n_files, budget * shares["code"]) if shares["code"] > 0 else [[] for _ in range(n_files)]
    en_vocab = build_en_vocab()
    tasks = [(str(out), i, seed, budget, plan[i], shares) for i in range(n_files)]
    procs = max(1, min(procs or os.cpu_count() or 1, n_files))
    results = []
    if procs == 1:
        _init_worker(en_vocab)
        it = map(_write_file, tasks)
    else:
        pool = mp.get_context("fork").Pool(procs, initializer=_init_worker, initargs=(en_vocab,))
        it = pool.imap(_write_file, tasks)
    done = 0
    for r in it:
        results.append(r)
        done += sum(r["bytes"].values())
        if not quiet:
            el = time.perf_counter() - t0
            print(f"  {r['file']}: {sum(r['bytes'].values()) / 1e6:.1f} MB text "
                  f"[{done / 1e6:.0f}/{total / 1e6:.0f} MB, {done / 1e6 / el:.1f} MB/s]", file=sys.stderr)
    if procs > 1:
        pool.close()
        pool.join()
    bytes_ = {k: sum(r["bytes"][k] for r in results) for k in SHARES}
    docs = {k: sum(r["docs"][k] for r in results) for k in SHARES}
    manifest = {
        "format": FMT_VERSION,
        "seed": seed,
        "mb": mb,
        "shares": shares,
        "files": [r["file"] for r in results],
        "text_bytes": sum(bytes_.values()),
        "file_bytes": sum(r["file_bytes"] for r in results),
        "bytes": bytes_,
        "docs": docs,
        "n_docs": sum(docs.values()),
        "share": {k: round(v / max(1, sum(bytes_.values())), 4) for k, v in bytes_.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / "manifest.json")
    return manifest


def main(argv: list[str] | None = None) -> int:
    # Not common.cli.Parser: this script runs standalone, without the repository on the path; the same
    # rule all the same (no abbreviations).
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--mb", type=float, default=200.0, help="text to write, in 10^6 bytes (default 200)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--procs", type=int, default=None, help="generator processes (default: all cores)")
    ap.add_argument("--file-mb", type=float, default=50.0, help="text per output file (at least 4 files)")
    ap.add_argument("--shares", default=None, help="language byte shares, e.g. zh=1 (Chinese only) or "
                                                    "zh=0.55,en=0.3,code=0.15 (the default)")
    args = ap.parse_args(argv)
    try:
        shares = parse_shares(args.shares) if args.shares else None
    except ValueError as exc:
        ap.error(str(exc))
    m = generate(args.out, args.mb, args.seed, args.procs, args.file_mb, shares=shares)
    print(f"{m['n_docs']} docs, {m['text_bytes'] / 1e6:.1f} MB text ({m['file_bytes'] / 1e6:.1f} MB JSON) "
          f"in {len(m['files'])} files, share {m['share']}, {m['seconds']:.1f} s "
          f"({m['text_bytes'] / 1e6 / m['seconds']:.1f} MB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
