"""Corpus build benchmark: the real ``python -m corpus build`` against a tokenizer-only baseline.

    PYTHONPATH=. python bench/corpus_build.py [--quick] [--workers 2] [--mb 200] [--big-mb 800]
                                              [--repeat 1] [--seed 0] [--no-big]

Both sides get the same synthetic JSON-lines input (``bench/gen_corpus.py``, cached under
``bench/.cache/`` by size and seed) and the same N worker processes:

* tokenizer-only — N processes, each a share of the files: parse the JSON lines and
  ``sp.encode(batch_of_texts, num_threads=1)``. Nothing a build could skip; the best a tokenization
  pipeline could do.
* full build — ``python -m corpus build --config <yaml> --workers N`` as a subprocess (reading,
  validation, sentence splitting, packing, .bin/.idx writing, report).

Printed: wall times (median of ``--repeat``), their ratio (target ≤ 1.3), the build's docs/s and
MB/s per worker, and the build's peak RSS at 1× and 4× input (the process tree sampled every 50 ms
from /proc, plus the getrusage ru_maxrss of the waited build tree). Figures only, no assertions.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from common.cli import Parser  # noqa: E402
CACHE = HERE / ".cache"
GEN = HERE / "gen_corpus.py"

# This process stays small (no numpy, no generator, no tokenizer training in it): a child's
# ru_maxrss on Linux starts from the RSS of the parent it was forked from, so a big parent would
# inflate the build's figure. Generation and training run as subprocesses.


def _gen_format() -> int:
    m = re.search(r"^FMT_VERSION = (\d+)", GEN.read_text(encoding="utf-8"), re.M)
    return int(m.group(1)) if m else 0


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --------------------------------------------------------------------------- inputs


def ensure_corpus(mb: float, seed: int) -> tuple[Path, dict]:
    """The generated corpus for (mb, seed), generated once and reused."""
    d = CACHE / f"corpus-{mb:g}mb-seed{seed}"
    man_path = d / "manifest.json"
    if man_path.is_file():
        man = json.loads(man_path.read_text(encoding="utf-8"))
        if man.get("format") == _gen_format() and all((d / f).is_file() for f in man["files"]):
            return d, man
    print(f"generating {mb:g} MB corpus (seed {seed}) into {d} ...", flush=True)
    subprocess.run([sys.executable, str(GEN), "--out", str(d), "--mb", f"{mb:g}", "--seed", str(seed)],
                   check=True, env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    man = json.loads(man_path.read_text(encoding="utf-8"))
    print(f"  {man['n_docs']:,} docs, {man['text_bytes'] / 1e6:.1f} MB text in {man['seconds']:.1f} s "
          f"({man['text_bytes'] / 1e6 / man['seconds']:.1f} MB/s)", flush=True)
    return d, man


_TRAIN = """
import json, sys
from corpus.tokenizer import train_tokenizer
def texts(files):
    for path in files:
        with open(path, "rb") as f:
            for line in f:
                yield json.loads(line)["text"]
train_tokenizer(texts(sys.argv[3:]), sys.argv[1], int(sys.argv[2]))
"""


def ensure_tokenizer(seed: int, sample_mb: float, vocab_size: int) -> Path:
    """A LLaMA-like BPE trained on a generated sample (its own seed, so not the benchmark's text)."""
    model = CACHE / f"tokenizer-v{vocab_size}-{sample_mb:g}mb-seed{seed}.model"
    if model.is_file():
        return model
    d, man = ensure_corpus(sample_mb, seed + 1_000_003)
    print(f"training a {vocab_size}-piece tokenizer on {man['text_bytes'] / 1e6:.0f} MB ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", _TRAIN, str(model), str(vocab_size)] + [str(d / f) for f in man["files"]],
                   check=True, env=_child_env(), cwd=REPO)
    print(f"  {model.name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return model


# --------------------------------------------------------------------------- CPU accounting


def _machine_busy_s() -> float:
    """CPU seconds all cores of the machine have been busy (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class CpuWatch:
    """Cores used by *other* processes while a measurement runs: machine busy time minus ours."""

    def __enter__(self) -> "CpuWatch":
        self.busy0, self.own0, self.t0 = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        other = (_machine_busy_s() - self.busy0) - (_own_cpu_s() - self.own0)
        self.other_cores = max(0.0, other / wall) if wall > 0 else 0.0


# --------------------------------------------------------------------------- tokenizer-only baseline


def _tokenize_share(args: tuple[list[str], str, int]) -> dict:
    import sentencepiece as spm

    files, model, batch_bytes = args
    t0 = time.process_time()
    sp = spm.SentencePieceProcessor(model_file=model)
    docs = tokens = nbytes = 0

    def flush(batch: list[str]) -> int:
        return sum(len(ids) for ids in sp.encode(batch, num_threads=1))

    batch: list[str] = []
    size = 0
    for path in files:
        with open(path, "rb") as f:
            for line in f:
                batch.append(json.loads(line)["text"])
                size += len(line)
                if size >= batch_bytes:
                    tokens += flush(batch)
                    docs += len(batch)
                    batch, size = [], 0
    if batch:
        tokens += flush(batch)
        docs += len(batch)
    for path in files:
        nbytes += os.path.getsize(path)
    return {"docs": docs, "tokens": tokens, "file_bytes": nbytes, "cpu": time.process_time() - t0}


def split_files(files: list[Path], n: int) -> list[list[str]]:
    """Files into n shares of about equal bytes (largest first onto the lightest share)."""
    shares: list[list[str]] = [[] for _ in range(n)]
    loads = [0] * n
    for f in sorted(files, key=lambda p: (-p.stat().st_size, p.name)):
        i = loads.index(min(loads))
        shares[i].append(str(f))
        loads[i] += f.stat().st_size
    return [s for s in shares if s]


def tokenizer_only(files: list[Path], model: Path, workers: int, batch_bytes: int = 1 << 20) -> dict:
    shares = split_files(files, workers)
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with CpuWatch() as watch:
        t0 = time.perf_counter()
        # spawn, like the build's pool: both sides pay for starting workers and loading the model
        pool = mp.get_context("spawn").Pool(len(shares))
        parts = pool.map(_tokenize_share, [(s, str(model), batch_bytes) for s in shares], chunksize=1)
        wall = time.perf_counter() - t0
        pool.close()
        pool.join()  # reap the workers so that their CPU time is counted as ours
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "other_cores": watch.other_cores,
            "docs": sum(p["docs"] for p in parts), "tokens": sum(p["tokens"] for p in parts),
            "cpu": (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime), "worker_cpu": [round(p["cpu"], 2) for p in parts]}


# --------------------------------------------------------------------------- RSS of a process tree


def _proc_table() -> dict[int, int]:
    """pid -> parent pid, for every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2:].split()
        table[int(name)] = int(rest[1])
    return table


def _status_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in kB; zeros if the process is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith(b"VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


class TreeRSS(threading.Thread):
    """Samples the RSS of a process and all its descendants every ``interval`` seconds."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_event = threading.Event()
        self.peak_main = self.peak_total = self.samples = 0
        self.hwm: dict[int, int] = {}
        self.max_procs = 0

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for pid, ppid in _proc_table().items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def run(self) -> None:
        tree: list[int] = []
        while not self.stop_event.is_set():
            # Walking all of /proc costs more than reading a few status files: redo it every
            # 0.5 s, or at once when a process of the tree has gone (workers are long-lived).
            if self.samples % 10 == 0:
                tree = self._tree()
            total = 0
            for pid in tree:
                rss, hwm = _status_kb(pid)
                if rss == 0 and hwm == 0:
                    tree = self._tree()
                    break
                total += rss
                self.hwm[pid] = max(self.hwm.get(pid, 0), hwm)
                if pid == self.root:
                    self.peak_main = max(self.peak_main, rss)
            self.peak_total = max(self.peak_total, total)
            self.max_procs = max(self.max_procs, len(tree))
            self.samples += 1
            self.stop_event.wait(self.interval)


# --------------------------------------------------------------------------- full build


def write_config(files: list[Path], model: Path, workers: int, tag: str) -> tuple[Path, Path]:
    """The JSON-lines build (one ``jsonl`` source, no steps, no dedup: the plan's build + mix stages)."""
    out_dir = CACHE / "out" / tag
    cfg = {
        "output_dir": str(out_dir),
        "tokenizer": str(model),
        "dedup": None,
        "seq_length": 1024,
        "workers": workers,
        "progress": False,
        "sources": [{"name": "corpus", "layout": "jsonl", "lang": "zh", "paths": [str(f) for f in files],
                     "options": {"fields": {"text": "text", "lang": "lang", "id": "id"}}}],
    }
    path = CACHE / f"build-{tag}.yaml"
    path.write_text(json.dumps(cfg, indent=1) + "\n", encoding="utf-8")  # JSON is YAML
    return path, out_dir


def run_build(cfg_path: Path, out_dir: Path, workers: int, log: Path) -> dict:
    if out_dir.exists():
        shutil.rmtree(out_dir)  # a fresh build every time (the CLI skips an up-to-date output)
    cmd = [sys.executable, "-m", "corpus", "build", "--config", str(cfg_path), "--workers", str(workers)]
    env = _child_env()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(log, "wb") as logf, CpuWatch() as watch:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=logf, stderr=subprocess.STDOUT)
        sampler = TreeRSS(proc.pid)
        sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        sampler.stop_event.set()
        sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    report_file = out_dir / "corpus" / "corpus_text_document.json"   # the source's build report
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else None
    return {
        "cmd": " ".join(cmd),
        "rc": proc.returncode,
        "other_cores": watch.other_cores,
        "wall": wall,
        "cpu": ru.ru_utime + ru.ru_stime,
        "peak_main_mb": sampler.peak_main / 1024,
        "peak_total_mb": sampler.peak_total / 1024,
        "hwm_max_mb": max(sampler.hwm.values(), default=0) / 1024,
        "ru_maxrss_mb": ru.ru_maxrss / 1024,  # largest single process of the waited tree (Linux: kB)
        "children_ru_maxrss_mb": after.ru_maxrss / 1024,
        "children_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        "samples": sampler.samples,
        "max_procs": sampler.max_procs,
        "report": report,
        "log": str(log),
    }


def _fail(res: dict) -> None:
    print(f"\nBUILD FAILED (exit {res['rc']}): cd {REPO} && PYTHONPATH={REPO} {res['cmd']}", flush=True)
    tail = Path(res["log"]).read_text(encoding="utf-8", errors="replace")[-4000:]
    print(tail, flush=True)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small inputs (20 MB / 80 MB): a smoke test")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mb", type=float, help="1x input in 10^6 bytes of text (default 200, quick 20)")
    ap.add_argument("--big-mb", type=float, help="4x input for the memory check (default 4 x --mb)")
    ap.add_argument("--no-big", action="store_true", help="skip the 4x memory run")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each side at 1x (median)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab-size", type=int, default=32000)
    ap.add_argument("--tok-mb", type=float, default=30.0, help="tokenizer training sample, MB")
    ap.add_argument("--keep-output", action="store_true", help="keep the built .bin/.idx under bench/.cache/out")
    args = ap.parse_args(argv)
    mb = args.mb or (20.0 if args.quick else 200.0)
    big_mb = args.big_mb or 4 * mb
    n = args.workers
    CACHE.mkdir(parents=True, exist_ok=True)

    model = ensure_tokenizer(args.seed, args.tok_mb, args.vocab_size)
    d, man = ensure_corpus(mb, args.seed)
    files = [d / f for f in man["files"]]
    mbytes = man["text_bytes"] / 1e6
    print(f"\ninput: {mbytes:.1f} MB text ({man['file_bytes'] / 1e6:.1f} MB JSON lines), {man['n_docs']:,} docs "
          f"in {len(files)} files; share {man['share']}; tokenizer {model.name}; workers {n}", flush=True)

    base_runs, build_runs = [], []
    cfg_path, out_dir = write_config(files, model, n, f"{mb:g}mb")
    for r in range(args.repeat):
        b = tokenizer_only(files, model, n)
        base_runs.append(b)
        print(f"  [{r + 1}/{args.repeat}] tokenizer-only {b['wall']:.2f} s (cpu {b['cpu']:.1f} s, "
              f"{b['tokens']:,} tokens; other processes {b['other_cores']:.2f} cores)", flush=True)
        res = run_build(cfg_path, out_dir, n, CACHE / f"build-{mb:g}mb.log")
        if res["rc"] != 0:
            _fail(res)
            return 1
        build_runs.append(res)
        print(f"  [{r + 1}/{args.repeat}] full build     {res['wall']:.2f} s (cpu {res['cpu']:.1f} s; "
              f"other processes {res['other_cores']:.2f} cores)", flush=True)
    if not args.keep_output:
        shutil.rmtree(out_dir, ignore_errors=True)

    big = None
    if not args.no_big:
        bd, bman = ensure_corpus(big_mb, args.seed)
        bfiles = [bd / f for f in bman["files"]]
        bcfg, bout = write_config(bfiles, model, n, f"{big_mb:g}mb")
        big = run_build(bcfg, bout, n, CACHE / f"build-{big_mb:g}mb.log")
        big["mb"] = bman["text_bytes"] / 1e6
        big["docs"] = bman["n_docs"]
        if big["rc"] != 0:
            _fail(big)
            return 1
        print(f"  [4x] full build {big['wall']:.2f} s", flush=True)
        if not args.keep_output:
            shutil.rmtree(bout, ignore_errors=True)

    t_base = statistics.median(b["wall"] for b in base_runs)
    t_build = statistics.median(b["wall"] for b in build_runs)
    last = build_runs[-1]
    rep = last["report"] or {}
    counts = rep.get("counts", {})
    ratio = t_build / t_base
    docs = man["n_docs"]
    print()
    print(f"corpus build benchmark — {mbytes:.0f} MB input, {docs:,} docs, {n} workers, median of {args.repeat}")
    print(f"  tokenizer-only (sentencepiece) {t_base:8.2f} s   {mbytes / t_base / n:6.2f} MB/s/worker   "
          f"cpu {statistics.median(b['cpu'] for b in base_runs):.1f} s   tokens {base_runs[-1]['tokens']:,}")
    print(f"  full build (python -m corpus)  {t_build:8.2f} s   {mbytes / t_build / n:6.2f} MB/s/worker   "
          f"cpu {statistics.median(b['cpu'] for b in build_runs):.1f} s   tokens written {counts.get('tokens', 0):,}")
    print(f"  ratio build / tokenizer-only   {ratio:8.2f}     target <= 1.30  ({'met' if ratio <= 1.3 else 'NOT met'})")
    if args.repeat > 1:
        min_ratio = min(b["wall"] for b in build_runs) / min(b["wall"] for b in base_runs)
        print(f"  ratio of the fastest runs      {min_ratio:8.2f}     (min {min(b['wall'] for b in build_runs):.2f} s / "
              f"{min(b['wall'] for b in base_runs):.2f} s)")
    cpu_ratio = statistics.median(b["cpu"] for b in build_runs) / statistics.median(b["cpu"] for b in base_runs)
    print(f"  cpu-time ratio                 {cpu_ratio:8.2f}     (less sensitive to other load on the machine)")
    print(f"  build rate: {docs / t_build:,.0f} docs/s ({docs / t_build / n:,.0f} per worker), "
          f"{mbytes / t_build:.2f} MB/s ({mbytes / t_build / n:.2f} per worker)")
    if counts:
        print(f"  build counts: {counts.get('documents', 0):,} documents, {counts.get('sequences', 0):,} sequences, "
              f"{counts.get('sentences', 0):,} sentences ({counts.get('sentences_cut', 0):,} cut), "
              f"skipped {counts.get('skipped', {})}")
    print("  peak RSS of the build (MB):        main   tree total   largest process (ru_maxrss / VmHWM)")
    rows = [("1x", mbytes, last)] + ([("4x", big["mb"], big)] if big else [])
    for label, size, res in rows:
        print(f"    {label} {size:6.0f} MB input       {res['peak_main_mb']:7.0f}   {res['peak_total_mb']:10.0f}   "
              f"{res['ru_maxrss_mb']:7.0f} / {res['hwm_max_mb']:.0f}   "
              f"({res['samples']} samples, up to {res['max_procs']} processes)")
    if big:
        print(f"    growth 4x/1x: main {big['peak_main_mb'] / last['peak_main_mb']:.2f}, "
              f"tree {big['peak_total_mb'] / last['peak_total_mb']:.2f}   "
              f"(4x build {big['wall']:.1f} s, {big['mb'] / big['wall'] / n:.2f} MB/s/worker)")
    others = [r["other_cores"] for r in base_runs + build_runs]
    print(f"  other processes on this machine used {max(others):.2f} of {os.cpu_count()} cores during the timed runs"
          + ("  -- timings are disturbed, rerun on a quiet machine" if max(others) > 0.15 else ""))
    print(f"  bench-process getrusage(RUSAGE_CHILDREN).ru_maxrss: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB "
          f"(largest process this run started: "
          f"generation and baseline workers included)")

    results = {
        "input_mb": mbytes, "docs": docs, "workers": n, "repeat": args.repeat,
        "tokenizer_only_s": t_base, "build_s": t_build, "ratio": ratio, "cpu_ratio": cpu_ratio,
        "baseline_runs": base_runs, "build_runs": [{k: v for k, v in r.items() if k != "report"} for r in build_runs],
        "build_counts": counts,
        "big": {k: v for k, v in big.items() if k != "report"} if big else None,
    }
    (CACHE / f"results-{mb:g}mb-w{n}.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
