"""Corpus plan benchmark: the JSON-lines build and the full raw-source plan against sentencepiece alone.

    PYTHONPATH=. python bench/corpus_pipeline.py [--mb 4] [--repeat 3] [--seed 0] [--vocab-size 32000]
                                                 [--tok-mb 30] [--no-rss] [--no-profile]

Inputs are generated JSON lines (``bench/gen_corpus.py``, cached under ``bench/.cache/``): Chinese
only, the mixed zh/en/code corpus, and code only, ``--mb`` MB of text each. One worker on both sides,
in this process (the figures are per core; on a shared machine that is what can be measured).
Printed, medians of ``--repeat`` runs:

1. **Whole-document tokenization**, per language mix: ``corpus build`` of the JSON-lines config (the
   plan's build + mix stages: read, parse, whole-document encode, token offsets, sentence split where
   a document is longer than a sample, packing, ``.bin/.idx`` + sidecar writing) against the
   tokenizer-only baseline (read the lines, ``json.loads``, ``sp.encode`` of the same documents in
   batches, ids as Python lists — how sentencepiece is usually called). Target: ratio ≤ 1.3. Also
   against the same baseline with ids as numpy buffers (``return_type="numpy"``, which the build
   uses): the overhead over the fastest possible tokenization.
2. **The full raw-source plan** on the mixed corpus (read → clean → filter → exact + near dedup →
   tokenize + pack → write → mix) against the same tokenizer-only baseline. Target: ≤ 2.0. With the
   share of the time of each stage and, inside prepare, of each step (reader, clean, filter, MinHash
   signatures, exact keys; the rest is writing the shard's rows and documents).
3. **Peak RSS of the process tree** of ``python -m corpus build`` running the full plan at 1× and 4×
   the input (sampled from /proc every 50 ms). Target: 4×/1× ≤ 1.1.
4. **Where the zh-only build's time goes** (cProfile of one build): sentencepiece, offset mapping,
   sentence split, packing, writing, sidecar JSON, reading/parsing.

Figures only, no assertions; results also go to ``bench/.cache/pipeline-results-*.json``.
"""

from __future__ import annotations

import cProfile
import json
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from corpus_build import (CACHE, GEN, TreeRSS, _child_env, _gen_format, _tokenize_share,  # noqa: E402
                          ensure_tokenizer)

from common.cli import Parser  # noqa: E402

MIXES = {"zh-only": "zh=1", "mixed": "zh=0.55,en=0.3,code=0.15", "code-only": "code=1"}


def ensure_mix(mb: float, seed: int, tag: str) -> tuple[list[Path], dict]:
    """The generated corpus of one language mix (four files), generated once and reused."""
    d = CACHE / f"corpus-{mb:g}mb-seed{seed}-{tag}"
    man_path = d / "manifest.json"
    if man_path.is_file():
        man = json.loads(man_path.read_text(encoding="utf-8"))
        if man.get("format") == _gen_format() and all((d / f).is_file() for f in man["files"]):
            return [d / f for f in man["files"]], man
    print(f"generating {mb:g} MB {tag} corpus into {d} ...", flush=True)
    subprocess.run([sys.executable, str(GEN), "--out", str(d), "--mb", f"{mb:g}", "--seed", str(seed),
                    "--shares", MIXES[tag], "--file-mb", f"{mb / 4:g}", "--procs", "2"],
                   check=True, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    man = json.loads(man_path.read_text(encoding="utf-8"))
    return [d / f for f in man["files"]], man


def jsonl_config(files: list[Path], model: Path, out: Path, **extra) -> dict:
    cfg = {"output_dir": str(out), "tokenizer": str(model), "dedup": None, "seq_length": 1024, "workers": 1,
           "progress": False,
           "sources": [{"name": "corpus", "layout": "jsonl", "lang": "zh", "paths": [str(f) for f in files],
                        "options": {"fields": {"text": "text", "lang": "lang", "id": "id"}}}]}
    cfg.update(extra)
    return cfg


def full_config(files: list[Path], model: Path, out: Path) -> dict:
    """The raw-source plan on the same files: clean + filter + exact + near dedup, then the build."""
    cfg = jsonl_config(files, model, out, dedup={"threshold": 0.8, "scope": "global"})
    cfg["sources"][0]["steps"] = ["clean", "filter"]
    return cfg


def load(cfg: dict):
    from common.config import load_config
    from corpus.spec import CorpusConfig

    return load_config(CorpusConfig, None, values=cfg)


def tokenizer_only(files: list[Path], model: Path) -> float:
    """The baseline: JSON lines parsed, ``sp.encode(batch, num_threads=1)`` (ids as Python lists)."""
    t0 = time.perf_counter()
    _tokenize_share(([str(f) for f in files], str(model), 1 << 20))
    return time.perf_counter() - t0


def tokenizer_only_numpy(files: list[Path], model: Path) -> float:
    """The same with the ids as int32 buffers (``return_type="numpy"``, what the build uses): the
    fastest any pipeline could tokenize with sentencepiece."""
    import sentencepiece as spm

    t0 = time.perf_counter()
    sp = spm.SentencePieceProcessor(model_file=str(model))
    batch: list[str] = []
    size = 0
    for path in files:
        with open(path, "rb") as f:
            for line in f:
                batch.append(json.loads(line)["text"])
                size += len(line)
                if size >= 1 << 20:
                    sp.encode(batch, num_threads=1, return_type="numpy")
                    batch, size = [], 0
    if batch:
        sp.encode(batch, num_threads=1, return_type="numpy")
    return time.perf_counter() - t0


def run_plan_timed(cfg_dict: dict, out: Path) -> tuple[float, dict]:
    """One fresh run of the plan here; (wall seconds, seconds per stage)."""
    from corpus.plan import make_plan, run_task

    shutil.rmtree(out, ignore_errors=True)
    cfg = load(cfg_dict)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    for stage in make_plan(cfg):
        s0 = time.perf_counter()
        for t in range(stage.tasks):
            run_task(cfg, stage.name, t)
        stages[stage.name] = time.perf_counter() - s0
    return time.perf_counter() - t0, stages


class StepClock:
    """Seconds spent inside each prepare step (the reader's ``next``, each Step's ``apply``, the dedup
    rows' signatures and exact keys), by wrapping those functions for the duration of a run."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list = []

    def _wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        seconds = self.seconds

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                seconds[label] += time.perf_counter() - t0

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def __enter__(self) -> "StepClock":
        from corpus import pipeline, steps

        seconds = self.seconds
        original_read = pipeline.read_unit

        def read_unit(*args, **kwargs):
            it = iter(original_read(*args, **kwargs))
            while True:
                t0 = time.perf_counter()
                try:
                    doc = next(it)
                except StopIteration:
                    seconds["reader"] += time.perf_counter() - t0
                    return
                seconds["reader"] += time.perf_counter() - t0
                yield doc

        pipeline.read_unit = read_unit
        self._undo.append((pipeline, "read_unit", original_read))
        self._wrap(steps.Clean, "apply", "clean")
        self._wrap(steps.Filter, "apply", "filter")
        self._wrap(pipeline, "signatures", "minhash signatures")
        self._wrap(pipeline, "exact_key", "exact keys")
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


def rss_run(cfg_dict: dict, tag: str) -> dict:
    """``python -m corpus build`` of the config in a child process, its process tree's RSS sampled."""
    path = CACHE / f"pipeline-{tag}.yaml"
    shutil.rmtree(cfg_dict["output_dir"], ignore_errors=True)
    path.write_text(json.dumps(cfg_dict, indent=1) + "\n", encoding="utf-8")
    log = CACHE / f"pipeline-{tag}.log"
    with open(log, "wb") as logf:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "corpus", "build", "--config", str(path)], cwd=REPO,
                                env=_child_env(), stdout=logf, stderr=subprocess.STDOUT)
        sampler = TreeRSS(proc.pid)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop_event.set()
        sampler.join()
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        print(log.read_text(encoding="utf-8", errors="replace")[-3000:])
        raise SystemExit(f"the build of {path} failed (exit {rc})")
    return {"wall": wall, "peak_total_mb": sampler.peak_total / 1024, "peak_main_mb": sampler.peak_main / 1024,
            "ru_maxrss_mb": ru.ru_maxrss / 1024, "samples": sampler.samples}


# Where a build's time goes: (label, how to find the functions in cProfile's table), by cumulative time.
PROFILE_PARTS = (
    ("sentencepiece encode", lambda f, n: n in ("Encode", "EncodeAsIds", "_EncodeAsIds", "_EncodeAsIdsBatch")
     and "sentencepiece" in f),
    ("token offsets (encode_with_ends - encode)", lambda f, n: n == "encode_with_ends"),
    ("sentence split (sentence_token_ends)", lambda f, n: n == "sentence_token_ends"),
    ("packing (pack_ends + materialize)", lambda f, n: n in ("pack_ends", "materialize") and f.endswith("pack.py")),
    ("writing .bin/.idx (_write_batch + finalize)", lambda f, n: (n == "_write_batch" and f.endswith("build.py"))
     or (n == "finalize" and f.endswith("indexed.py"))),
    ("sidecar JSON (sidecar_line)", lambda f, n: n == "sidecar_line"),
    ("reading + JSON parsing (batches, parse_record)", lambda f, n: n in ("batches", "parse_record")
     and f.endswith("build.py")),
)


def profile_build(cfg_dict: dict, out: Path) -> tuple[float, list[tuple[str, float]]]:
    from corpus.plan import run_plan

    shutil.rmtree(out, ignore_errors=True)
    cfg = load(cfg_dict)
    prof = cProfile.Profile()
    prof.enable()
    run_plan(cfg)
    prof.disable()
    stats = pstats.Stats(prof).stats   # (file, line, name) -> (cc, nc, tottime, cumtime, callers)
    total = sum(v[2] for v in stats.values())
    cum: dict[str, float] = defaultdict(float)
    for (file, _, name), (_, _, _, cumtime, _) in stats.items():
        for label, match in PROFILE_PARTS:
            if match(file, name):
                cum[label] += cumtime
    enc = cum["sentencepiece encode"]
    cum["token offsets (encode_with_ends - encode)"] -= enc   # encode_with_ends calls the encoder
    return total, [(label, cum[label]) for label, _ in PROFILE_PARTS]


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=4.0, help="MB of text of each language mix (1x)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--tok-mb", type=float, default=30.0, help="tokenizer training sample, MB (corpus_build's)")
    ap.add_argument("--no-rss", action="store_true", help="skip the 1x / 4x peak-RSS runs")
    ap.add_argument("--no-profile", action="store_true", help="skip the cProfile of the zh-only build")
    args = ap.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    model = ensure_tokenizer(args.seed, args.tok_mb, args.vocab_size)
    inputs = {tag: ensure_mix(args.mb, args.seed, tag) for tag in MIXES}
    out = CACHE / "pipeline-out"
    results: dict = {"mb": args.mb, "repeat": args.repeat, "tokenizer": model.name}

    print(f"\n1. whole-document tokenization, {args.mb:g} MB per mix, 1 worker, median of {args.repeat}")
    results["tokenize"] = {}
    for tag, (files, man) in inputs.items():
        base, base_np, built = [], [], []
        for _ in range(args.repeat):   # interleaved: a change in the machine's load hits every side
            base.append(tokenizer_only(files, model))
            base_np.append(tokenizer_only_numpy(files, model))
            built.append(run_plan_timed(jsonl_config(files, model, out), out)[0])
        b, bn, t = statistics.median(base), statistics.median(base_np), statistics.median(built)
        results["tokenize"][tag] = {"encode_s": b, "encode_numpy_s": bn, "build_s": t, "ratio": t / b,
                                    "ratio_numpy": t / bn, "docs": man["n_docs"]}
        print(f"  {tag:<10} encode {b:6.2f} s (as numpy {bn:6.2f} s)   build {t:6.2f} s   ratio {t / b:5.2f} "
              f"(vs numpy encode {t / bn:5.2f})   target <= 1.3; {man['n_docs']:,} docs, "
              f"{man['text_bytes'] / 1e6:.1f} MB", flush=True)

    files, man = inputs["mixed"]
    print(f"\n2. the full raw-source plan on the mixed corpus, median of {args.repeat}")
    base, runs = [], []
    for _ in range(args.repeat):
        base.append(tokenizer_only(files, model))
        with StepClock() as clock:
            wall, stages = run_plan_timed(full_config(files, model, out), out)
        runs.append((wall, stages, dict(clock.seconds)))
    b = statistics.median(base)
    wall, stages, steps = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    ratio = statistics.median(r[0] for r in runs) / b
    print(f"  tokenizer-only {b:6.2f} s   full plan {statistics.median(r[0] for r in runs):6.2f} s   "
          f"ratio {ratio:5.2f}   (target <= 2.0)")
    print(f"  share of the time (the median run, {wall:.2f} s):")
    for name, s in stages.items():
        print(f"    stage {name:<8} {s:6.2f} s  {s / wall:6.1%}")
        if name == "prepare":
            for step, ss in steps.items():
                print(f"      {step:<20} {ss:6.2f} s  {ss / wall:6.1%}")
            rest = s - sum(steps.values())
            print(f"      {'rest (rows, docs)':<20} {rest:6.2f} s  {rest / wall:6.1%}")
    results["full"] = {"encode_s": b, "plan_s": [r[0] for r in runs], "ratio": ratio, "stages": stages,
                       "prepare_steps": steps}

    if not args.no_rss:
        print("\n3. peak RSS of `python -m corpus build` (full plan), process tree")
        big_files, big_man = ensure_mix(4 * args.mb, args.seed, "mixed")
        one = rss_run(full_config(files, model, out), "1x")
        four = rss_run(full_config(big_files, model, out), "4x")
        growth = four["peak_total_mb"] / one["peak_total_mb"]
        for label, r in (("1x", one), ("4x", four)):
            print(f"  {label}: tree {r['peak_total_mb']:6.0f} MB   main {r['peak_main_mb']:6.0f} MB   "
                  f"ru_maxrss {r['ru_maxrss_mb']:6.0f} MB   {r['wall']:6.1f} s")
        print(f"  growth 4x/1x {growth:.2f}   (target <= 1.1)")
        results["rss"] = {"1x": one, "4x": four, "growth": growth}

    if not args.no_profile:
        print("\n4. where the zh-only build's time goes (cProfile; cumulative times, overlapping)")
        total, parts = profile_build(jsonl_config(inputs["zh-only"][0], model, out), out)
        for label, s in parts:
            print(f"  {label:<46} {s:6.2f} s  {s / total:6.1%}")
        print(f"  {'total (profiled)':<46} {total:6.2f} s")
        results["profile"] = {"total_s": total, "parts": dict(parts)}
    shutil.rmtree(out, ignore_errors=True)
    (CACHE / f"pipeline-results-{args.mb:g}mb.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
