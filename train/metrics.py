"""The training log: one JSON object per logged step in ``OUTPUT_DIR/metrics.jsonl`` and one readable line on stdout.

The Trainer's own printout (``{'loss': '8.017', 'grad_norm': '1.2', …}``: strings in Python-dict form, no step
out of total, no ETA) is replaced by lines a person reads at a glance in a Slurm log::

    step 40/200  loss 3.412  lr 2.9e-4  gn 1.02  1,234 tok/s/GPU  MFU 41%  elapsed 3m12s  ETA 12m48s

and the same figures, as numbers, go to ``metrics.jsonl`` (rank 0 only, appended and flushed line by line),
for plots and scripts. The keys of a record — each one present only when its value is known:

=======================  ===========================================================================
``step``                 the optimizer step (always)
``total_steps``          the steps the run will take (always)
``loss``                 the training loss averaged over the steps since the previous record
``lr``                   the learning rate
``grad_norm``            the gradient norm before clipping
``tokens_per_s_per_gpu`` non-padding tokens per second per process, since the previous record
``mfu``                  model FLOPs utilisation, 0–1 (where the device's peak is known: not on CPU)
``elapsed_s``            seconds of training so far, over every resumed attempt (always)
``eta_s``                seconds still to go at this attempt's pace (always)
``eval_loss``            the held-out loss, on the steps where it was evaluated
=======================  ===========================================================================

A step that is both logged and evaluated is one record (the eval loss joins the training figures); an
evaluation on a step that is not logged is a record of its own. TensorBoard (``report_to``) still gets
everything the Trainer logs.

Resuming from checkpoint N keeps the records up to step N and drops the later ones (the steps that are
trained again), so a requeued run's file holds every step once; a line torn by a kill is dropped too.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common.jsonl import BadLine, iter_jsonl, write_jsonl

METRICS = "metrics.jsonl"
KEYS = ("step", "total_steps", "loss", "lr", "grad_norm", "tokens_per_s_per_gpu", "mfu", "elapsed_s", "eta_s",
        "eval_loss")
# The Trainer's log key → ours.
_FROM_TRAINER = (("loss", "loss"), ("learning_rate", "lr"), ("grad_norm", "grad_norm"),
                 ("tokens_per_s_per_gpu", "tokens_per_s_per_gpu"), ("mfu", "mfu"))


def duration(seconds: float) -> str:
    """``45s``, ``3m12s``, ``2h05m``."""
    s = int(round(max(seconds, 0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def short_float(x: float) -> str:
    """A learning rate the way people write one: ``2.9e-4``, ``3e-3``."""
    if x == 0:
        return "0"
    text = f"{x:.1e}".replace(".0e", "e")
    return re.sub(r"e([+-])0*(\d)", lambda m: f"e{'-' if m.group(1) == '-' else ''}{m.group(2)}", text)


def format_line(record: dict[str, Any]) -> str:
    """The stdout line of a record."""
    parts = [f"step {record['step']}/{record['total_steps']}"]
    if "loss" in record:
        parts.append(f"loss {record['loss']:.3f}")
    if "eval_loss" in record:
        parts.append(f"eval_loss {record['eval_loss']:.3f}")
    if "lr" in record:
        parts.append(f"lr {short_float(record['lr'])}")
    if "grad_norm" in record:
        parts.append(f"gn {record['grad_norm']:.3g}")
    if "tokens_per_s_per_gpu" in record:
        parts.append(f"{record['tokens_per_s_per_gpu']:,.0f} tok/s/GPU")
    if "mfu" in record:
        mfu = 100 * record["mfu"]
        parts.append(f"MFU {mfu:.1f}%" if mfu < 10 else f"MFU {mfu:.0f}%")
    parts.append(f"elapsed {duration(record['elapsed_s'])}")
    parts.append(f"ETA {duration(record['eta_s'])}")
    return "  ".join(parts)


def _number(value: Any) -> float | None:
    try:
        x = float(value)  # a 0-d tensor, a numpy scalar
    except (TypeError, ValueError):
        return None
    return x if x == x and abs(x) != float("inf") else None  # NaN/inf are not JSON numbers


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics file (torn or foreign lines left out)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [obj for _, obj in iter_jsonl(path, on_error="skip")
            if not isinstance(obj, BadLine) and isinstance(obj.get("step"), int)]


class MetricsLog(TrainerCallback):
    """Writes ``metrics.jsonl`` and the readable stdout line; rank 0 only. Call :meth:`resume` (rank 0)
    with the step the run starts from before training."""

    def __init__(self, output_dir: str | Path, echo: bool = True) -> None:
        self.path = Path(output_dir) / METRICS
        self.echo = echo
        self.offset = 0.0                       # elapsed seconds of the attempts before this one
        self.started: float | None = None       # this attempt: (time, step) when training began
        self.start_step = 0
        self.pending: dict[str, Any] | None = None  # a logged step whose evaluation follows

    def resume(self, step: int) -> None:
        """Keep the records up to ``step`` (the checkpoint this run resumes from; 0: a fresh run)."""
        kept = [r for r in read_metrics(self.path) if r["step"] <= step]
        if self.path.exists():
            write_jsonl(kept, self.path)  # complete or absent: a kill here leaves the old file
        self.offset = float(kept[-1].get("elapsed_s", 0.0)) if kept else 0.0

    # -- Trainer events ----------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.started = time.perf_counter()
        self.start_step = state.global_step
        return control

    def _timing(self, state: Any) -> dict[str, float]:
        now = time.perf_counter()
        spent = now - (self.started if self.started is not None else now)
        done = state.global_step - self.start_step
        left = max(state.max_steps - state.global_step, 0)
        eta = spent / done * left if done > 0 else 0.0
        return {"elapsed_s": round(self.offset + spent, 1), "eta_s": round(eta, 1)}

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        if not state.is_world_process_zero or not logs:
            return control
        if "loss" in logs:
            self._flush()
            record: dict[str, Any] = {"step": state.global_step, "total_steps": state.max_steps}
            for theirs, ours in _FROM_TRAINER:
                x = _number(logs.get(theirs))
                if x is not None:
                    record[ours] = x
            record.update(self._timing(state))
            self._print(record)
            if control.should_evaluate:  # the evaluation of this step comes next: one record for both
                self.pending = record
            else:
                self._write(record)
        elif "eval_loss" in logs:
            loss = _number(logs["eval_loss"])
            if self.pending is not None and self.pending["step"] == state.global_step:
                record, self.pending = self.pending, None
            else:
                self._flush()
                record = {"step": state.global_step, "total_steps": state.max_steps, **self._timing(state)}
            if loss is not None:
                record["eval_loss"] = loss
                self._print({"step": record["step"], "total_steps": record["total_steps"], "eval_loss": loss,
                             "elapsed_s": record["elapsed_s"], "eta_s": record["eta_s"]})
            self._write(record)
        elif "train_runtime" in logs and "train_loss" in logs and self.echo:  # the Trainer's closing summary
            steps = state.global_step - self.start_step
            print(f"trained {steps} step(s) in {duration(float(logs['train_runtime']))}, "
                  f"mean loss {float(logs['train_loss']):.3f}", flush=True)
        return control

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.is_world_process_zero:
            self._flush()  # an evaluation that logged no loss still lets the step's record out
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.is_world_process_zero:
            self._flush()
        return control

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        if state.is_world_process_zero:
            self._flush()
        return control

    # -- output ------------------------------------------------------------------------------

    def _flush(self) -> None:
        if self.pending is not None:
            record, self.pending = self.pending, None
            self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        ordered = {k: record[k] for k in KEYS if k in record}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(ordered) + "\n")
            f.flush()

    def _print(self, record: dict[str, Any]) -> None:
        if not self.echo:
            return
        from tqdm.auto import tqdm

        tqdm.write(format_line(record))  # above the progress bar where there is one; plain print otherwise
        sys.stdout.flush()  # a Slurm log is a file: without this the lines come in blocks of 4 KiB
