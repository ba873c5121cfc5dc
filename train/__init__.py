"""Training on the packed corpus: pretraining (HF Trainer + DeepSpeed ZeRO-3), LoRA tuning, generation.

    python -m train.pretrain --config JOB.yaml     continued pretraining (configs/pretrain/, configs/tiny/)
    python -m train.lora --config JOB.yaml         alpaca-style LoRA instruction tuning (configs/lora/)
    python -m train.generate --base DIR …          continuation, instructions, case files (CaMA's decoding)
    python -m train.web --base DIR [--lora DIR]    the page: instruction + input + decoding, streamed answer
    python -m train.ie --task ner|re|ee …          information-extraction instruction records
    python -m train.ie_eval --cases GOLD --outputs OUT   P/R/F1 of model answers on IE cases

Generation (:mod:`train.generate`) and information extraction (:mod:`train.ie`) are libraries that
know nothing of each other; :mod:`train.cli` holds their command lines and joins them (IE cases
generated, then scored). Config errors are reported before torch is imported.

Every rank runs the same entry point: under Slurm through ``hpc.dist`` (srun, one task per GPU),
locally through torchrun or as one process. May import corpus (the .bin/.idx reader, the mix index,
typed configs), torch, transformers, deepspeed and peft — never hpc.
"""
