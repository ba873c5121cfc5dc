"""The run folder's report: ``run_dir/report.md`` with PNG plots a person can look at.

Corpus statistics (documents, samples, tokens, the sample-length histogram), the loss curves and
tokens/s of pretraining and LoRA tuning (from the Trainer's log history in their last checkpoints),
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

_json = read_marker  # a JSON object, or None for a file that is missing or unreadable: the report shows what is there


def log_history(run_folder: Path) -> list[dict[str, Any]]:
    """The Trainer's log lines of a training run (its newest complete checkpoint's trainer_state.json)."""
    states = sorted(run_folder.glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    state = _json(states[-1]) if states else None
    return [r for r in (state or {}).get("log_history", []) if "loss" in r]


def _plots(run: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from corpus.indexed import IndexedReader

    made: dict[str, str] = {}
    if Path(f"{run / 'corpus'}.idx").exists():
        with IndexedReader(run / "corpus") as r:
            lengths = np.asarray(r.sequence_lengths)
        fig, ax = plt.subplots(figsize=(6, 3.2))
        ax.hist(lengths, bins=min(40, max(5, len(lengths) // 4)), color="#4477aa")
        ax.set(xlabel="tokens per sample", ylabel="samples", title=f"corpus: {len(lengths)} samples")
        fig.tight_layout()
        fig.savefig(run / "report-corpus-lengths.png", dpi=110)
        plt.close(fig)
        made["lengths"] = "report-corpus-lengths.png"
    curves = {name: log_history(run / name) for name in ("pretrain", "lora")}
    if any(curves.values()):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
        for name, logs in curves.items():
            if logs:
                ax1.plot([r["step"] for r in logs], [r["loss"] for r in logs], marker=".", label=name)
                rated = [r for r in logs if "tokens_per_s_per_gpu" in r]
                ax2.plot([r["step"] for r in rated], [r["tokens_per_s_per_gpu"] for r in rated], marker=".", label=name)
        ax1.set(xlabel="optimizer step", ylabel="training loss", title="loss")
        ax2.set(xlabel="optimizer step", ylabel="tokens/s per device", title="throughput")
        for ax in (ax1, ax2):
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(run / "report-training.png", dpi=110)
        plt.close(fig)
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


def write_run_report(run_dir: str | os.PathLike) -> Path:
    """Write ``run_dir/report.md`` (and its PNGs) from the stage markers and the artifacts; return its path."""
    run = Path(run_dir)
    plots = _plots(run)
    lines = [f"# Run report: {run}", ""]

    lines += ["## Stages", "", "| stage | done | seconds | Slurm job |", "|---|---|---|---|"]
    for stage in markers.STAGES:
        m = markers.read(run, stage) or {}
        lines.append(f"| {stage} | {m.get('finished', 'this job' if stage == 'report' else '—')} | "
                     f"{m.get('seconds', '')} | {m.get('job_id') or ''} |")

    corpus = _json(Path(f"{run / 'corpus'}.json")) or {}
    counts = corpus.get("counts", {})
    lines += ["", "## Corpus", ""]
    if counts:
        lines += ["| " + " | ".join(counts) + " |", "|" + "---|" * len(counts),
                  "| " + " | ".join(str(v) for v in counts.values()) + " |", ""]
    if "lengths" in plots:
        lines += [f"![sample lengths]({plots['lengths']})", ""]

    lines += ["## Training", ""]
    for name in ("pretrain", "lora"):
        logs = log_history(run / name)
        if logs:
            rates = [r["tokens_per_s_per_gpu"] for r in logs if "tokens_per_s_per_gpu" in r]
            rate = f", median {np.median(rates):,.0f} tokens/s per device" if rates else ""
            mfu = [r["mfu"] for r in logs if "mfu" in r]
            mfu_text = f", median MFU {np.median(mfu):.1%}" if mfu else ""
            lines.append(f"- {name}: {len(logs)} logged steps, loss {logs[0]['loss']:.3f} → {logs[-1]['loss']:.3f}"
                         f"{rate}{mfu_text}")
    if "training" in plots:
        lines += ["", f"![loss and throughput]({plots['training']})"]

    recover = (markers.read(run, "recover") or {}).get("result") or {}
    verified = recover.get("verified")
    lines += ["", "## Publish and restore", ""]
    if verified:
        lines.append(f"- `diff` = tuned − pretrained; `restored` = pretrained + diff, checked against the diff's "
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
    for what, rel in (("tokenizer", "tokenizer.model"), ("corpus", "corpus.bin"), ("pretrained model", "pretrain/final"),
                      ("LoRA adapter", "lora/adapter"), ("tuned (merged)", "tuned"), ("diff", "diff"),
                      ("restored", "restored"), ("generations", "generations.jsonl"),
                      ("TensorBoard", "pretrain/tensorboard")):
        lines.append(f"| {what} | `{run / rel}` | {_size(run / rel)} |")
    page = run / "report.md"
    write_text(page, "\n".join(lines) + "\n")
    return page
