"""Publishing and restoring weights: streaming weight diff make/apply with a manifest, Meta → HF
conversion, LoRA merge. May import common, torch, safetensors and transformers' config classes only
(peft and transformers models lazily, to verify a merge); never corpus, train or hpc
(``tests/test_imports.py``). The commands' typed configs are in :mod:`recover.config`, which imports no
torch, so a config is checked (CLI, ``hpc.submit``) before any heavy import.

Commands (``python -m recover COMMAND``, each also a function taking a typed config):

- ``make-diff`` (:func:`recover.diff.make_diff`): diff = tuned − raw, float32 (float64 for the rare
  tensor float32 cannot restore exactly), with ``recover-manifest.json``: per-tensor SHA-256 of raw,
  diff and tuned, shapes and dtypes.
- ``apply`` / ``recover`` (:func:`recover.apply.main`): raw + diff → tuned, slice by slice, checked
  against the manifest before and after; CaMA's diffs (no manifest, .bin or safetensors) too.
- ``verify`` (:func:`recover.manifest.verify_checkpoint`): one checkpoint against a manifest.
- ``convert-meta`` (:func:`recover.meta.convert_meta`): Meta's consolidated.*.pth → HF LLaMA.
- ``merge-lora`` (:func:`recover.lora.merge_lora`): W += scale · B A, streamed, logits verified.

Memory stays at a few slices of ``chunk_mb`` (32 MiB) whatever the model size; every output directory
is written under a temporary name and renamed when complete.
"""

from recover.errors import IntegrityError, RecoverError

__all__ = ["IntegrityError", "RecoverError"]
