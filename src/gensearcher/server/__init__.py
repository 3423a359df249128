"""The generator server (`gensearcher serve`): an HTTP front over pipeline worker processes."""

from __future__ import annotations

from typing import Any

from gensearcher.config import Settings
from gensearcher.generate import pipeline_arguments
from gensearcher.server.app import ImageServer, create_app
from gensearcher.server.workers import WorkerPool

__all__ = ["ImageServer", "WorkerPool", "build_app", "create_app"]


def build_app(settings: Settings, *, model: str, edit_model: str | None = None) -> Any:
    """The ASGI app for `model` (a text-to-image or an edit pipeline) and an optional edit model."""
    config, generator = settings.server, settings.generator
    devices = config.devices or ["cpu"] * config.workers
    pipeline_kwargs = pipeline_arguments(generator, model=model, edit_model=edit_model)
    pool = WorkerPool(pipeline_kwargs, devices, max_queue=config.max_queue, failure_threshold=config.failure_threshold,
                      threads_per_worker=config.threads_per_worker)
    server = ImageServer(pool, config, model=model, fetch=settings.fetch)
    token = config.token.get_secret_value() if config.token is not None else None
    return create_app(server, token=token)
