"""The only package that knows Slurm exists. Nothing imports hpc.

- ``python -m hpc.submit KIND --config JOB.yaml``: submitit launchers (corpus array + merge, and the
  GPU shapes for pretrain/lora/recover), validated against a cluster profile before submission.
- ``python -m hpc.status [JOB]``: state from sacct/squeue, log tails, ``--cancel``.
- ``hpc.profiles``: cluster profiles (``configs/cluster/*.yaml``).
- ``hpc.dist``: the one place that turns Slurm's environment into torch.distributed's
  (``python -m hpc.dist exec -- CMD`` inside srun).
- ``hpc.preempt``: complete-or-absent checkpoints and a submitit Checkpointable with a requeue limit.
- ``python -m hpc.devcluster up|down|status``: a real local Slurm cluster for tests and laptops.
"""
