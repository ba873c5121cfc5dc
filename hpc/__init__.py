"""The only package that knows Slurm exists. Nothing imports hpc.

- ``python -m hpc.submit KIND --config JOB.yaml``: plan (hpc.plan: checked against the job's config and
  the cluster profile), render (hpc.render: our own sbatch scripts) and submit (through submitit's
  pickles and worker) the corpus builds, the GPU shapes for pretrain/lora/recover, and the pipeline.
- ``hpc.jobs``: the job-kind table — each kind's config class, entry point, planner and shape, as data.
- ``hpc.tasks`` / ``hpc.corpus_jobs``: what runs inside the jobs.
- ``hpc.chain``: the main job end to end (config, stages, markers, report), each stage a dependent job.
- ``python -m hpc.status [JOB]``: state from sacct/squeue, log tails, ``--cancel``.
- ``hpc.profiles``: cluster profiles (``configs/cluster/*.yaml``).
- ``hpc.slurmcmd``: every call to a Slurm command — retried while the controller does not answer, and
  an error naming the command, the daemon's address and the tries when it never does.
- ``hpc.dist``: the one place that turns Slurm's environment into torch.distributed's
  (``python -m hpc.dist exec -- CMD`` inside srun).
- ``hpc.preempt``: a training job that saved on the signal is requeued, up to the profile's limit.
- ``python -m hpc.devcluster up|down|status``: a real local Slurm cluster for tests and laptops.
"""
