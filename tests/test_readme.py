"""The README's commands, run in order on a clean copy of the tree, so the README cannot drift.

Every command line in the README's ``sh`` blocks is either in RUN — run here, in README order, each
after the ones before it, in a copy of the tracked files (what a new user has after ``git clone``) —
or in NOT_RUN with the reason it cannot run in a test and the test that covers it instead. A command
added to the README without being classified here fails the first test; a RUN command that no longer
appears verbatim in the README (after its comment) fails too.

RUN pairs the README's line (comment stripped) with the command actually run: the same line with the
optional ``[…]`` parts left out, or one of them chosen (``--local`` where the line offers it, so the
test never depends on a cluster being up), ``python`` being this interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# (README line, what runs). In README order; each may use the files the ones before it wrote.
RUN: list[tuple[str, str]] = [
    ("python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml [--local] [--follow]",
     "python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml --local"),
    ("python -m train.pretrain --config configs/tiny/pretrain.yaml --print-config",
     "python -m train.pretrain --config configs/tiny/pretrain.yaml --print-config"),
    ("python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml --set pretrain.max_steps=4 --print-config",
     "python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml --set pretrain.max_steps=4 --print-config"),
    ("python -m corpus train-tokenizer --input examples/data/corpus --vocab-size 3000 --out build/demo/tokenizer.model",
     "python -m corpus train-tokenizer --input examples/data/corpus --vocab-size 3000 --out build/demo/tokenizer.model"),
    ("python -m corpus build --config configs/tiny/corpus.yaml [--workers 8] [--tasks N]",
     "python -m corpus build --config configs/tiny/corpus.yaml"),
    ("python -m corpus plan --config configs/tiny/corpus.yaml [--json]",
     "python -m corpus plan --config configs/tiny/corpus.yaml --json"),
    ("python -m corpus run-task --config configs/tiny/corpus.yaml --stage build --task 0",
     "python -m corpus run-task --config configs/tiny/corpus.yaml --stage build --task 0"),
    ("python -m corpus inspect build/demo/corpus/corpus/corpus_text_document --decode 0",
     "python -m corpus inspect build/demo/corpus/corpus/corpus_text_document --decode 0"),
    ("python -m corpus validate build/demo/corpus/corpus/corpus_text_document --tokenizer build/demo/tokenizer.model",
     "python -m corpus validate build/demo/corpus/corpus/corpus_text_document --tokenizer build/demo/tokenizer.model"),
    ("python -m train.pretrain --config configs/tiny/pretrain.yaml",
     "python -m train.pretrain --config configs/tiny/pretrain.yaml"),
    ("python -m train.ie --task ner --input examples/data/ie/ner_zh.bio --lang zh --out ner.jsonl",
     "python -m train.ie --task ner --input examples/data/ie/ner_zh.bio --lang zh --out ner.jsonl"),
    ("python -m train.generate --base build/demo/run/restored --cases examples/cases/general.jsonl --out out.jsonl",
     "python -m train.generate --base build/demo/run/restored --cases examples/cases/general.jsonl --out out.jsonl"),
    ("python -m hpc.submit pretrain --config configs/pretrain/cama13b_3x8v100.yaml --cluster cama_3x8v100 --dry-run",
     "python -m hpc.submit pretrain --config configs/pretrain/cama13b_3x8v100.yaml --cluster cama_3x8v100 --dry-run"),
    ("python -m corpus build --config configs/tiny/sources.yaml",
     "python -m corpus build --config configs/tiny/sources.yaml"),
    ("python -m corpus report build/tiny-sources",
     "python -m corpus report build/tiny-sources"),
    ("python -m corpus mix --config configs/tiny/mix.yaml",
     "python -m corpus mix --config configs/tiny/mix.yaml"),
    ("python -m corpus calibrate --labelled tests/data/real/calibration.jsonl --config configs/corpus/filters.yaml",
     "python -m corpus calibrate --labelled tests/data/real/calibration.jsonl --config configs/corpus/filters.yaml"),
]

# README line (a prefix of it is enough) → why it is not run here, and what tests it instead.
NOT_RUN: dict[str, str] = {
    "make demo": "installs, then runs the pipeline line above (run here with --local)",
    "make test": "this test suite itself",
    "make demo-sources": "the two `corpus build/report … sources` lines, run here",
    "make install-": "installs into .venv (what `make test` has just done)",
    "make cluster-": "the dev cluster: tests/test_devcluster.py and the slurm fixture",
    "source /tmp/cama-devcluster/slurm.env": "the dev cluster's environment (tests/slurm_fixtures.py)",
    "sinfo; sbatch": "plain Slurm commands on the dev cluster",
    "python -m train.pretrain --config configs/tiny/pretrain.yaml --set max_steps=20":
        "a second training run of the line above; --set on training configs: tests/test_pretrain.py",
    "torchrun --nproc_per_node 2": "ZeRO-3 over gloo with 2 ranks: tests/test_pretrain.py",
    "sbatch slurm/": "a 3 × 8 V100 cluster; the scripts' shapes and runs: tests/test_slurm_scripts.py",
    "python -m train.lora --config configs/lora/cama13b_lora_1x8v100.yaml": "LLaMA-13B on 8 GPUs; tiny LoRA: tests/test_lora.py",
    "python -m recover ": "LLaMA-13B folders (placeholders); every recover command on tiny models: tests/test_recover_*.py",
    "python -m corpus merge OUT_PREFIX": "placeholder prefixes; merge: tests/test_build.py, tests/test_indexed.py",
    "python -m corpus mix --config configs/corpus/mix_cama.yaml": "prefixes on a cluster's filesystem; mix: tests/test_mix.py",
    "python -m train.generate --base DIR --lora ADAPTER --interactive": "interactive; tests/test_generate.py",
    "python -m train.generate --base DIR --lora ADAPTER --chat": "interactive; the history through stdin: tests/test_generate.py",
    "python -m train.web": "a server; driven in headless Chromium by tests/test_web.py",
    "python -m hpc.submit corpus --config": "needs the dev cluster: tests/test_submit.py, tests/test_pipeline.py",
    "python -m hpc.status": "reads this machine's Slurm state: tests/test_status.py",
}

_COMMENT = re.compile(r"\s{2,}#.*$|^\s*#.*$")


def readme_commands() -> list[str]:
    lines, inside = [], False
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = line.strip() == "```sh" and not inside
            continue
        if inside:
            command = _COMMENT.sub("", line).strip()
            if command:
                lines.append(command)
    return lines


def test_every_readme_command_is_run_or_says_why_not() -> None:
    commands = readme_commands()
    assert len(commands) > 20, "the README's sh blocks were not found"
    run = [line for line, _ in RUN]
    unclassified = [c for c in commands if c not in run and not any(c.startswith(p) for p in NOT_RUN)]
    assert not unclassified, f"README commands neither run by this test nor listed in NOT_RUN: {unclassified}"
    missing = [line for line in run if line not in commands]
    assert not missing, f"commands this test runs that the README no longer has: {missing}"
    order = [commands.index(line) for line in run]
    assert order == sorted(order), "RUN is not in README order"
    used = [p for p in NOT_RUN if any(c.startswith(p) for c in commands)]
    assert used == list(NOT_RUN), f"NOT_RUN names commands the README no longer has: {set(NOT_RUN) - set(used)}"


def _clean_copy(dest: Path) -> None:
    """The tracked files only: what `git clone` gives, without this checkout's build/ or .venv."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


@pytest.mark.slow
def test_readme_commands_run_in_order_on_a_clean_tree(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    _clean_copy(tree)
    env = {**os.environ, "PYTHONPATH": str(tree), "CAMA_CLUSTER": "dev"}
    env.pop("SLURM_CONF", None)
    for line, command in RUN:
        argv = command.split()
        argv[0] = sys.executable if argv[0] == "python" else argv[0]
        r = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"README command failed: {command}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    # What the walkthrough promises is there.
    assert (tree / "build/demo/tokenizer.model").is_file()
    assert (tree / "build/demo/corpus/blend.mix.json").is_file()
    assert (tree / "build/demo/pretrain/final/config.json").is_file()
    assert (tree / "build/demo/run/report.md").is_file() and (tree / "build/demo/run/restored").is_dir()
    outputs = [json.loads(x) for x in (tree / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert outputs and all("output" in o for o in outputs)
    assert (tree / "build/tiny-sources/report.md").is_file()
    mix = json.loads((tree / "build/demo/mix.mix.json").read_text(encoding="utf-8"))
    assert [m["samples"] for m in mix["sources"]] == [60, 4, 12]
    assert (tree / "ner.jsonl").stat().st_size > 0
