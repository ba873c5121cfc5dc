"""The run folder's report: ``run_dir/report.md`` with PNG plots a person can look at.

Corpus statistics (documents, samples, tokens, the sample-length histogram), the training and
held-out loss, learning rate and tokens/s of pretraining and LoRA or full tuning (their metrics.jsonl, else
the Trainer's log history; hpc.chain.training_plot),
the restore check, the generated samples, each stage's time, and where every artifact lives.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import write_text
from common.jsonl import BadLine, iter_jsonl
from common.markers import read_marker
from hpc.chain import markers
from hpc.chain.training_plot import plot_training, summary_line, training_records

_json = read_marker  # a JSON object, or None for a file that is missing or unreadable: the report shows what is there


def log_history(run_folder: Path) -> list[dict[str, Any]]:
    """A training run's logged steps with a training loss (metrics.jsonl, else the Trainer's log history)."""
    return [r for r in training_records(run_folder)[0] if "loss" in r]


def _plots(run: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from corpus.indexed import IndexedReader

    made: dict[str, str] = {}
    built = [Path(s["build"]["prefix"]) for s in (_json(run / "corpus" / "report.json") or {}).get("sources", [])
             if s.get("build")]
    if built:
        lengths = []
        for prefix in built:
            with IndexedReader(prefix) as r:
                lengths.append(np.asarray(r.sequence_lengths))
        lengths = np.concatenate(lengths)
        seq_length = int(((_json(run / "corpus" / "report.json") or {}).get("config") or {}).get("seq_length") or 0)
        fig, ax = plt.subplots(figsize=(6, 3.4))
        top = max(int(lengths.max()), seq_length)
        ax.hist(lengths, bins=np.linspace(0, top, min(40, max(5, len(lengths) // 4)) + 1), color="#4477aa")
        title = f"corpus: {len(lengths):,} samples"
        if seq_length:
            ax.axvline(seq_length, color="black", linestyle="--", linewidth=1, label=f"seq_length {seq_length}")
            ax.legend(loc="upper left", fontsize=8, frameon=False)
            title += f", fill ratio {lengths.sum() / (len(lengths) * seq_length):.1%}"
        ax.set(xlabel="tokens per sample", ylabel="samples", title=title)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        fig.tight_layout()
        fig.savefig(run / "report-corpus-lengths.png", dpi=110)
        plt.close(fig)
        made["lengths"] = "report-corpus-lengths.png"
    # Training: loss with held-out loss, learning rate, throughput (hpc.chain.training_plot).
    if plot_training({name: training_records(run / name)[0] for name in ("pretrain", "lora", "sft")},
                     run / "report-training.png"):
        made["training"] = "report-training.png"
    return made


def _size(path: Path) -> str:
    if not path.exists():
        return "—"
    total = path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    for unit in ("B", "KB", "MB", "GB"):
        if total < 1024 or unit == "GB":
            return f"{total:.0f} {unit}" if unit == "B" else f"{total:.1f} {unit}"
        total /= 1024
    return ""


def _cell(text: Any, limit: int = 120) -> str:
    s = " ".join(str(text).split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return s.replace("|", "\\|")


def _corpus_section(run: Path) -> list[str]:
    """The corpus plan's own page (corpus.report: per-source kept/dropped, per-rule rejections, the
    mix's token shares next to its targets), its headings one level down and its plots under corpus/."""
    if not (run / "corpus" / "report.json").is_file():
        return ["(no corpus report)", ""]
    from corpus.report import write_report

    try:
        page = write_report(run / "corpus").read_text(encoding="utf-8")
    except Exception as exc:   # the run report shows what there is; a broken corpus page is said, not fatal
        return [f"(the corpus report could not be made: {exc})", ""]
    out = []
    for line in page.splitlines()[1:]:   # its title: this section's heading
        line = "#" + line if line.startswith("## ") else line
        out.append(line.replace("](", "](corpus/"))
    return out + [""]


def _stages(run: Path) -> tuple[str, ...]:
    """The run's stages when the caller does not say: full tuning's (sft) where only it has run."""
    full = (run / "sft").is_dir() and not (run / "lora").is_dir()
    return markers.stages_for("full" if full else "lora")


def write_run_report(run_dir: str | os.PathLike, stages: tuple[str, ...] | None = None) -> Path:
    """Write ``run_dir/report.md`` (and its PNGs) from the stage markers and the artifacts; return its path."""
    run = Path(run_dir)
    stages = stages or _stages(run)
    full = "sft" in stages
    plots = _plots(run)
    lines = [f"# Run report: {run}", ""]

    lines += ["## Stages", "", "| stage | done | seconds | Slurm job |", "|---|---|---|---|"]
    for stage in stages:
        m = markers.read(run, stage) or {}
        lines.append(f"| {stage} | {m.get('finished', 'this job' if stage == 'report' else '—')} | "
                     f"{m.get('seconds', '')} | {m.get('job_id') or ''} |")

    lines += ["", "## Corpus", ""]
    lines += _corpus_section(run)
    if "lengths" in plots:
        lines += [f"![sample lengths]({plots['lengths']})", ""]

    lines += ["## Training", ""]
    for name in ("pretrain", "sft" if full else "lora"):
        line = summary_line(name, *training_records(run / name))
        if line:
            lines.append(line)
    if "training" in plots:
        lines += ["", f"![loss and throughput]({plots['training']})"]

    recover = (markers.read(run, "recover") or {}).get("result") or {}
    verified = recover.get("verified")
    lines += ["", "## Publish and restore", ""]
    if verified:
        tuned = "`sft/final` (full tuning)" if full else "tuned"
        lines.append(f"- `diff` = {tuned} − pretrained; `restored` = pretrained + diff, checked against the diff's "
                     f"manifest: {json.dumps(verified, default=str)[:300]}")

    gens = []
    path = run / "generations.jsonl"
    if path.exists():
        gens = [g for _, g in iter_jsonl(path, on_error="skip") if not isinstance(g, BadLine)]
    lines += ["", "## Generations (restored model)", ""]
    if gens:
        lines += ["| case | output | finish |", "|---|---|---|"]
        for g in gens[:12]:
            prompt = g.get("instruction") or g.get("prompt") or ""
            if g.get("input"):
                prompt += f" — {g['input']}"
            lines.append(f"| {_cell(prompt, 60)} | {_cell(g.get('output', ''))} | {g.get('finish', '')} |")

    lines += ["", "## Artifacts", "", "| what | where | size |", "|---|---|---|"]
    tuned = ((("tuned (full-parameter)", "sft/final"),) if full else
             (("LoRA adapter", "lora/adapter"), ("tuned (merged)", "tuned")))
    for what, rel in (("tokenizer", "tokenizer.model"), ("corpus (mix)", "corpus/blend.mix.json"), ("pretrained model", "pretrain/final"),
                      *tuned, ("diff", "diff"), ("restored", "restored"), ("generations", "generations.jsonl"),
                      ("TensorBoard", "pretrain/tensorboard")):
        lines.append(f"| {what} | `{run / rel}` | {_size(run / rel)} |")
    page = run / "report.md"
    write_text(page, "\n".join(lines) + "\n")
    return page
