"""The server flags of the deployment, read from ``deploy/`` so the bench runs what ships.

daphne's limits live in ``deploy/daphne.env`` (``DAPHNE_LIMITS``), uvicorn's command line in
``deploy/uvicorn.sh``. Reading them here (instead of copying them into the bench) means a
flag changed for production is the flag measured: lifespan on, no proxy headers, the same
WebSocket implementation, size limits and ping interval.
"""

from __future__ import annotations

import shlex
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parent.parent / "deploy"


def daphne_flags(deploy_dir: Path = DEPLOY_DIR) -> list[str]:
    """``DAPHNE_LIMITS`` from ``daphne.env``, split into arguments."""
    for line in (deploy_dir / "daphne.env").read_text().splitlines():
        if line.startswith("DAPHNE_LIMITS="):
            return shlex.split(shlex.split(line.partition("=")[2])[0])
    raise RuntimeError(f"DAPHNE_LIMITS not found in {deploy_dir / 'daphne.env'}")


def uvicorn_flags(deploy_dir: Path = DEPLOY_DIR) -> list[str]:
    """The options of ``uvicorn.sh``'s ``exec uvicorn`` line, without app, host and port.

    The bench supplies its own application, host and port; every other option is kept.
    """
    text = (deploy_dir / "uvicorn.sh").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if line.startswith("exec uvicorn "):
            words = shlex.split(line, comments=True)[2:]
            break
    else:
        raise RuntimeError(f"no 'exec uvicorn' line in {deploy_dir / 'uvicorn.sh'}")
    flags: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in {"--host", "--port"}:
            skip = True
        elif word.startswith("-") or flags:
            flags.append(word)
    return flags
