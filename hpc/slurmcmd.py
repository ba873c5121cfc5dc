"""Every call hpc makes to one of Slurm's commands (sbatch, sacct, squeue, scancel, scontrol, sinfo).

    r = slurmcmd.call(["squeue", "-h", "-j", "123"], retry=Retry.of(profile))
    r.returncode, r.stdout, r.stderr            # Slurm answered (maybe "Invalid job id")

One helper, so that every command fails the same way and names the real cause:

- the command is not installed → :class:`SlurmNotInstalled`;
- no configuration at all (SLURM_CONF unset, no /etc/slurm/slurm.conf, and the DNS SRV lookup of a
  "configless" cluster failed — Slurm prints resolver errors) → :class:`SlurmNotConfigured`;
- the controller (or slurmdbd, for sacct) does not answer: connection refused, "Unable to contact
  slurm controller", "Socket timed out", a DNS failure for its host, our own timeout → retried with
  bounded exponential backoff (``Retry``: 3 tries, waiting 1 s then 2 s by default), then
  :class:`ControllerUnreachable`, naming the command, the daemon and its address from slurm.conf, and
  how many tries were made.

Anything else (a refused job, an unknown job id) is Slurm's answer: the caller gets the
CompletedProcess and reads it.

The tries and the first wait come from the cluster profile (``slurm_tries``, ``slurm_backoff_s``);
the environment variables ``CAMA_SLURM_TRIES`` and ``CAMA_SLURM_BACKOFF_S`` override them (jobs get
the profile's values exported by hpc.render).

sbatch is not idempotent: a request that timed out *after* it was sent may have created the job, and
sending it again would start a second copy (two trainings writing one output folder). So for sbatch
(``once=True``) only failures that prove the request never reached the controller (connect failure,
connection refused, DNS) are retried; a timeout is reported at once, saying to look at squeue first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import UserError

TRIES_ENV = "CAMA_SLURM_TRIES"
BACKOFF_ENV = "CAMA_SLURM_BACKOFF_S"
DEFAULT_CONF = Path("/etc/slurm/slurm.conf")

# The request never reached the daemon: safe to send again, whatever the command.
_NOT_SENT = re.compile(
    r"Unable to contact slurm controller|connect failure|Connection refused|No route to host|"
    r"Network is unreachable|Name or service not known|Temporary failure in name resolution|"
    r"Unable to resolve|failed to open persistent connection", re.IGNORECASE)
# The daemon was reached (or may have been) but did not answer in time: retried unless once=True.
_TIMED_OUT = re.compile(
    r"Socket timed out|Connection timed out|Zero Bytes were transmitted|Transport endpoint is not connected|"
    r"Connection reset by peer|Problem talking to the database|slurm backup controller in standby|"
    r"Slurm controller not responding", re.IGNORECASE)
_NO_CONFIG = re.compile(r"Could not establish a configuration source|DNS SRV lookup failed|fetch_config|"
                        r"Unable to process configuration file", re.IGNORECASE)


class SlurmError(UserError, RuntimeError):
    """A Slurm command could not do its job for a reason outside the request: the message says which."""


class SlurmNotInstalled(SlurmError):
    pass


class SlurmNotConfigured(SlurmError):
    pass


class ControllerUnreachable(SlurmError):
    """slurmctld (or slurmdbd) did not answer, after every try."""

    HINT = "Is it running? (`scontrol ping`; the dev cluster: python -m hpc.devcluster status)"

    def __init__(self, detail: str, command: str, tries: int) -> None:
        super().__init__(f"{detail}. {self.HINT}")
        self.detail = detail      # the message without the hint, to combine two of them
        self.command = command
        self.tries = tries


@dataclass(frozen=True)
class Retry:
    tries: int = 3            # attempts in all (1 = no retry)
    backoff_s: float = 1.0    # wait before the 2nd try; doubled before each next one (1, 2, 4 …)

    def __post_init__(self) -> None:
        if self.tries < 1:
            raise SlurmError(f"Slurm retries: tries must be >= 1, got {self.tries}")
        if self.backoff_s < 0:
            raise SlurmError(f"Slurm retries: backoff must be >= 0 s, got {self.backoff_s}")

    @classmethod
    def of(cls, profile: Any = None, environ: Mapping[str, str] | None = None) -> "Retry":
        """The profile's policy (defaults without one), with $CAMA_SLURM_TRIES / $CAMA_SLURM_BACKOFF_S on top."""
        environ = os.environ if environ is None else environ
        tries = getattr(profile, "slurm_tries", cls.tries)
        backoff = getattr(profile, "slurm_backoff_s", cls.backoff_s)
        try:
            if environ.get(TRIES_ENV):
                tries = int(environ[TRIES_ENV])
            if environ.get(BACKOFF_ENV):
                backoff = float(environ[BACKOFF_ENV])
        except ValueError:
            raise SlurmError(f"${TRIES_ENV} must be a whole number and ${BACKOFF_ENV} a number of seconds "
                             f"(got {environ.get(TRIES_ENV)!r}, {environ.get(BACKOFF_ENV)!r})") from None
        return cls(tries, backoff)

    def waits(self) -> list[float]:
        return [self.backoff_s * 2 ** i for i in range(self.tries - 1)]


# ---------------------------------------------------------------------------------------------
# Where the daemons are, for the message


def conf_path(environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if environ.get("SLURM_CONF"):
        return Path(environ["SLURM_CONF"])
    return DEFAULT_CONF if DEFAULT_CONF.is_file() else None


def _conf_values(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return values
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip().lower(), []).append(value.strip())
    return values


def daemon_address(command: str, environ: Mapping[str, str] | None = None) -> str:
    """'slurmctld at vm(127.0.0.1):6817 (SLURM_CONF=/etc/…/slurm.conf)', or slurmdbd's for sacct."""
    path = conf_path(environ)
    if path is None:
        return "the Slurm controller (no slurm.conf: SLURM_CONF is unset and /etc/slurm/slurm.conf does not exist)"
    where = f"SLURM_CONF={path}" if path != DEFAULT_CONF else str(path)
    if not path.is_file():
        return f"the Slurm controller ({where} does not exist)"
    conf = _conf_values(path)
    if command == "sacct" and conf.get("accountingstoragetype", [""])[0].endswith("slurmdbd"):
        host = conf.get("accountingstoragehost", ["localhost"])[0]
        port = conf.get("accountingstorageport", ["6819"])[0]
        return f"slurmdbd at {host}:{port} ({where})"
    hosts = conf.get("slurmctldhost") or conf.get("controlmachine") or ["?"]
    port = conf.get("slurmctldport", ["6817"])[0]
    return f"slurmctld at {' / '.join(f'{h}:{port}' for h in hosts)} ({where})"


# ---------------------------------------------------------------------------------------------
# The call


def _last_error(r: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (r.stderr or r.stdout or "").splitlines() if ln.strip()]
    # The most specific line: the last that names the failure, else the last line.
    for ln in reversed(lines):
        if _NOT_SENT.search(ln) or _TIMED_OUT.search(ln):
            return ln
    return lines[-1] if lines else f"exit status {r.returncode}, no output"


def call(cmd: Sequence[str], *, retry: Retry | None = None, timeout: float = 60,
         once: bool = False) -> subprocess.CompletedProcess:
    """Run one Slurm command; retried while its daemon does not answer; see the module docstring."""
    cmd = [str(c) for c in cmd]
    name = cmd[0]
    retry = retry or Retry.of()
    if shutil.which(name) is None:
        raise SlurmNotInstalled(f"{name} is not on PATH: is this a Slurm login node? (or run here with --local)")
    conf = os.environ.get("SLURM_CONF")
    if conf and not Path(conf).is_file():
        # Slurm itself would retry reading it for a minute, then fail.
        raise SlurmNotConfigured(f"{name}: SLURM_CONF={conf} does not exist: point it at the cluster's slurm.conf "
                                 f"(the dev cluster: source /tmp/cama-devcluster/slurm.env)")
    waits = retry.waits()
    t0 = time.monotonic()
    tries = 0
    while True:
        tries += 1
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            r = None
            why, resend = f"no answer within {timeout:g} s (our timeout)", not once
        except OSError as exc:
            raise SlurmNotInstalled(f"{name} could not be started: {exc}") from None
        else:
            if r.returncode == 0:
                return r
            text = f"{r.stderr}\n{r.stdout}"
            if _NO_CONFIG.search(text):
                raise SlurmNotConfigured(
                    f"{name}: no Slurm configuration to find the controller by: SLURM_CONF is "
                    f"{os.environ.get('SLURM_CONF') or 'unset'}, /etc/slurm/slurm.conf "
                    f"{'exists' if DEFAULT_CONF.is_file() else 'does not exist'}, and the DNS SRV lookup of a "
                    f"configless cluster failed ({_last_error(r)}). Point SLURM_CONF at the cluster's slurm.conf "
                    f"(the dev cluster: source /tmp/cama-devcluster/slurm.env)")
            # A timeout first: the request may have arrived even if a connect error is printed too.
            if _TIMED_OUT.search(text):
                why, resend = _last_error(r), not once
            elif _NOT_SENT.search(text):
                why, resend = _last_error(r), True
            else:
                return r  # Slurm's own answer (refused job, unknown id …): the caller reads it
        if not resend or tries > len(waits):
            break
        time.sleep(waits[tries - 1])
    spent = time.monotonic() - t0
    what = f"{tries} tries over {spent:.1f} s" if tries > 1 else "1 try"
    hint = ""
    if not resend and once:
        hint = (f"; the request may have reached it, so it was not sent again: check `squeue --me` "
                f"before submitting again")
    raise ControllerUnreachable(f"{name} could not reach {daemon_address(name)}: {why} ({what}){hint}", name, tries)
