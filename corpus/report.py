"""``python -m corpus report OUT``: a page a person can look at for a raw-source build.

Reads ``OUT/report.json`` (written by the pipeline) and the per-source indexes, and writes
``OUT/report.md`` with PNG plots beside it: documents kept and dropped per source and reason,
rejections per filter rule — each rule with how many documents it dropped and a few short snippets of
them from the sources' audit samples (``rejected.jsonl``), so false positives show at a glance —,
sample-length histograms, and each source's token share in the mix.
matplotlib runs headless (Agg); plots are written under temporary names and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path, write_text
from common.jsonl import read_json_object
from corpus.errors import CorpusError
from corpus.indexed import IndexedReader


def _load(out: Path) -> dict[str, Any]:
    path = out / "report.json"
    if not path.is_file():
        raise CorpusError(f"{path}: no pipeline report here (run `python -m corpus build --config …` first)")
    return read_json_object(path, CorpusError, kind="pipeline report")


def _save(fig, path: Path) -> None:
    # The temporary's name does not end in .png: the format is named, not guessed from it.
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=110, bbox_inches="tight")


def fill_ratio(lengths: np.ndarray, seq_length: int) -> float:
    """Tokens ÷ (samples × seq_length): how much of each training sequence is real text, not padding."""
    return float(np.sum(lengths)) / (len(lengths) * seq_length) if len(lengths) and seq_length else 0.0


def sample_lengths(report: dict[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(source, its samples' lengths) for every source that built at least one sample."""
    found = []
    for s in report["sources"]:
        if s["build"]:
            with IndexedReader(s["build"]["prefix"]) as reader:
                lengths = np.array(reader.sequence_lengths)
            if len(lengths):
                found.append((s["name"], lengths))
    return found


def document_flow(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per source: kept, rejected by filters, exact and near duplicates, skipped by the reader."""
    flow = {}
    for s in report["sources"]:
        p = s["prepare"]
        flow[s["name"]] = {
            "kept": p["kept"],
            "rejected by filters": sum(p["rejected"].values()),
            "exact duplicates": p["exact_duplicates"],
            "near duplicates": p["near_duplicates"],
            "skipped by reader": sum(p["skipped_by_reader"].values()),
        }
    return flow


def write_report(out: str | os.PathLike) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    report = _load(out)
    names = [s["name"] for s in report["sources"]]
    flow = document_flow(report)

    from matplotlib.ticker import MaxNLocator

    def legend_below(ax, n: int) -> None:
        # Under the axis label, never over the bars or the title; as many columns as fit.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=min(n, 5), fontsize=8, frameon=False)

    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 2))
    left = np.zeros(len(names))
    categories = list(next(iter(flow.values())))
    for category in categories:
        values = np.array([flow[n][category] for n in names], dtype=float)
        ax.barh(names, values, left=left, label=category)
        left += values
    ax.set_xlabel("documents")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.invert_yaxis()
    legend_below(ax, len(categories))
    ax.set_title("documents per source: kept and dropped")
    _save(fig, out / "documents.png")
    plt.close(fig)

    rules = sorted({r for s in report["sources"] for r in s["prepare"]["rejected"]})
    if rules:
        rejecting = [s for s in report["sources"] if s["prepare"]["rejected"]]
        fig, ax = plt.subplots(figsize=(8, 0.4 * len(rules) + 2))
        left = np.zeros(len(rules))
        for s in rejecting:
            values = np.array([s["prepare"]["rejected"].get(r, 0) for r in rules], dtype=float)
            ax.barh(rules, values, left=left, label=s["name"])
            left += values
        ax.set_xlabel("documents rejected")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.invert_yaxis()
        legend_below(ax, len(rejecting))
        ax.set_title("rejections per filter rule (the first rule a document fails)")
        _save(fig, out / "rejections.png")
        plt.close(fig)

    seq_length = int(report.get("config", {}).get("seq_length") or 0)
    per_source = sample_lengths(report)
    fig, ax = plt.subplots(figsize=(8, 4))
    if per_source:
        every = np.concatenate([lengths for _, lengths in per_source])
        top = max(int(every.max()), seq_length)
        # One set of bins for every source, stacked: bars that add up, none hidden behind another.
        bins = np.linspace(0, top, 31)
        ax.hist([lengths for _, lengths in per_source], bins=bins, stacked=True,
                label=[name for name, _ in per_source])
        title = f"sample lengths: {len(every):,} samples"
        if seq_length:
            ax.axvline(seq_length, color="black", linestyle="--", linewidth=1, label=f"seq_length {seq_length}")
            title += f", fill ratio {fill_ratio(every, seq_length):.1%}"
        ax.set_title(title)
        legend_below(ax, len(per_source) + 1)
    ax.set_xlabel("sample length (tokens, BOS/EOS included)")
    ax.set_ylabel("samples")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    _save(fig, out / "sample_lengths.png")
    plt.close(fig)

    mix = report.get("mix")
    if mix:
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(mix["sources"]) + 1.5))
        shares = [100 * m["token_share"] for m in mix["sources"]]
        ax.barh([m["name"] for m in mix["sources"]], shares)
        for i, v in enumerate(shares):
            ax.text(v, i, f" {v:.1f}%", va="center", fontsize=8)
        ax.set_xlim(0, max(shares + [1]) * 1.15)
        ax.set_xlabel("% of the mix's tokens")
        ax.set_title(f"token share per source ({mix['tokens']:,} tokens, {mix['samples']:,} samples)")
        ax.invert_yaxis()
        _save(fig, out / "token_share.png")
        plt.close(fig)

    md = out / "report.md"
    write_text(md, _markdown(report, flow, bool(rules), bool(mix), out))
    return md


SNIPPETS_PER_RULE = 3
SNIPPET_CHARS = 160


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One line of a dropped document for the report: whitespace runs as one space, Markdown's
    specials escaped, cut at ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    cut = flat if len(flat) <= limit else flat[:limit].rstrip() + "…"
    return "".join("\\" + c if c in "\\`*_[]<>#|" else c for c in cut)


def _audit(out: Path, source: dict[str, Any]) -> list[dict[str, Any]]:
    """The source's audit sample of rejected documents (``rejected.jsonl``), or none if it is gone."""
    from common.jsonl import iter_jsonl

    named = source["prepare"].get("audit")
    for path in ([Path(named)] if named else []) + [out / source["name"] / "rejected.jsonl"]:
        if path.is_file():
            return [obj for _, obj in iter_jsonl(path, on_error="skip") if isinstance(obj, dict)]
    return []


def rule_samples(report: dict[str, Any], out: Path) -> list[tuple[str, dict[str, int], list[tuple[str, str]]]]:
    """Per rule, most documents first: {source: documents it dropped}, and up to
    :data:`SNIPPETS_PER_RULE` (source, snippet) pairs from the sources' audit samples."""
    counts: dict[str, dict[str, int]] = {}
    samples: dict[str, list[tuple[str, str]]] = {}
    for s in report["sources"]:
        for rule, n in s["prepare"]["rejected"].items():
            counts.setdefault(rule, {})[s["name"]] = n
        for a in _audit(out, s):
            got = samples.setdefault(str(a.get("rule")), [])
            if len(got) < SNIPPETS_PER_RULE and isinstance(a.get("text"), str):
                got.append((s["name"], snippet(a["text"])))
    order = sorted(counts, key=lambda r: (-sum(counts[r].values()), r))
    return [(r, counts[r], samples.get(r, [])) for r in order]


def _markdown(report: dict[str, Any], flow: dict[str, dict[str, int]], has_rules: bool, has_mix: bool,
              out: Path | None = None) -> str:
    out = out if out is not None else Path(".")
    categories = list(next(iter(flow.values())))
    lines = ["# Corpus build report", "", "## Documents per source", "",
             "| source | " + " | ".join(categories) + " | sequences | tokens |",
             "|---|" + "---:|" * (len(categories) + 2)]
    for s in report["sources"]:
        counts = (s["build"] or {}).get("counts", {})
        lines.append(f"| {s['name']} | " + " | ".join(f"{flow[s['name']][c]:,}" for c in categories)
                     + f" | {counts.get('sequences', 0):,} | {counts.get('tokens', 0):,} |")
    lines += ["", "![documents per source](documents.png)", ""]
    if has_rules:
        lines += ["## Rejections per rule", "", "![rejections per rule](rejections.png)", "",
                  "Each rule with the documents it dropped (the first rule each failed) and a few of them, "
                  "so false positives show at a glance; the full audit sample is each source's `rejected.jsonl`.", ""]
        for rule, per_source, snippets in rule_samples(report, out):
            total = sum(per_source.values())
            lines.append(f"### `{rule}`: {total:,} document{'s' if total != 1 else ''}")
            lines.append("")
            lines.append(", ".join(f"{name} {n:,}" for name, n in per_source.items()))
            lines.append("")
            lines += [f"> {name}: {snippet}" + "  " for name, snippet in snippets]
            lines.append("")
    skipped = [(s["name"], r, n) for s in report["sources"] for r, n in s["prepare"]["skipped_by_reader"].items()]
    if skipped:
        lines += ["## Records the readers skipped", ""] + [f"- {name}: {r} {n:,}" for name, r, n in skipped] + [""]
    lines += ["## Sample lengths", ""]
    seq_length = int(report.get("config", {}).get("seq_length") or 0)
    per_source = sample_lengths(report)
    if seq_length and per_source:
        every = np.concatenate([lengths for _, lengths in per_source])
        if len(every):
            lines += [f"Fill ratio {fill_ratio(every, seq_length):.1%}: {int(every.sum()):,} tokens in "
                      f"{len(every):,} samples of at most {seq_length} tokens "
                      f"(median {int(np.median(every))}).", ""]
    lines += ["![sample lengths](sample_lengths.png)", ""]
    if has_mix:
        mix = report["mix"]
        lines += ["## Mix", "", f"{mix['samples']:,} samples, {mix['tokens']:,} tokens, seed {mix['seed']}.", "",
                  "| source | target | sequences | samples | sample share | epochs | token share |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        total = sum(m["samples"] for m in mix["sources"]) or 1
        lines += [f"| {m['name']} | {_target(m.get('target'))} | {m['sequences']:,} | {m['samples']:,} | "
                  f"{m['samples'] / total:.1%} | {m['epochs']:.2f} | {m['token_share']:.1%} |"
                  for m in mix["sources"]]
        lines += ["", "![token share](token_share.png)", ""]
    return "\n".join(lines)


def _target(target: dict[str, Any] | None) -> str:
    """What the config asked of a source in the mix: a sample count, a weight, or its own size."""
    if not target or (target.get("samples") is None and target.get("weight") is None):
        return "all its samples once"
    return f"{target['samples']:,} samples" if target.get("samples") is not None else f"weight {target['weight']}"
