"""The run report's training part (hpc.chain.training_plot): records from metrics.jsonl, else the
Trainer's log history; one summary line per stage; the loss / learning-rate / throughput plot."""

from __future__ import annotations

import json
from pathlib import Path

from hpc.chain.report import write_run_report
from hpc.chain.training_plot import plot_training, summary_line, training_records


def write_metrics(folder: Path, rows: list[dict], torn: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "metrics.jsonl").write_text(text + ('{"step": 99, "lo' if torn else ""))


def pretrain_rows(n: int = 12) -> list[dict]:
    rows = []
    for s in range(1, n + 1):
        row = {"step": s, "total_steps": n, "loss": 8.0 - 0.2 * s, "lr": 1e-3 * min(s, 2) / 2, "grad_norm": 0.4,
               "elapsed_s": 0.5 * s, "eta_s": 0.5 * (n - s)}
        if s > 1:
            row["tokens_per_s_per_gpu"] = 1000.0 + s
        if s % 4 == 0:
            row["eval_loss"] = 8.1 - 0.2 * s
        rows.append(row)
    return rows


def test_metrics_jsonl_is_read_with_aliases_and_a_torn_line_skipped(tmp_path):
    rows = pretrain_rows()
    rows[2] = {**{k: v for k, v in rows[2].items() if k != "lr"}, "learning_rate": 7e-4, "loss": "nan"}
    write_metrics(tmp_path / "pretrain", rows, torn=True)
    records, source = training_records(tmp_path / "pretrain")
    assert source == "metrics.jsonl" and [r["step"] for r in records] == list(range(1, 13))
    assert records[2]["lr"] == 7e-4 and "loss" not in records[2]  # NaN is not a number to plot
    assert [r["eval_loss"] for r in records if "eval_loss" in r] == [8.1 - 0.8, 8.1 - 1.6, 8.1 - 2.4]
    line = summary_line("pretrain", records, source)
    assert line.startswith("- pretrain: 11 logged steps of 12, loss 7.800 → 5.600, held-out loss 7.300 → 5.700 "
                           "(3 evaluations), median 1,007 tokens/s per GPU")
    assert line.endswith("(from metrics.jsonl)")


def test_without_metrics_jsonl_the_trainer_history_is_used_with_its_eval_entries(tmp_path):
    ckpt = tmp_path / "lora" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    history = [{"step": 2, "loss": 3.0, "learning_rate": 2e-3, "tokens_per_s_per_gpu": 500.0},
               {"step": 4, "loss": 2.5, "learning_rate": 1e-3},
               {"step": 4, "eval_loss": 2.7}]  # the Trainer logs an evaluation as an entry of its own
    (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    records, source = training_records(tmp_path / "lora")
    assert source == "trainer_state.json"
    assert records == [{"step": 2, "loss": 3.0, "lr": 2e-3, "tokens_per_s_per_gpu": 500.0},
                       {"step": 4, "loss": 2.5, "lr": 1e-3, "eval_loss": 2.7}]
    assert training_records(tmp_path / "nothing") == ([], "")
    assert summary_line("x", [], "") is None


def test_the_plot_is_written_for_what_was_logged_and_the_report_shows_it(tmp_path):
    write_metrics(tmp_path / "pretrain", pretrain_rows())
    assert not plot_training({"pretrain": [{"step": 1, "lr": 1e-3}]}, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
    page = write_run_report(tmp_path).read_text()
    png = tmp_path / "report-training.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "- pretrain: 12 logged steps of 12" in page and "](report-training.png)" in page
