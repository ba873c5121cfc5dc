"""Publishing and restoring weights: streaming weight diff make/apply with a manifest, Meta → HF
conversion, LoRA merge. May import torch, safetensors and transformers' config classes only.

The commands (`python -m recover make-diff|apply|verify|convert-meta|merge-lora`) are built in the
recovery issue; this package holds no code yet.
"""
