"""The only package that knows Slurm exists: cluster profiles, submitit launchers
(`python -m hpc.submit`), torch.distributed environment from Slurm, checkpoint/requeue, status and
the local dev cluster. Nothing imports hpc.

Built in the Slurm issue; this package holds no code yet.
"""
