"""Builds the media side of a server from the config: the one place ``rtp:`` and ``media:``
become a ``media.MediaInterface``.

``media.workers`` 0 (the default) runs RTP in the main process (``MediaEngine``); N > 0 runs
N media worker processes (``MediaWorkerPool``) over slices of ``rtp.ports``; ``auto`` one
per CPU core. The server starts the returned object (``start``) and closes it with itself.
"""

from __future__ import annotations

import os

from config import SwitchboardConfig
from media import MediaEngine, MediaInterface, MediaWorkerPool

__all__ = ["build_media", "media_workers"]


def media_workers(cfg: SwitchboardConfig) -> int:
    """How many media worker processes the config asks for (0: in process)."""
    wanted = cfg.media.workers
    if wanted == "auto":
        return os.cpu_count() or 1
    return wanted


def build_media(cfg: SwitchboardConfig) -> MediaInterface:
    """The media implementation the config asks for, not started yet."""
    rtp = cfg.rtp
    workers = media_workers(cfg)
    if workers == 0:
        return MediaEngine(
            rtp.host,
            rtp.ports[0],
            rtp.ports[1],
            inactivity_timeout=float(rtp.inactivity_timeout),
            tone_plan=cfg.media.tone_plan,
        )
    return MediaWorkerPool(
        rtp.host,
        rtp.ports[0],
        rtp.ports[1],
        workers,
        inactivity_timeout=float(rtp.inactivity_timeout),
        tone_plan=cfg.media.tone_plan,
    )
