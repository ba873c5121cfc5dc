"""Pretraining with HF Trainer + DeepSpeed ZeRO-3 on the CPU (2 processes over gloo), resume after a
signal, complete-or-absent checkpoints, the exported checkpoint, and the errors before step one."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from train_helpers import (ROOT, assert_same_weights, build_corpus, env, launch, log_records, pretrain_config,
                           run_ranks, signal_rank, tail, wait_all, wait_for_file)

slow = pytest.mark.slow  # real ZeRO-3 training; the checks before step one below are fast


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tokenizer_path) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus"), tokenizer_path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus, tokenizer_path) -> Path:
    """An uninterrupted 8-step run on 2 ranks: the result every resumed run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg = pretrain_config(tmp, corpus, tokenizer_path, tmp / "run")
    codes = run_ranks("train.pretrain", cfg, 2, tmp / "logs")
    assert codes == [0, 0], tail(tmp / "logs")
    return tmp / "run"


@slow
def test_zero3_run_exports_a_checkpoint_that_from_pretrained_loads(reference, tokenizer_path):
    import torch
    from transformers import AutoModelForCausalLM

    from train.tokenizer import load_tokenizer

    final = reference / "final"
    assert (final / "model.safetensors").exists() and (final / "tokenizer.model").exists()
    assert not list(final.glob("*.bin")), "no pickles in the exported model"
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = load_tokenizer(final)
    assert model.config.vocab_size == len(tok)
    batch = tok(["北京是中国的首都。", "The capital of France is Paris."], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**batch, labels=batch["input_ids"])
    assert torch.isfinite(out.loss)
    # The full model, not a ZeRO-3 partition: every tensor has its configured shape.
    assert model.model.embed_tokens.weight.shape == (len(tok), 32)

    # Two complete checkpoints (steps 4 and 8), each sealed by its marker, with the data position.
    done = sorted(p.name for p in reference.glob("checkpoint-*"))
    assert done == ["checkpoint-4", "checkpoint-8"]
    marker = json.loads((reference / "checkpoint-8" / "COMPLETE.json").read_text())
    assert marker["step"] == 8 and any(f.startswith("global_step8/") for f in marker["files"])
    position = json.loads((reference / "checkpoint-8" / "sampler.json").read_text())
    assert position["global_step"] == 8 and position["global_batch"] == 8  # 2 micro × 2 accum × 2 ranks

    logs = [r for r in log_records(reference) if "loss" in r]
    assert len(logs) == 8
    assert logs[-1]["loss"] < logs[0]["loss"], "the loss should go down on 8 steps of a tiny corpus"
    assert all(r["tokens_per_s_per_gpu"] > 0 for r in logs[1:])


@slow
def test_the_run_logs_metrics_jsonl_readable_lines_and_the_held_out_loss(reference):
    """8 held-out samples (eval_samples) evaluated every 4 steps under ZeRO-3 on 2 ranks: eval_loss at
    steps 4 and 8, in the same records as those steps' training figures; a readable line per step."""
    records = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert all(r["total_steps"] == 8 and isinstance(r["loss"], float) and isinstance(r["lr"], float)
               and isinstance(r["grad_norm"], float) and r["elapsed_s"] >= 0 and r["eta_s"] >= 0 for r in records)
    assert all(r["tokens_per_s_per_gpu"] > 0 for r in records[1:]) and "mfu" not in records[0]  # no peak on CPU
    evaluated = {r["step"]: r["eval_loss"] for r in records if "eval_loss" in r}
    assert sorted(evaluated) == [4, 8] and evaluated[8] < evaluated[4], evaluated  # it learns, held out too
    log = (reference.parent / "logs" / "rank-0.log").read_text()
    assert "8 sample(s) held out for eval_loss every 4 steps" in log
    assert re.search(r"^step 3/8  loss \d+\.\d{3}  lr \S+  gn \S+  [\d,]+ tok/s/GPU  elapsed \d+s  ETA \d+s$", log, re.M), log
    assert re.search(r"^step 8/8  eval_loss \d+\.\d{3}  elapsed ", log, re.M), log
    assert "{'loss'" not in log and "'eval_loss'" not in log  # the Trainer's dict printout is gone
    assert "step 1/8" not in (reference.parent / "logs" / "rank-1.log").read_text()  # rank 0 logs


@slow
def test_a_signal_to_one_rank_checkpoints_all_and_the_rerun_ends_with_the_same_weights(
        tmp_path, corpus, tokenizer_path, reference):
    cfg = pretrain_config(tmp_path, corpus, tokenizer_path, tmp_path / "run")
    logs = tmp_path / "logs"
    procs = launch("train.pretrain", cfg, 2, logs)
    # After the first periodic checkpoint, signal rank 1 only: the ranks agree at the next step end.
    wait_for_file(tmp_path / "run" / "checkpoint-4" / "COMPLETE.json", procs, logs)
    signal_rank(procs, 1)
    assert wait_all(procs, logs) == [0, 0], tail(logs)
    first = tail(logs, 10**6)
    assert "SIGUSR2 received" in first and "preempted at step" in first
    stopped = sorted(int(p.name.split("-")[1]) for p in (tmp_path / "run").glob("checkpoint-*"))
    assert stopped[-1] > 4 and stopped[-1] < 8, f"expected a checkpoint between steps 4 and 8, got {stopped}"
    assert not (tmp_path / "run" / "final").exists()

    # A half-written checkpoint (killed mid-save) must be ignored and removed, not resumed from.
    broken = tmp_path / "run" / "checkpoint-99"
    shutil.copytree(tmp_path / "run" / f"checkpoint-{stopped[-1]}", broken)
    (broken / "COMPLETE.json").unlink()

    assert run_ranks("train.pretrain", cfg, 2, logs) == [0, 0], tail(logs)
    assert f"resuming from {tmp_path / 'run' / f'checkpoint-{stopped[-1]}'}" in tail(logs, 100000)
    assert not broken.exists()
    assert_same_weights(reference / "final", tmp_path / "run" / "final")
    # The resumed run appended to metrics.jsonl without repeating the steps trained again.
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert sorted(r["step"] for r in records if "eval_loss" in r) == [4, 8]


def single_process(cfg: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train.pretrain", "--config", str(cfg)], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=300)


@slow
@pytest.mark.parametrize("case", ["vocab", "positions", "dataset", "tokens", "fingerprint"])
def test_bad_input_fails_before_the_first_step(case, tmp_path, corpus, tokenizer_path):
    over: dict = {"deepspeed": None}
    data = corpus
    if case == "vocab":
        over["model_config"] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                "num_attention_heads": 4, "vocab_size": 3200}
        expect = "the tokenizer has 3000 entries but the model's vocabulary"
    elif case == "positions":
        over["model_config"] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                "num_attention_heads": 4, "max_position_embeddings": 64}
        expect = "seq_length 128 is beyond the model's 64 positions"
    elif case == "dataset":
        data = tmp_path / "broken"
        for suffix in (".bin", ".idx"):
            shutil.copy(f"{corpus}{suffix}", f"{data}{suffix}")
        with open(f"{data}.bin", "r+b") as f:
            f.truncate(f.seek(0, 2) - 2)
        expect = "broken.bin: bin size: truncated"
    else:  # a corpus built with another tokenizer
        over["model_config"] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                "num_attention_heads": 4}
        small = tmp_path / "small.model"
        from corpus.tokenizer import train_tokenizer
        from conftest import sample_texts

        train_tokenizer(sample_texts(), small, vocab_size=2500)  # the corpus has ids up to 2999
        tokenizer_path = small
        if case == "fingerprint":  # the corpus records its tokenizer's sha256: refused by name, before torch
            expect = f"is not the one {corpus}.json was built with"
        else:  # a corpus that records no tokenizer: its token ids beyond the vocabulary give it away
            data = tmp_path / "unrecorded"
            for suffix in (".bin", ".idx"):
                shutil.copy(f"{corpus}{suffix}", f"{data}{suffix}")
            expect = "vocabulary"
    cfg = pretrain_config(tmp_path, data, tokenizer_path, tmp_path / "run", **over)
    run = single_process(cfg)
    assert run.returncode == 2, run.stderr[-3000:]
    assert expect in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert not list((tmp_path / "run").glob("checkpoint-*"))


@slow
def test_unknown_key_and_bad_value_name_the_key(tmp_path, corpus, tokenizer_path):
    cfg = pretrain_config(tmp_path, corpus, tokenizer_path, tmp_path / "run", micro_batch_sise=2)
    run = single_process(cfg)
    assert run.returncode == 2 and "unknown key 'micro_batch_sise'" in run.stderr
    cfg = pretrain_config(tmp_path, corpus, tokenizer_path, tmp_path / "run", precision="fp8")
    run = single_process(cfg)
    assert run.returncode == 2 and "precision: 'fp8' is not one of" in run.stderr


@slow
@pytest.mark.slurm
def test_preempted_on_slurm_through_hpc_submit_requeues_and_ends_with_the_same_weights(
        slurm_cluster, tmp_path, corpus, tokenizer_path, reference):
    """2 nodes × 1 process of real ZeRO-3 over gloo on the dev cluster; USR2 through Slurm to every task;
    the job saves, requeues itself, resumes and ends with the uninterrupted run's weights."""
    import time

    from hpc import submit
    from hpc.preempt import read_events
    from slurm_fixtures import slurm

    run = tmp_path / "run"
    cfg = pretrain_config(tmp_path, corpus, tokenizer_path, run)
    sub = submit.submit("pretrain", cfg, "dev", nodes=2, gpus_per_node=1, log_folder=str(tmp_path / "logs"))
    job_id = sub.job_ids[0]
    end = time.monotonic() + 300
    while not (run / "checkpoint-4" / "COMPLETE.json").exists():
        assert time.monotonic() < end, f"no checkpoint-4 after 300 s; job {job_id}: " + slurm(
            "sacct", "-j", job_id, "-o", "JobID,State,ExitCode", check=False)
        time.sleep(0.5)
    slurm("scancel", "--signal=USR2", job_id)
    results = sub.wait()[0][0]
    ranks = results if isinstance(results, list) else [results]
    assert all(r["status"] == "completed" and r["step"] == 8 for r in ranks), ranks
    assert 4 <= ranks[0]["resumed_from"] < 8, ranks[0]
    events = read_events(run)
    assert [e["event"] for e in events] == ["requeue"] and events[0]["step"] == ranks[0]["resumed_from"], events
    from slurm_fixtures import sacct_state

    sacct_state(job_id, until=["COMPLETED"])  # slurmdbd records the end asynchronously
    history = slurm("sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State,NNodes")
    assert history.split() == ["REQUEUED|2", "COMPLETED|2"], history
    assert_same_weights(reference / "final", run / "final")


@slow
def test_continue_pretraining_from_a_hugging_face_checkpoint(tmp_path, corpus, reference):
    """`model:` instead of `model_config:` — CaMA's case (LLaMA-13B); here the reference run's export,
    one process without DeepSpeed; the tokenizer defaults to the checkpoint's own."""
    import yaml

    cfg = pretrain_config(tmp_path, corpus, reference / "final", tmp_path / "run", model_config=None,
                          model=str(reference / "final"), deepspeed=None, max_steps=2, save_steps=2)
    values = yaml.safe_load(cfg.read_text())
    del values["model_config"], values["tokenizer"]
    cfg.write_text(yaml.safe_dump(values))
    run = single_process(cfg)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "completed at step 2" in run.stdout
    first = [r for r in log_records(tmp_path / "run") if "loss" in r][0]
    start = [r for r in log_records(reference) if "loss" in r]
    assert first["loss"] < start[0]["loss"], "continued from the trained weights, not from scratch"


# --- before step one, before torch: config errors and the tokenizer's fingerprint (fast) ----------------

HEAVY = ("torch", "transformers", "deepspeed", "peft")
# Runs a training CLI in this interpreter's way (``python -m``) and reports which heavy frameworks it imported.
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(%r))
print("HEAVY:" + ",".join(heavy))
sys.exit(code)
""" % (HEAVY,)


def probe(module: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    run = subprocess.run([sys.executable, "-c", PROBE, module, *args], cwd=ROOT, env=env(), capture_output=True,
                         text=True, timeout=60)
    heavy = [line for line in run.stdout.splitlines() if line.startswith("HEAVY:")]
    assert heavy, run.stdout + run.stderr
    return run, [m for m in heavy[-1].removeprefix("HEAVY:").split(",") if m]


def write_yaml(path: Path, values: dict) -> Path:
    import yaml

    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return path


@pytest.mark.parametrize("module, values, expect", [
    ("train.pretrain", {"data": "d", "tokenizer": "t", "output_dir": "o", "model_config": {"hiden_size": 64}},
     "model_config: unknown key 'hiden_size' (did you mean 'hidden_size'?"),
    ("train.pretrain", {"data": "d", "tokenizer": "t", "output_dir": "o", "model_config": {"hidden_size": "wide"}},
     "model_config: key 'hidden_size': expected an integer, got 'wide'"),
    ("train.pretrain", {"data": "d", "tokenizer": "t", "output_dir": "o", "micro_batch_sise": 2},
     "unknown key 'micro_batch_sise' (did you mean 'micro_batch_size'?"),
    ("train.lora", {"base": "b", "data": "d", "output_dir": "o", "lora_rank": 8}, "unknown key 'lora_rank' (did you mean 'lora_r'?"),
    ("train.lora", {"base": "b", "data": "d", "output_dir": "o", "lora_r": 0}, "lora_r must be ≥ 1"),
])
def test_a_config_error_exits_2_with_one_line_and_without_importing_torch(tmp_path, module, values, expect):
    import time

    cfg = write_yaml(tmp_path / "bad.yaml", values)
    started = time.monotonic()
    run, heavy = probe(module, "--config", str(cfg))
    seconds = time.monotonic() - started
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{module}: error: {cfg}: "), run.stderr
    assert expect in lines[0]
    assert heavy == [], f"{module} imported {heavy} before reporting a config error"
    assert seconds < 10  # < 1 s on an idle machine; generous for a loaded test runner


def test_print_config_lists_every_key_of_the_nested_model_config(tmp_path):
    cfg = write_yaml(tmp_path / "ok.yaml", {"data": "d", "tokenizer": "t", "output_dir": "o",
                                            "model_config": {"hidden_size": 64}})
    run, heavy = probe("train.pretrain", "--config", str(cfg), "--print-config", "--set", "max_steps=3")
    assert run.returncode == 0, run.stderr
    assert "  hidden_size: 64  # default: 4096" in run.stdout
    assert "  rms_norm_eps: 1.0e-06" in run.stdout and "max_steps: 3  # default: -1" in run.stdout
    assert heavy == []


def test_a_tokenizer_other_than_the_corpus_one_is_refused_before_torch(tmp_path):
    """The corpus's PREFIX.json records the sha256 of its tokenizer.model; another file is refused by name."""
    from common.markers import file_sha256

    built_with, given = tmp_path / "built.model", tmp_path / "given.model"
    built_with.write_bytes(b"the corpus's tokenizer")
    given.write_bytes(b"another tokenizer of the same size")
    (tmp_path / "corpus.json").write_text(json.dumps(
        {"tokenizer": {"path": str(built_with), "sha256": file_sha256(built_with), "vocab_size": 3000}}))
    cfg = write_yaml(tmp_path / "job.yaml", {"data": str(tmp_path / "corpus"), "tokenizer": str(given),
                                             "output_dir": str(tmp_path / "run"), "model_config": {"hidden_size": 32,
                                             "num_attention_heads": 4}, "cpu": True})
    run, heavy = probe("train.pretrain", "--config", str(cfg))
    assert run.returncode == 2, run.stderr
    err = run.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith("train.pretrain: error: tokenizer ")
    for part in (str(given), file_sha256(given), str(tmp_path / "corpus.json"), str(built_with), file_sha256(built_with)):
        assert part in err
    assert heavy == []
    assert not (tmp_path / "run").exists()


def test_the_tokenizer_fingerprint_of_pairs_and_mixes(tmp_path):
    from common.markers import file_sha256
    from train.config import TrainError
    from train.fingerprint import check_data_tokenizer, recorded_tokenizers

    tok = tmp_path / "tok" / "tokenizer.model"
    tok.parent.mkdir()
    tok.write_bytes(b"pieces")
    sha = file_sha256(tok)
    for name, recorded in (("a", sha), ("b", "0" * 64)):
        (tmp_path / f"{name}.idx").write_bytes(b"")
        (tmp_path / f"{name}.json").write_text(json.dumps({"tokenizer": {"path": "x", "sha256": recorded}}))
    assert check_data_tokenizer(tok.parent, tmp_path / "a") == sha      # a folder holding tokenizer.model
    assert check_data_tokenizer(tok, f"{tmp_path / 'a'}.idx") == sha    # a suffix is allowed
    with pytest.raises(TrainError, match=r"b\.json was built with \(x\) \(sha256 0{64}\)"):
        check_data_tokenizer(tok, tmp_path / "b")
    # A mix: every source's report is compared (relative prefixes resolve from the mix's folder).
    (tmp_path / "m.mix.json").write_text(json.dumps({"tokenizer_sha256": sha, "tokenizer_path": str(tok),
                                                     "sources": [{"prefix": "a"}, {"prefix": str(tmp_path / "b")}]}))
    assert [r[0].name for r in recorded_tokenizers(tmp_path / "m")] == ["m.mix.json", "a.json", "b.json"]
    with pytest.raises(TrainError, match="b.json was built with"):
        check_data_tokenizer(tok, tmp_path / "m.mix.json")
    # Nothing recorded (an older build), or a tokenizer without tokenizer.model: nothing to compare.
    (tmp_path / "c.json").write_text(json.dumps({"counts": {}}))
    assert check_data_tokenizer(tok, tmp_path / "c") is None
    assert check_data_tokenizer(tmp_path, tmp_path / "b") is None


def test_model_config_is_typed_with_llama_defaults():
    from common.config import ConfigError, from_dict
    from train.config import ModelConfig
    from train.pretrain import PretrainConfig

    cfg = from_dict(PretrainConfig, {"data": "d", "tokenizer": "t", "output_dir": "o",
                                     "model_config": {"hidden_size": 64, "num_attention_heads": 4}}, "job.yaml")
    assert isinstance(cfg.model_config, ModelConfig)
    kwargs = cfg.model_config.llama_kwargs(vocab_size=3000, seq_length=256)
    assert kwargs["vocab_size"] == 3000 and kwargs["max_position_embeddings"] == 256
    assert (kwargs["hidden_size"], kwargs["intermediate_size"], kwargs["num_hidden_layers"], kwargs["rms_norm_eps"]) == \
        (64, 11008, 32, 1e-6)
    # Built in code (bench/, hpc): a plain mapping is checked the same way.
    direct = PretrainConfig(data="d", tokenizer="t", output_dir="o", model_config={"hidden_size": 64,
                                                                                  "num_attention_heads": 4})
    assert direct.model_config == cfg.model_config
    with pytest.raises(ConfigError, match=r"model_config: unknown key 'hiden_size' \(did you mean 'hidden_size'"):
        PretrainConfig(data="d", tokenizer="t", output_dir="o", model_config={"hiden_size": 64})
    with pytest.raises(ConfigError, match="hidden_size 64 is not a multiple of num_attention_heads 5"):
        ModelConfig(hidden_size=64, num_attention_heads=5)
    # A config.json path stays a path.
    assert from_dict(PretrainConfig, {"data": "d", "tokenizer": "t", "output_dir": "o",
                                      "model_config": "config.json"}).model_config == "config.json"
