"""The main job end to end: tokenizer → corpus → pretrain → LoRA (or full tuning) → publish + restore →
generate → report.

    python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml          # Slurm if there, else here
    python -m hpc.submit pipeline --config configs/tiny/pipeline.yaml --local  # here, stage after stage

One YAML names the run folder and each stage's own config (the same files the stages take alone),
with overrides; the chain wires the paths between stages so that everything lands in ``run_dir``:

    run_dir/tokenizer.model      trained from the samples unless the config names one
    run_dir/corpus.{bin,idx,json}
    run_dir/pretrain/final       the pretrained model (HF, safetensors); checkpoints beside it
    run_dir/lora/adapter         the LoRA adapter
    run_dir/tuned                base + adapter merged (recover merge-lora): the model to publish
    run_dir/sft/final            instead, with ``tuning: full``: the sft stage's fully tuned model (train.sft),
                                 published as it is (no adapter, nothing to merge)
    run_dir/diff                 tuned − pretrained, with its manifest (recover make-diff)
    run_dir/restored             pretrained + diff (recover apply), checked bit-exact against the manifest
    run_dir/generations.jsonl    the case file run through the restored model
    run_dir/report.md + *.png    corpus statistics, loss curves, tokens/s, samples, where things are

The rooms, each importing only what is below it:

- :mod:`hpc.chain.markers`: the stage list and the ``run_dir/stages/<stage>.json`` markers;
- :mod:`hpc.chain.config`: pipeline.yaml → :class:`~hpc.chain.config.Chain`, every stage's typed config
  resolved and frozen (checked once, at submission; the jobs rebuild exactly that config);
- :mod:`hpc.chain.stages`: what each stage does, skipping one whose marker matches;
- :mod:`hpc.chain.plan`: the stages as dependent Slurm jobs (afterok);
- :mod:`hpc.chain.report`: ``run_dir/report.md``, from the markers and the artifacts only.

Every stage writes its marker when it is done, with a fingerprint of what it was given; a rerun skips
a stage whose marker matches, so each stage can be rerun alone (delete its marker) and an interrupted
chain picks up where it stopped. On Slurm every stage is its own job, started only after the previous
one succeeded; pretraining and tuning (LoRA or sft) take the GPU shape (one task per GPU, ``hpc.dist`` env, requeue on
preemption), the others one task each.
"""
