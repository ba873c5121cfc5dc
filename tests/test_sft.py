"""Full-parameter instruction tuning (train.sft) under ZeRO-3 on the CPU, 2 processes over gloo: the loss
on the answers goes down with the prompts masked, the export is a plain HF checkpoint with every weight
moved; a signal to one rank stops every rank at the same step and the resumed run ends bit-identical,
here and on the dev Slurm cluster through `hpc.submit sft` (2 nodes, requeued); config errors come first."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from train_helpers import (ROOT, assert_same_weights, env, launch, run_ranks, signal_rank, state_dict, tail,
                           tiny_base, wait_all, wait_for_file)

slow = pytest.mark.slow  # real ZeRO-3 training; the checks before step one are fast
DATA = ROOT / "examples/data/instructions/en.jsonl"


def sft_config(tmp: Path, base: Path, out: Path, **over) -> Path:
    """Micro batch 1 × 2 ranks × accumulation 2 over the 10 records that fit cutoff_len: 3 optimizer
    steps an epoch, so 8 steps run into a third epoch and a stop after step 4 resumes inside epoch 1.
    Gradient checkpointing and the warm-up as a share of the steps stay on (the 13B config's)."""
    cfg = {"base": str(base), "data": str(DATA), "output_dir": str(out), "cutoff_len": 128, "cpu": True,
           "deepspeed": "zero3", "micro_batch_size": 1, "batch_size": 4, "learning_rate": 1e-2,
           "warmup_steps": 0, "warmup_ratio": 0.25, "max_steps": 8, "save_steps": 4, "logging_steps": 1,
           "dataloader_workers": 0, "report_to": [], "seed": 11, **over}
    path = tmp / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory, tokenizer_path) -> Path:
    return tiny_base(tmp_path_factory.mktemp("base"), tokenizer_path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, base) -> Path:
    """An uninterrupted run: the weights every resumed run must end with."""
    tmp = tmp_path_factory.mktemp("sft-ref")
    cfg = sft_config(tmp, base, tmp / "run")
    assert run_ranks("train.sft", cfg, 2, tmp / "logs") == [0, 0], tail(tmp / "logs")
    assert "completed at step 8; model exported to" in tail(tmp / "logs", 10**6)
    return tmp / "run"


def _training_batches(cfg_path: Path, base: Path) -> tuple[list, object, object]:
    """The run's training examples, made the way train.sft makes them (train.instruct), and the collator."""
    from common.config import load_config
    from train.instruct import instruction_data
    from train.sft import SftConfig
    from train.tokenizer import load_tokenizer

    cfg = load_config(SftConfig, cfg_path)
    tokenizer = load_tokenizer(base)
    args = SimpleNamespace(process_index=0, per_device_train_batch_size=1, gradient_accumulation_steps=1, world_size=1)
    data = instruction_data(cfg, tokenizer, args, "test")
    return [data.train_set[i] for i in range(len(data.train_set))], data.collator, tokenizer


def _answer_loss(model_dir: Path, examples: list, collator) -> float:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        losses = [float(model(**collator([e])).loss) for e in examples]
    return sum(losses) / len(losses)


@slow
def test_full_tuning_lowers_the_answer_loss_and_exports_a_loadable_checkpoint_with_every_weight_moved(
        reference, base):
    examples, collator, tokenizer = _training_batches(reference.parent / "run.yaml", base)
    assert len(examples) == 10
    # The prompt is masked: the labels are -100 exactly up to the end of "### Response:", then the answer.
    for e in examples:
        ids, labels = e["input_ids"], e["labels"]
        n = next(i for i, label in enumerate(labels) if label != -100)
        assert all(label == -100 for label in labels[:n]) and labels[n:] == ids[n:]
        prompt, answer = tokenizer.decode(ids[:n]), tokenizer.decode(ids[n:], skip_special_tokens=True)
        assert prompt.rstrip().endswith("### Response:") and "### Instruction:" in prompt
        assert "###" not in answer and answer.strip()
        # add_eos: the model learns to stop — unless the answer was cut at cutoff_len.
        assert ids[-1] == tokenizer.eos_token_id or len(ids) == 128
    assert sum(e["input_ids"][-1] == tokenizer.eos_token_id for e in examples) >= 5

    final = reference / "final"
    # A plain Hugging Face checkpoint: safetensors, config, tokenizer; no pickles.
    assert (final / "config.json").is_file() and (final / "tokenizer.model").is_file()
    assert list(final.glob("*.safetensors")) and not list(final.glob("*.bin"))
    from transformers import AutoModelForCausalLM

    assert type(AutoModelForCausalLM.from_pretrained(str(final))).__name__ == "LlamaForCausalLM"
    tuned, raw = state_dict(final), state_dict(base)
    assert tuned.keys() == raw.keys() and all(tuned[k].shape == raw[k].shape for k in raw)
    import torch

    unchanged = [k for k in raw if torch.equal(tuned[k], raw[k])]
    assert not unchanged, f"full tuning left {unchanged} as they were"   # not an adapter: every tensor moved

    before, after = _answer_loss(base, examples, collator), _answer_loss(final, examples, collator)
    assert after < before - 1.0, (before, after)  # nats per answer token, from ln(3000) ≈ 8
    logged = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 9))
    assert logged[-1]["loss"] < logged[0]["loss"]
    # warmup_ratio 0.25 of 8 steps: up to the peak in 2 steps, then the cosine down.
    lr = [r["lr"] for r in logged]
    assert lr[0] == pytest.approx(0.5e-2) and lr[1] == pytest.approx(1e-2)
    assert all(a > b for a, b in zip(lr[1:], lr[2:])), lr


@slow
def test_an_incomplete_export_is_refused(tmp_path, reference, base):
    """The check behind the export has teeth: ZeRO-3's empty partitions, or a missing tensor, are named."""
    from safetensors.torch import save_file

    from train.config import TrainError
    from train.sft import check_complete

    check_complete(reference / "final", base)
    tensors = state_dict(reference / "final")
    first = sorted(tensors)[0]
    import torch

    emptied = {k: (torch.empty(0) if k == first else v) for k, v in tensors.items()}
    save_file(emptied, str(tmp_path / "model.safetensors"))
    with pytest.raises(TrainError, match=rf"incomplete .*e\.g\. {first} has shape \(0,\)"):
        check_complete(tmp_path, base)
    save_file({k: v for k, v in tensors.items() if k != first}, str(tmp_path / "model.safetensors"))
    with pytest.raises(TrainError, match=rf"1 tensor\(s\) of .* missing.*stage3_gather_16bit_weights_on_model_save"):
        check_complete(tmp_path, base)


@slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_and_the_resumed_run_is_bit_identical(
        tmp_path, base, reference):
    run = tmp_path / "run"
    cfg = sft_config(tmp_path, base, run)
    logs = tmp_path / "logs"
    procs = launch("train.sft", cfg, 2, logs)
    wait_for_file(run / "checkpoint-4" / "COMPLETE.json", procs, logs)
    signal_rank(procs, 1)  # not rank 0: the stop is agreed over the process group
    assert wait_all(procs, logs) == [0, 0], tail(logs)
    text = tail(logs, 10**6)
    assert "rank 1: SIGUSR2 received" in text and "rank 0: SIGUSR2 received" not in text
    assert "preempted at step" in text and not (run / "final").exists()
    stopped = int(text.split("preempted at step ")[1].split(";")[0])
    assert 4 < stopped < 8, stopped
    print(f"rank 1 signalled after checkpoint-4; every rank stopped and saved at step {stopped}")
    # Both ranks saved their ZeRO-3 partitions of that same step, and the checkpoint is sealed.
    saved = run / f"checkpoint-{stopped}"
    assert (saved / "COMPLETE.json").is_file()
    parts = sorted(p.name for p in (saved / f"global_step{stopped}").glob("*optim_states.pt"))
    assert len(parts) == 2 and "rank_0" in parts[0] and "rank_1" in parts[1], parts
    assert max(int(p.name.split("-")[1]) for p in run.glob("checkpoint-*")) == stopped

    assert run_ranks("train.sft", cfg, 2, logs) == [0, 0], tail(logs)
    assert f"resuming from {saved} (step {stopped})" in tail(logs, 10**6)
    assert_same_weights(reference / "final", run / "final")


@slow
@pytest.mark.slurm
def test_preempted_on_slurm_through_hpc_submit_sft_requeues_and_ends_with_the_same_weights(
        slurm_cluster, tmp_path, base, reference):
    """2 nodes × 1 process of real ZeRO-3 over gloo on the dev cluster; USR2 through Slurm to every task;
    the job saves, requeues itself, resumes and ends with the uninterrupted run's weights."""
    from hpc import submit
    from hpc.preempt import read_events
    from slurm_fixtures import sacct_state, slurm

    run = tmp_path / "run"
    # Checkpoints every 2 steps (save_steps does not change the weights): the signal goes out after
    # checkpoint-2, leaving six steps for it to arrive — after checkpoint-4 a quiet machine could finish
    # the last four and export before srun delivered it.
    cfg = sft_config(tmp_path, base, run, save_steps=2)
    sub = submit.submit("sft", cfg, "dev", nodes=2, gpus_per_node=1, log_folder=str(tmp_path / "logs"))
    job_id = sub.job_ids[0]
    end = time.monotonic() + 300
    while not (run / "checkpoint-2" / "COMPLETE.json").exists():
        assert time.monotonic() < end, f"no checkpoint-2 after 300 s; job {job_id}: " + slurm(
            "sacct", "-j", job_id, "-o", "JobID,State,ExitCode", check=False)
        time.sleep(0.5)
    slurm("scancel", "--signal=USR2", job_id)
    results = sub.wait()[0][0]
    ranks = results if isinstance(results, list) else [results]
    assert len(ranks) == 2 and all(r["status"] == "completed" and r["step"] == 8 for r in ranks), ranks
    assert 2 <= (ranks[0]["resumed_from"] or 0) < 8 and ranks[0]["export"] == str(run / "final"), ranks[0]
    events = read_events(run)
    assert [e["event"] for e in events] == ["requeue"] and events[0]["step"] == ranks[0]["resumed_from"], events
    sacct_state(job_id, until=["COMPLETED"])  # slurmdbd records the end asynchronously
    history = slurm("sacct", "-n", "-X", "-P", "--duplicates", "-j", job_id, "-o", "State,NNodes")
    assert history.split() == ["REQUEUED|2", "COMPLETED|2"], history
    assert_same_weights(reference / "final", run / "final")
    print(f"job {job_id}: USR2 after checkpoint-2, requeued, resumed from step {ranks[0]['resumed_from']}, "
          f"sacct {history.split()}; final weights identical to the uninterrupted run's")


# --- before step one, before torch (fast) ----------------------------------------------------------------

HEAVY = ("torch", "transformers", "deepspeed", "peft")
PROBE = """
import runpy, sys
sys.argv = [sys.argv[1], *sys.argv[2:]]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
print("HEAVY:" + ",".join(sorted({m.split(".")[0] for m in sys.modules} & set(%r))))
sys.exit(code)
""" % (HEAVY,)


def probe(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    run = subprocess.run([sys.executable, "-c", PROBE, "train.sft", *args], cwd=ROOT, env=env(), capture_output=True,
                         text=True, timeout=60)
    heavy = [line for line in run.stdout.splitlines() if line.startswith("HEAVY:")]
    assert heavy, run.stdout + run.stderr
    return run, [m for m in heavy[-1].removeprefix("HEAVY:").split(",") if m]


@pytest.mark.parametrize("values, expect", [
    ({"lerning_rate": 1e-5}, "unknown key 'lerning_rate' (did you mean 'learning_rate'?"),
    ({"warmup_steps": 10}, "give one of warmup_steps (10) and warmup_ratio (0.03); set the other to 0"),
    ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1), got 1.5"),
    ({"cutoff_len": 4}, "cutoff_len must be ≥ 8, got 4"),
    ({"lr_scheduler": "cosin"}, "lr_scheduler: 'cosin' is not one of"),
    ({"lora_r": 8}, "unknown key 'lora_r'"),   # full tuning has no adapter to shape
])
def test_a_config_error_exits_2_with_one_line_and_without_importing_torch(tmp_path, values, expect):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump({"base": "b", "data": "d", "output_dir": "o", **values}), encoding="utf-8")
    run, heavy = probe("--config", str(cfg))
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"train.sft: error: {cfg}: "), run.stderr
    assert expect in lines[0] and heavy == []


def test_a_missing_base_model_or_another_tokenizer_is_refused_before_torch(tmp_path):
    missing = tmp_path / "pretrain" / "final"
    cfg = tmp_path / "job.yaml"
    cfg.write_text(yaml.safe_dump({"base": str(missing), "data": str(DATA), "output_dir": str(tmp_path / "run"),
                                   "cpu": True}))
    run, heavy = probe("--config", str(cfg))
    assert run.returncode == 2 and heavy == [], run.stderr
    assert run.stderr.startswith(f"train.sft: error: base: the base model folder {missing} does not exist")

    base = tmp_path / "base"
    base.mkdir()
    (base / "tokenizer.model").write_bytes(b"the base's pieces")
    other = tmp_path / "other.model"
    other.write_bytes(b"other pieces")
    cfg.write_text(yaml.safe_dump({"base": str(base), "data": str(DATA), "tokenizer": str(other),
                                   "output_dir": str(tmp_path / "run"), "cpu": True}))
    run, heavy = probe("--config", str(cfg))
    assert run.returncode == 2 and heavy == [], run.stderr
    assert run.stderr.startswith(f"train.sft: error: tokenizer {other}")
    assert "not the one saved with the base" in run.stderr
    assert not (tmp_path / "run").exists()


def test_full_tuning_defaults_are_alpacas_and_the_shipped_configs_load():
    from common.config import load_config
    from train.instruct import InstructionConfig
    from train.sft import SftConfig

    cfg = SftConfig(base="b", data="d", output_dir="o")
    assert isinstance(cfg, InstructionConfig)
    assert (cfg.learning_rate, cfg.lr_scheduler, cfg.warmup_ratio, cfg.warmup_steps, cfg.weight_decay,
            cfg.gradient_checkpointing, cfg.batch_size, cfg.num_epochs, cfg.train_on_inputs) == \
        (2e-5, "cosine", 0.03, 0, 0.0, True, 128, 3.0, False)
    cama = load_config(SftConfig, ROOT / "configs/sft/cama13b_sft_3x8v100.yaml")
    assert (cama.precision, cama.deepspeed, cama.offload, cama.micro_batch_size, cama.batch_size) == \
        ("fp16", "zero3", "none", 4, 96)
    assert cama.batch_size % (cama.micro_batch_size * 24) == 0       # splits over 3 × 8 ranks
    tiny = load_config(SftConfig, ROOT / "configs/tiny/sft.yaml")
    assert tiny.cpu and tiny.deepspeed == "zero3" and tiny.batch_size % (tiny.micro_batch_size * 2) == 0


def test_hpc_submit_sft_dry_runs_on_3_nodes_of_8_v100s_and_on_the_dev_profile(tmp_path):
    import re

    from hpc import submit

    script = submit.dry_run("sft", ROOT / "configs/sft/cama13b_sft_3x8v100.yaml", "cama_3x8v100")
    opts = dict(re.findall(r"#SBATCH (--[\w-]+)=(\S+)", script))
    assert (opts["--nodes"], opts["--ntasks-per-node"], opts["--gpus-per-node"]) == ("3", "8", "v100:8")
    assert opts["--signal"] == "USR2@300" and "train.sft:main" in script
    script = submit.dry_run("sft", ROOT / "configs/tiny/sft.yaml", "dev")
    opts = dict(re.findall(r"#SBATCH (--[\w-]+)=(\S+)", script))
    assert (opts["--nodes"], opts["--ntasks-per-node"]) == ("1", "2")
    from common.config import ConfigError

    with pytest.raises(ConfigError, match=r"batch_size 4 is not a multiple of micro_batch_size × ranks = 2 × 8"):
        submit.plan("sft", ROOT / "configs/tiny/sft.yaml", "dev", submit.Request(gpus_per_node=8))
