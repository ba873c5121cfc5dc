"""Near-duplicate removal benchmark: throughput, memory, and recall/precision against planted pairs.

    python bench/dedup.py [--docs 100000] [--quick] [--seed 0] [--sample 300] [--brute 300]

Builds ``--docs`` generated documents (zh 60 % / en 40 %, cut to ≤ 2 KB, from bench/gen_corpus.py's
samplers) of which about a fifth are planted near-duplicates: a copy of a distinct base document
with characters (zh) or words (en) replaced until the true Jaccard of the shingle sets reaches a
target in {0.5, 0.7, 0.8, 0.9, 0.95}; the true Jaccard actually reached is measured and used.
Then, per process:

* signatures (corpus.minhash.signatures): docs/s and MB/s, per language and overall;
* the dedup flow corpus.pipeline runs, on those signatures: ``--shards`` prepare shards written with
  ``ShardWriter`` (records dealt out in blocks, as a one-file source is), exact dedup over them, band
  tasks over the memory-mapped shards (``ShardGroup``, 1 and ``--band-tasks`` tasks, each reading only
  its bands' columns: 16 × 8 bands) and the clustering step (verification + union-find) — seconds per
  step, and whether 1 and ``--band-tasks`` band tasks give the same clusters;
* datasketch ``MinHashLSH(threshold=0.8, num_perm=128)`` insert and query of ``LeanMinHash``
  built from our signatures (datasketch's own band optimum) — docs/s;
* baseline: datasketch classic ``MinHash(num_perm=128)`` + ``update`` per shingle on a ``--sample``
  of documents, beside our signatures on the same sample, with the ratio;
* peak RSS (ru_maxrss);
* recall: planted pairs with true J ≥ 0.9 that end in one cluster (target ≥ 0.95), also by J bucket;
* precision: reported (verified) pairs whose true J ≥ 0.8 (target ≥ 0.95), and dropped documents
  whose true J with their kept document is ≥ 0.8;
* brute force: on ``--brute`` documents (half of them members of planted pairs), the exact Jaccard of
  every pair of shingle sets against what the flow, run on those documents alone, decided: the pairs
  at true J ≥ 0.9 it put in one cluster (recall), the dropped documents whose true J with their kept
  one is ≥ 0.8 (precision), and the pairs it clustered below true J 0.5 (only through transitive links).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common.cli import Parser  # noqa: E402
from corpus.dedup import (DedupConfig, ShardGroup, ShardWriter, band_params, datasketch_lsh,  # noqa: E402
                          exact_key, group_band_pairs, group_representatives, lean_minhash, split_bands,
                          verify_pairs)
from corpus.minhash import shingle_hashes, signatures, true_jaccard  # noqa: E402

LEVELS = (0.5, 0.7, 0.8, 0.9, 0.95)
ZH_EDIT = np.array(list("甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥"))


def gen_base(rng: np.random.Generator, n: int, lang: str, sampler) -> list[str]:
    out: list[str] = []
    cap = 650 if lang == "zh" else 1900  # characters: ~2 KB of UTF-8 either way
    while len(out) < n:
        for d in sampler.docs(rng, 12_000_000):
            d = d[:cap]
            if len(d.encode("utf-8")) >= 600:
                out.append(d)
    return out[:n]


def edit(text: str, lang: str, m: int, rng: np.random.Generator, en_words: list[str]) -> str:
    if lang == "zh":
        s = np.array(list(text))
        pos = np.flatnonzero(~np.char.isspace(s))
        p = rng.choice(pos, size=min(m, len(pos)), replace=False)
        s[p] = ZH_EDIT[rng.integers(0, len(ZH_EDIT), size=len(p))]
        return "".join(s.tolist())
    w = text.split(" ")
    p = rng.choice(len(w), size=min(m, len(w)), replace=False)
    for i in p.tolist():
        w[i] = en_words[int(rng.integers(0, len(en_words)))] + "q"
    return " ".join(w)


def plant(base: str, lang: str, target: float, rng, cfg, en_words) -> tuple[str, float]:
    """A variant of base at about Jaccard ``target``; returns (text, true Jaccard)."""
    n = cfg.zh_ngram if lang == "zh" else cfg.en_ngram
    hb = shingle_hashes(base, lang, cfg)
    N = len(hb)
    m = max(1, int(round(N * (1 - target) / (n * (1 + target)))))
    best = None
    for _ in range(4):
        v = edit(base, lang, m, rng, en_words)
        j = true_jaccard(hb, shingle_hashes(v, lang, cfg))
        if best is None or abs(j - target) < abs(best[1] - target):
            best = (v, j)
        if abs(j - target) < 0.01:
            break
        m = max(1, int(round(m * np.log(max(target, 1e-3)) / np.log(max(min(j, 0.999), 1e-3)))))
    return best


def datasketch_baseline(texts: list[str], lang: str, cfg, batch: bool = False) -> float:
    from datasketch import MinHash

    n = cfg.zh_ngram if lang == "zh" else cfg.en_ngram
    t0 = time.perf_counter()
    for t in texts:
        mh = MinHash(num_perm=128, seed=1)
        if lang == "zh":
            s = "".join(t.split())
            shingles = {s[i:i + n] for i in range(max(1, len(s) - n + 1))}
        else:
            w = t.lower().split()
            shingles = {" ".join(w[i:i + n]) for i in range(max(1, len(w) - n + 1))}
        if batch:
            mh.update_batch([sh.encode("utf-8") for sh in shingles])
        else:
            for sh in shingles:
                mh.update(sh.encode("utf-8"))
    return time.perf_counter() - t0


def sharded_flow(texts: list[str], sigs: np.ndarray, lang: str, cfg: DedupConfig, shards: int,
                 band_tasks: int, block: int = 1000) -> dict:
    """corpus.pipeline's prepare-shard → band-task → cluster steps on these signatures.

    Returns the figures and ``rep`` (each document's kept document: itself when kept), ``verified``
    (the document pairs that passed verification) and ``candidates`` (how many band pairs there were)."""
    import tempfile

    out: dict = {"shards": shards}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        keys = [exact_key(x, lang) for x in texts]
        out["exact_keys_s"] = time.perf_counter() - t
        t = time.perf_counter()
        prefixes = []
        for k in range(shards):   # block b of `block` documents goes to shard b mod shards
            rows = np.flatnonzero((np.arange(len(texts)) // block) % shards == k)
            w = ShardWriter(Path(tmp) / f"{k:05d}", cfg.num_perm)
            for c in range(0, len(rows), 4096):
                part = rows[c:c + 4096]
                w.add(sigs[part], [keys[i] for i in part.tolist()], part)
            w.close()
            prefixes.append(Path(tmp) / f"{k:05d}")
        out["write_s"] = time.perf_counter() - t
        group = ShardGroup([prefixes])
        t = time.perf_counter()
        uniq = group.exact_unique() if cfg.exact else np.arange(group.n)
        out["exact_s"] = time.perf_counter() - t
        b, _ = band_params(cfg)
        reps = {}
        for ntasks in sorted({1, band_tasks}):
            t = time.perf_counter()
            parts = [group_band_pairs(group, uniq, rng, cfg) for rng in split_bands(b, ntasks)]
            bands_s = time.perf_counter() - t
            t = time.perf_counter()
            reps[ntasks] = group_representatives(group, uniq, parts, cfg)
            cluster_s = time.perf_counter() - t
            out[f"tasks_{ntasks}"] = {"bands_s": bands_s, "per_task_s": bands_s / ntasks, "cluster_s": cluster_s}
            if ntasks == 1:
                pairs = np.unique(np.concatenate([p for p in parts if len(p)] or [np.zeros((0, 2), np.int64)]), axis=0)
                verified = verify_pairs(group.view(uniq), pairs, min(1.0, cfg.threshold + cfg.verify_margin)) \
                    if cfg.verify and len(pairs) else pairs
                out["candidates"] = len(pairs)
                out["verified"] = uniq[verified]
        out["same_clusters_across_band_tasks"] = bool(np.array_equal(reps[1], reps[band_tasks]))
        # Each document's kept document: exact copies follow their first copy into its cluster.
        first: dict[bytes, int] = {}
        owner = np.arange(len(texts))
        owner[uniq] = uniq[reps[1]]
        rep = np.array([owner[first.setdefault(key, i)] for i, key in enumerate(keys)], dtype=np.int64)
        out["rep"] = rep if cfg.exact else owner
    return out


def brute_force_check(texts: list[str], lang: str, cfg: DedupConfig, plants: list[tuple[int, int, float, float]],
                      size: int, rng: np.random.Generator) -> dict:
    """The flow on ``size`` documents against the exact Jaccard of every pair of them."""
    members = [i for a, c, _, _ in plants[: size // 4] for i in (a, c)]
    rest = np.setdiff1d(np.arange(len(texts)), members)
    pick = sorted(set(members) | set(rng.choice(rest, size=max(0, min(size - len(set(members)), len(rest))),
                                                replace=False).tolist()))
    sample = [texts[i] for i in pick]
    t = time.perf_counter()
    shingles = [shingle_hashes(x, lang, cfg) for x in sample]
    n = len(sample)
    exact = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            exact[i, j] = exact[j, i] = true_jaccard(shingles[i], shingles[j])
    brute_s = time.perf_counter() - t
    rep = sharded_flow(sample, signatures(sample, lang, cfg), lang, cfg, shards=2, band_tasks=3, block=7)["rep"]
    i, j = np.triu_indices(n, 1)
    same = rep[i] == rep[j]
    high = exact[i, j] >= 0.9
    dropped = np.flatnonzero(rep != np.arange(n))
    return {
        "docs": n, "pairs": len(i), "brute_force_s": brute_s,
        "pairs_J>=0.9": int(high.sum()),
        "recall_J>=0.9": float(same[high].mean()) if high.any() else 1.0,
        "dropped": len(dropped),
        "precision_dropped": float((exact[dropped, rep[dropped]] >= 0.8).mean()) if len(dropped) else 1.0,
        "clustered_pairs_J<0.5": int((same & (exact[i, j] < 0.5)).sum()),
    }


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = Parser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="10k documents, small baseline sample")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=300, help="documents per language for the baseline")
    ap.add_argument("--plant-frac", type=float, default=0.2)
    ap.add_argument("--margin", type=float, default=None, help="override DedupConfig.verify_margin")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--shards", type=int, default=4, help="prepare shards of the dedup flow")
    ap.add_argument("--band-tasks", type=int, default=4, help="band tasks of the dedup flow")
    ap.add_argument("--brute", type=int, default=300, help="documents per language for the brute-force check")
    args = ap.parse_args(argv)
    if args.quick:
        args.docs, args.sample, args.brute = 10_000, 100, 200
    cfg = DedupConfig() if args.margin is None else DedupConfig(verify_margin=args.margin)
    rng = np.random.default_rng(args.seed)
    import gen_corpus as g

    t0 = time.perf_counter()
    en_vocab = g.build_en_vocab()
    samplers = {"zh": g.ZhSampler(), "en": g.EnSampler(en_vocab)}
    n_lang = {"zh": int(args.docs * 0.6), "en": args.docs - int(args.docs * 0.6)}
    corpora: dict[str, list[str]] = {}
    plants: dict[str, list[tuple[int, int, float, float]]] = {}  # (base idx, plant idx, target, true J)
    for lang, n in n_lang.items():
        n_plant = int(n * args.plant_frac)
        docs = gen_base(rng, n - n_plant, lang, samplers[lang])
        bases = rng.choice(len(docs), size=n_plant, replace=False)
        pl = []
        for k, b in enumerate(bases.tolist()):
            target = LEVELS[k % len(LEVELS)]
            v, j = plant(docs[b], lang, target, rng, cfg, en_vocab)
            pl.append((b, v, target, j))
        # plants go after a random later position: append, then shuffle the whole list
        texts = docs + [p[1] for p in pl]
        order = rng.permutation(len(texts))
        inv = np.empty_like(order)
        inv[order] = np.arange(len(order))
        corpora[lang] = [texts[i] for i in order.tolist()]
        plants[lang] = [(int(inv[b]), int(inv[len(docs) + k]), t, j) for k, (b, _, t, j) in enumerate(pl)]
    gen_s = time.perf_counter() - t0
    total_docs = sum(len(c) for c in corpora.values())
    total_mb = sum(len(t.encode("utf-8")) for c in corpora.values() for t in c) / 1e6
    print(f"generated {total_docs} docs, {total_mb:.1f} MB "
          f"({', '.join(f'{k}: {len(v)} docs, {len(plants[k])} plants' for k, v in corpora.items())}) "
          f"in {gen_s:.1f} s")
    rss_gen = rss_mb()
    print(f"peak RSS after generating the corpus (texts, samplers, plants): {rss_gen:.0f} MB")
    res: dict = {"docs": total_docs, "mb": total_mb, "lang": {}, "rss_after_generation_mb": rss_gen}
    b, r = band_params(cfg)
    all_rec, all_prec_ok, all_prec_n = [], 0, 0
    sig_s_total = 0.0
    for lang, texts in corpora.items():
        mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
        t = time.perf_counter()
        sigs = signatures(texts, lang, cfg)
        sig_s = time.perf_counter() - t
        sig_s_total += sig_s
        flow = sharded_flow(texts, sigs, lang, cfg, args.shards, args.band_tasks)
        rep, ver = flow.pop("rep"), flow.pop("verified")
        band_s, clus_s = flow["tasks_1"]["bands_s"], flow["tasks_1"]["cluster_s"]
        # datasketch MinHashLSH with LeanMinHash from our signatures
        t = time.perf_counter()
        lsh = datasketch_lsh(sigs, cfg, params=False)
        ins_s = time.perf_counter() - t
        t = time.perf_counter()
        nq = 0
        for i in range(len(texts)):
            nq += len(lsh.query(lean_minhash(sigs[i], cfg))) - 1
        q_s = time.perf_counter() - t
        ds_params = (lsh.b, lsh.r)
        del lsh
        # recall / precision
        pl = plants[lang]
        rec_by = {}
        for lo, hi in ((0.0, 0.6), (0.6, 0.75), (0.75, 0.85), (0.85, 0.9), (0.9, 0.925), (0.925, 1.01)):
            sel = [p for p in pl if lo <= p[3] < hi]
            if sel:
                rec_by[f"[{lo:.3g},{min(hi, 1):.3g})"] = (
                    sum(rep[a] == rep[c] for a, c, _, _ in sel) / len(sel), len(sel))
        hi_sel = [p for p in pl if p[3] >= 0.9]
        rec = sum(rep[a] == rep[c] for a, c, _, _ in hi_sel) / max(1, len(hi_sel))
        all_rec += [rep[a] == rep[c] for a, c, _, _ in hi_sel]
        cache: dict[int, np.ndarray] = {}

        def sh(i: int) -> np.ndarray:
            if i not in cache:
                cache[i] = shingle_hashes(texts[i], lang, cfg)
            return cache[i]

        tj = np.array([true_jaccard(sh(a), sh(c)) for a, c in ver.tolist()])
        prec = float((tj >= 0.8).mean()) if len(tj) else 1.0
        all_prec_ok += int((tj >= 0.8).sum())
        all_prec_n += len(tj)
        dropped = np.flatnonzero(rep != np.arange(len(texts)))
        dj = np.array([true_jaccard(sh(int(i)), sh(int(rep[i]))) for i in dropped.tolist()])
        drop_prec = float((dj >= 0.8).mean()) if len(dj) else 1.0
        # baseline on a sample
        sample = texts[: args.sample]
        smb = sum(len(x.encode("utf-8")) for x in sample) / 1e6
        base_s = datasketch_baseline(sample, lang, cfg)
        batch_s = datasketch_baseline(sample, lang, cfg, batch=True)
        t = time.perf_counter()
        signatures(sample, lang, cfg)
        ours_sample_s = time.perf_counter() - t
        n = len(texts)
        L = {
            "docs": n, "mb": mb,
            "sig_docs_s": n / sig_s, "sig_mb_s": mb / sig_s,
            "bands_docs_s": n / band_s, "candidates": flow["candidates"], "verified": len(ver),
            "verify_cluster_s": clus_s,
            "ds_lsh_params": ds_params, "ds_insert_docs_s": n / ins_s, "ds_query_docs_s": n / q_s,
            "ds_query_hits": nq,
            "recall_J>=0.9": rec, "n_J>=0.9": len(hi_sel), "recall_by_J": rec_by,
            "precision_pairs": prec, "precision_dropped": drop_prec, "dropped": len(dropped),
            "baseline_mb_s": smb / base_s, "ours_sample_mb_s": smb / ours_sample_s,
            "ratio_vs_datasketch": base_s / ours_sample_s,
            "baseline_batch_mb_s": smb / batch_s, "ratio_vs_datasketch_batch": batch_s / ours_sample_s,
            "precision_pairs_J>=0.75": float((tj >= 0.75).mean()) if len(tj) else 1.0,
        }
        L["sharded"] = flow
        L["brute_force"] = bf = brute_force_check(texts, lang, cfg, pl, args.brute, rng)
        res["lang"][lang] = L
        print(f"\n[{lang}] {n} docs, {mb:.1f} MB")
        print(f"  signatures          {n / sig_s:10.0f} docs/s  {mb / sig_s:7.1f} MB/s  (1 process)")
        print(f"  our LSH {b}x{r} bands   {n / band_s:10.0f} docs/s  -> {flow['candidates']} candidate pairs,"
              f" {len(ver)} verified (J_est >= {cfg.threshold + cfg.verify_margin:.2f}); verify+union-find {clus_s:.2f} s"
              f"  (1 band task over {args.shards} memory-mapped shards)")
        print(f"  datasketch LSH {ds_params[0]}x{ds_params[1]} insert {n / ins_s:8.0f} docs/s,"
              f" query {n / q_s:8.0f} docs/s  (LeanMinHash from our signatures)")
        print(f"  baseline datasketch MinHash(128)+update on {len(sample)} docs: {smb / base_s:6.2f} MB/s;"
              f" ours on the same: {smb / ours_sample_s:6.1f} MB/s  -> ratio {base_s / ours_sample_s:5.1f}x")
        print(f"  baseline datasketch MinHash(128)+update_batch:       {smb / batch_s:6.2f} MB/s"
              f"  -> ratio {batch_s / ours_sample_s:5.1f}x")
        print(f"  recall (planted, true J >= 0.9): {rec:.4f} over {len(hi_sel)} pairs;"
              f" by true J: " + ", ".join(f"{k} {v[0]:.3f} (n={v[1]})" for k, v in rec_by.items()))
        print(f"  precision: reported pairs with true J >= 0.8: {prec:.4f} ({len(tj)}), with true J >= 0.75: {L['precision_pairs_J>=0.75']:.4f};"
              f" dropped docs with true J >= 0.8 to kept: {drop_prec:.4f} ({len(dropped)})")
        sf = L["sharded"]
        print(f"  scale-out flow: exact keys {sf['exact_keys_s']:.2f} s, {sf['shards']} shards written in"
              f" {sf['write_s']:.2f} s, exact dedup over them {sf['exact_s']:.2f} s; " + "; ".join(
                  f"{k.split('_')[1]} band task(s) {v['bands_s']:.2f} s ({v['per_task_s']:.2f} s each),"
                  f" cluster {v['cluster_s']:.2f} s" for k, v in sf.items() if k.startswith("tasks_"))
              + f"; same clusters whatever the band tasks: {sf['same_clusters_across_band_tasks']}")
        print(f"  brute force on {bf['docs']} docs ({bf['pairs']:,} pairs, exact Jaccard in {bf['brute_force_s']:.1f} s):"
              f" recall at true J >= 0.9 {bf['recall_J>=0.9']:.4f} ({bf['pairs_J>=0.9']} pairs),"
              f" dropped docs with true J >= 0.8 to kept {bf['precision_dropped']:.4f} ({bf['dropped']}),"
              f" clustered pairs below true J 0.5 (transitive links): {bf['clustered_pairs_J<0.5']}")
    res["recall_J>=0.9"] = float(np.mean(all_rec)) if all_rec else 1.0
    res["precision_pairs"] = all_prec_ok / max(1, all_prec_n)
    res["sig_mb_s_overall"] = total_mb / sig_s_total
    res["peak_rss_mb"] = rss_mb()
    print(f"\noverall: signatures {total_mb / sig_s_total:.1f} MB/s, {total_docs / sig_s_total:.0f} docs/s per process;"
          f" recall(J>=0.9) {res['recall_J>=0.9']:.4f} (target >= 0.95);"
          f" precision {res['precision_pairs']:.4f} (target >= 0.95); peak RSS {res['peak_rss_mb']:.0f} MB"
          f" ({rss_gen:.0f} MB of it reached while generating)")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
