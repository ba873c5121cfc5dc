"""The training part of the run report: each training stage's logged steps, one line of figures, one plot.

Records come from ``OUTPUT_DIR/metrics.jsonl`` (train.metrics: one JSON object per logged step, with
step, total_steps, loss, lr, grad_norm, tokens_per_s_per_gpu, mfu, elapsed_s, eta_s, eval_loss) when
the run wrote one, else from the Trainer's ``log_history`` in its newest checkpoint's
trainer_state.json (older runs), whose training and evaluation entries are separate dicts with the
Trainer's key names. Both become the same normalised records; a damaged line is skipped.

The plot (``report-training.png``): training loss with the held-out loss, the learning rate, and
tokens/s per GPU, against the optimizer step — integer steps on the x axes, units on the y axes, one
legend above the panels, so no curve is hidden under it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.jsonl import BadLine, iter_jsonl
from common.markers import read_marker

METRICS = "metrics.jsonl"
# Other names the same figure goes by (the Trainer's, and earlier spellings); ours first.
ALIASES = {"lr": ("lr", "learning_rate"), "total_steps": ("total_steps", "total", "max_steps"),
           "tokens_per_s_per_gpu": ("tokens_per_s_per_gpu", "tokens_per_s_per_device", "tokens_per_second_per_gpu"),
           "loss": ("loss",), "eval_loss": ("eval_loss",), "grad_norm": ("grad_norm",), "mfu": ("mfu",),
           "elapsed_s": ("elapsed_s",), "eta_s": ("eta_s",)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None  # NaN / inf: not plotted


def normalise(raw: dict[str, Any]) -> dict[str, Any] | None:
    """One record with our key names and numbers only; None without a step."""
    step = _number(raw.get("step"))
    if step is None:
        return None
    out: dict[str, Any] = {"step": int(step)}
    for key, names in ALIASES.items():
        for name in names:
            x = _number(raw.get(name))
            if x is not None:
                out[key] = x
                break
    return out


def _trainer_history(folder: Path) -> list[dict[str, Any]]:
    states = sorted(folder.glob("checkpoint-*/trainer_state.json"),
                    key=lambda p: int(p.parent.name.split("-")[1]) if p.parent.name.split("-")[1].isdigit() else -1)
    state = read_marker(states[-1]) if states else None
    return [r for r in (state or {}).get("log_history", []) if isinstance(r, dict)]


def training_records(folder: str | Path) -> tuple[list[dict[str, Any]], str]:
    """(records sorted by step, where they came from: 'metrics.jsonl', 'trainer_state.json' or '')."""
    folder = Path(folder)
    path = folder / METRICS
    source, raw = "", []
    if path.is_file():
        raw = [r for _, r in iter_jsonl(path, on_error="skip") if not isinstance(r, BadLine) and isinstance(r, dict)]
        source = METRICS
    if not raw:
        raw = _trainer_history(folder)
        source = "trainer_state.json" if raw else ""
    by_step: dict[int, dict[str, Any]] = {}
    for r in raw:
        rec = normalise(r)
        if rec is not None:  # the Trainer logs a step's eval in an entry of its own: merge them
            by_step.setdefault(rec["step"], {}).update(rec)
    return [by_step[s] for s in sorted(by_step)], source


def summary_line(name: str, records: list[dict[str, Any]], source: str) -> str | None:
    """'- pretrain: 30 logged steps of 60, loss 8.01 → 5.21, held-out loss 7.9 → 5.4, …' (None: nothing logged)."""
    import numpy as np

    losses = [r for r in records if "loss" in r]
    if not losses:
        return None
    total = next((int(r["total_steps"]) for r in reversed(records) if "total_steps" in r), None)
    parts = [f"{len(losses)} logged steps" + (f" of {total}" if total else ""),
             f"loss {losses[0]['loss']:.3f} → {losses[-1]['loss']:.3f}"]
    evals = [r["eval_loss"] for r in records if "eval_loss" in r]
    if evals:
        parts.append(f"held-out loss {evals[0]:.3f} → {evals[-1]:.3f} ({len(evals)} evaluations)")
    rates = [r["tokens_per_s_per_gpu"] for r in records if "tokens_per_s_per_gpu" in r]
    if rates:
        parts.append(f"median {np.median(rates):,.0f} tokens/s per GPU")
    mfu = [r["mfu"] for r in records if "mfu" in r]
    if mfu:
        parts.append(f"median MFU {np.median(mfu):.1%}")
    elapsed = next((r["elapsed_s"] for r in reversed(records) if "elapsed_s" in r), None)
    if elapsed is not None:
        parts.append(f"{elapsed / 60:.1f} min of training")
    return f"- {name}: " + ", ".join(parts) + f" (from {source})"


COLOURS = {"pretrain": "#1f77b4", "lora": "#d62728", "sft": "#2ca02c"}


def plot_training(curves: dict[str, list[dict[str, Any]]], path: str | Path) -> bool:
    """Write the three-panel PNG for the runs that logged anything; False when none did."""
    curves = {name: recs for name, recs in curves.items() if any("loss" in r for r in recs)}
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    fig, (ax_loss, ax_lr, ax_rate) = plt.subplots(1, 3, figsize=(13, 4.0))
    handles: dict[str, Any] = {}
    for i, (name, recs) in enumerate(curves.items()):
        colour = COLOURS.get(name, f"C{i + 2}")

        def series(key: str) -> tuple[list[int], list[float]]:
            rows = [r for r in recs if key in r]
            return [r["step"] for r in rows], [r[key] for r in rows]

        steps, loss = series("loss")
        dots = {"marker": ".", "ms": 6} if len(steps) <= 40 else {}  # a short run: show where the points are
        handles[f"{name}: training loss"], = ax_loss.plot(steps, loss, color=colour, lw=1.6, **dots)
        steps, ev = series("eval_loss")
        if ev:
            handles[f"{name}: held-out loss"], = ax_loss.plot(steps, ev, color=colour, lw=1.6, ls="--", marker="o", ms=4)
        steps, lr = series("lr")
        if lr:
            ax_lr.plot(steps, lr, color=colour, lw=1.6, **dots)
        steps, rate = series("tokens_per_s_per_gpu")
        if rate:
            ax_rate.plot(steps, rate, color=colour, lw=1.6, marker=".", ms=7)
    ax_loss.set(title="loss", xlabel="optimizer step", ylabel="cross-entropy (nats per token)")
    ax_lr.set(title="learning rate", xlabel="optimizer step", ylabel="learning rate")
    ax_lr.yaxis.set_major_formatter(FuncFormatter(lambda v, _: "0" if v == 0 else f"{v:.1e}"))
    ax_rate.set(title="throughput", xlabel="optimizer step", ylabel="tokens/s per GPU")
    for ax in (ax_loss, ax_lr, ax_rate):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", transform=ax.transAxes, ha="center", va="center", color="0.5")
    ax_rate.set_ylim(bottom=0)
    ax_lr.set_ylim(bottom=0)
    # One legend above the panels: it covers no curve.
    fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=min(4, len(handles)), frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
