"""Training on the packed corpus: pretraining (HF Trainer + DeepSpeed ZeRO-3) and LoRA tuning.

May import corpus.indexed (the reader), torch, transformers, deepspeed and peft. The entry points
(`python -m train.pretrain`, `python -m train.lora`, `python -m train.generate`) are built in the
training issue; this package holds no code yet.
"""
