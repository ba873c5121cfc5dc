"""Weight-diff restore benchmark: ``python -m recover apply`` against ``cp`` and against loading both models.

    PYTHONPATH=. python bench/recover.py [--layers 20] [--hidden 2048] [--intermediate 5504] [--vocab 32000]
                                         [--shard-mb 1000] [--repeat 2] [--keep-output]

Input (generated once, cached under ``bench/.cache/recover-<shape>/``): a LLaMA-shaped float16
checkpoint ``raw`` (about 1.1B parameters, 2.3 GB, several safetensors shards), a ``tuned`` copy
with every weight moved a little, and their diff made by ``python -m recover make-diff`` (float32,
4.5 GB, with the manifest). Each measured command runs as its own process; its wall time and peak
RSS (``ru_maxrss`` from ``wait4``) are printed, with dirty pages flushed (``sync``) before each run
and the inputs read once beforehand so all runs start from the same warm page cache:

* ``apply``: ``python -m recover apply --raw raw --diff diff --out out`` (with the manifest's checks:
  raw and restored tensors hashed), with fsync of each shard (the default) and with ``--no-fsync``.
* ``cp raw+diff``: ``cp -r`` of the bytes apply reads; ``cp raw``: of as many bytes as apply writes.
* ``load both``: what CaMA's tool does, minus transformers: every tensor of raw and diff loaded in
  float32 (``safetensors.torch.load_file``), added, saved in float16 shards.

Targets: apply's peak RSS ≤ 2 × the largest tensor + 500 MB; apply's wall ≤ 1.5 × cp. Figures only,
no assertions; also written to ``bench/.cache/results-recover-<shape>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / ".cache"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def measure(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process (which must succeed)."""
    subprocess.run(["sync"], check=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)} (status {status})")
    return wall, usage.ru_maxrss * 1024


# --------------------------------------------------------------------------- inputs (in children)

GENERATE = r'''
import json, sys, torch
from pathlib import Path
from recover.writer import Planned, ShardedWriter
out, L, H, I, V, shard_mb, seed, scale = sys.argv[1:]
L, H, I, V, seed, scale = int(L), int(H), int(I), int(V), int(seed), float(scale)
out = Path(out); out.mkdir(parents=True)
names = [("model.embed_tokens.weight", (V, H))]
for i in range(L):
    p = f"model.layers.{i}."
    names += [(p + "self_attn.q_proj.weight", (H, H)), (p + "self_attn.k_proj.weight", (H, H)),
              (p + "self_attn.v_proj.weight", (H, H)), (p + "self_attn.o_proj.weight", (H, H)),
              (p + "mlp.gate_proj.weight", (I, H)), (p + "mlp.up_proj.weight", (I, H)),
              (p + "mlp.down_proj.weight", (H, I)), (p + "input_layernorm.weight", (H,)),
              (p + "post_attention_layernorm.weight", (H,))]
names += [("model.norm.weight", (H,)), ("lm_head.weight", (V, H))]
w = ShardedWriter(out, [Planned(n, torch.float16, s) for n, s in names], f"{shard_mb}MB", fsync=False)
for k, (n, s) in enumerate(names):
    g = torch.Generator().manual_seed(k)  # raw and tuned draw the same base weights
    t = torch.randn(s, generator=g) * 0.02
    if scale:
        t += torch.randn(s, generator=torch.Generator().manual_seed(10**6 + k)) * scale
    w.write(n, t.half().reshape(-1))
w.finish()
(out / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": H, "intermediate_size": I, "num_hidden_layers": L, "num_attention_heads": H // 128,
    "num_key_value_heads": H // 128, "vocab_size": V, "torch_dtype": "float16", "rms_norm_eps": 1e-6}))
# A tokenizer file with V ids (the restore checks the vocabulary against the embedding rows).
vocab = {f"<t{i}>": i for i in range(V)}
(out / "tokenizer.json").write_text(json.dumps({"version": "1.0", "added_tokens": [],
    "model": {"type": "BPE", "vocab": vocab, "merges": []}}))
'''

LOAD_BOTH = r'''
import json, sys, torch
from pathlib import Path
from safetensors.torch import load_file, save_file
raw, diff, out = map(Path, sys.argv[1:])
state = {}
for f in sorted(raw.glob("model-*.safetensors")):
    state.update({k: v.float() for k, v in load_file(f).items()})
for f in sorted(diff.glob("model*.safetensors")):
    for k, v in load_file(f).items():
        state[k].add_(v.float())
out.mkdir()
shard, size, n, index = {}, 0, 0, {}
def flush():
    global shard, size, n
    n += 1
    name = f"model-{n:05d}.safetensors"
    save_file(shard, out / name, metadata={"format": "pt"})
    index.update({k: name for k in shard})
    shard, size = {}, 0
for k, v in state.items():
    shard[k] = v.half()
    size += shard[k].nbytes
    if size > 5 * 10**9:
        flush()
if shard:
    flush()
(out / "model.safetensors.index.json").write_text(json.dumps({"weight_map": index}))
'''


def ensure_inputs(args: argparse.Namespace) -> Path:
    shape = f"L{args.layers}-H{args.hidden}-I{args.intermediate}-V{args.vocab}-s{args.shard_mb}"
    root = CACHE / f"recover-{shape}"
    done = root / "done.json"
    if done.is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    common = [str(args.layers), str(args.hidden), str(args.intermediate), str(args.vocab), str(args.shard_mb), "0"]
    for name, scale in (("raw", "0"), ("tuned", "0.002")):
        print(f"generating {root / name} …", flush=True)
        subprocess.run([sys.executable, "-c", GENERATE, str(root / name), *common, scale], env=_env(), check=True)
    print("make-diff …", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "recover", "make-diff", "--raw", str(root / "raw"), "--tuned",
                    str(root / "tuned"), "--out", str(root / "diff"), "--no-progress",
                    "--max-shard-size", f"{2 * args.shard_mb}MB"], env=_env(), check=True, stdout=subprocess.DEVNULL)
    done.write_text(json.dumps({"make_diff_s": round(time.perf_counter() - t0, 1)}))
    return root


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def largest_tensor(path: Path) -> tuple[int, str]:
    """From the safetensors headers, read here without torch: this process must stay small, because a
    child's ru_maxrss starts from the RSS of the parent it was forked from."""
    best = (0, "")
    for f in path.glob("*.safetensors"):
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        header.pop("__metadata__", None)
        for name, e in header.items():
            start, end = e["data_offsets"]
            best = max(best, (end - start, f"{name} {e['dtype']} in {path.name}"))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=2048)
    ap.add_argument("--intermediate", type=int, default=5504)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--shard-mb", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-load-both", action="store_true")
    args = ap.parse_args()
    root = ensure_inputs(args)
    raw, diff = root / "raw", root / "diff"
    out = root / "out"
    sizes = {"raw": dir_bytes(raw), "diff": dir_bytes(diff)}
    big = max(largest_tensor(raw), largest_tensor(diff))
    print(f"inputs: raw {sizes['raw'] / 1e9:.2f} GB ({len(list(raw.glob('*.safetensors')))} shards), "
          f"diff {sizes['diff'] / 1e9:.2f} GB; largest tensor {big[1]}: {big[0] / 1e6:.0f} MB")
    for f in [*raw.iterdir(), *diff.iterdir()]:  # the same warm page cache for every run
        with f.open("rb") as fh:
            while fh.read(1 << 24):
                pass

    def clean() -> None:
        shutil.rmtree(out, ignore_errors=True)

    py = sys.executable
    runs = {
        "apply": [py, "-m", "recover", "apply", "--raw", str(raw), "--diff", str(diff), "--out", str(out),
                  "--no-progress"],
        "apply --no-fsync": [py, "-m", "recover", "apply", "--raw", str(raw), "--diff", str(diff), "--out",
                             str(out), "--no-progress", "--no-fsync"],
        "cp raw+diff": ["bash", "-c", f"mkdir {out} && cp -r {raw} {diff} {out}/"],
        "cp raw+diff + sync": ["bash", "-c", f"mkdir {out} && cp -r {raw} {diff} {out}/ && sync -f {out}"],
        "cp raw": ["cp", "-r", str(raw), str(out)],
    }
    results: dict[str, list[tuple[float, int]]] = {k: [] for k in runs}
    for _ in range(args.repeat):  # interleaved, so a slow moment of the machine hits all of them
        for name, argv in runs.items():
            clean()
            results[name].append(measure(argv))
    clean()
    if not args.skip_load_both:
        results["load both (fp32)"] = [measure([py, "-c", LOAD_BOTH, str(raw), str(diff), str(out)])]
        clean()
    print(f"\n{'':22s} {'wall s':>8s} {'peak RSS MB':>12s}   (median of {args.repeat}; RSS max)")
    table = {}
    for name, rs in results.items():
        wall = statistics.median(w for w, _ in rs)
        rss = max(r for _, r in rs)
        table[name] = {"wall_s": round(wall, 2), "peak_rss_mb": round(rss / 2**20), "runs": len(rs)}
        print(f"{name:22s} {wall:8.2f} {rss / 2**20:12.0f}")
    a, cp = table["apply"], table["cp raw+diff"]
    target_rss = 2 * big[0] / 2**20 + 500
    print(f"\napply / cp raw+diff: {a['wall_s'] / cp['wall_s']:.2f} (target ≤ 1.5); "
          f"apply --no-fsync / cp raw+diff: {table['apply --no-fsync']['wall_s'] / cp['wall_s']:.2f}; "
          f"apply / (cp raw+diff + sync): {a['wall_s'] / table['cp raw+diff + sync']['wall_s']:.2f}; "
          f"apply / cp raw: {a['wall_s'] / table['cp raw']['wall_s']:.2f}")
    print(f"apply peak RSS {a['peak_rss_mb']} MB; target 2 × {big[0] / 2**20:.0f} MB + 500 MB = {target_rss:.0f} MB")
    if "load both (fp32)" in table:
        lb = table["load both (fp32)"]
        print(f"load both / apply: wall {lb['wall_s'] / a['wall_s']:.2f}, peak RSS {lb['peak_rss_mb'] / a['peak_rss_mb']:.1f}×")
    result = {"inputs": sizes, "largest_tensor": {"bytes": big[0], "what": big[1]}, "runs": table}
    (CACHE / f"results-{root.name}.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
