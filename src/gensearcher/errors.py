"""Exceptions, split by who can fix the problem. Every class gensearcher raises is on this tree.

    GenSearcherError
    ├── UserError                the user can fix it (bad file, bad flag); the CLI prints one line, exit 2
    │   ├── ConfigError          a setting is missing or invalid; names the setting (its environment variable)
    │   ├── server.app.InputError      a bad request to the generator server (its status, a JSON error body)
    │   ├── server.guard.BodyTooLarge  a request body grew past the server's cap (413)
    │   ├── train.sharegpt.BadRow      a sharegpt row is unusable (reported with its index, left out)
    │   └── train.collator.RenderError a training row does not render as the agent's turns
    ├── NotBuiltError            a declared feature not implemented yet; exit 2
    ├── PolicyError              the policy endpoint or model failed (infrastructure); the batch records it
    │   └── ContextLengthExceeded      the conversation no longer fits the model's context
    ├── ToolError                a tool failed; the agent shows the message to the model as an observation
    │   ├── web.cache.CacheMiss        replay mode has no entry for a request
    │   └── web.fetcher.FetchError     a fetch was refused or failed; `reason` says which
    │       └── web.fetcher.BlockedAddress   a host resolves only to refused addresses (inside aiohttp)
    ├── GenerationError          an image could not be made for one item; the batch records it
    │   ├── generate.http_backend._Retryable   one attempt failed; another attempt may not (internal)
    │   ├── server.workers.QueueFull           the generator server's queue is full (HTTP 429)
    │   ├── server.workers.WorkerFailure       the pipeline raised, or its worker process died
    │   └── server.workers.NoCapableWorker     no worker serves this kind of request (text or edit)
    ├── data.io.PathNotFound     an input file names a path that resolves nowhere; an item error
    ├── viewer.files.Refused     a viewer request for a file outside the served folders (404)
    ├── judge.JudgeError         no usable judgement after the retries; the row records it
    ├── train.grpo.TrainingHalted      too many rollouts excluded (services down) after the pauses; exit 1
    └── train.rollout.SequenceError    a trajectory's turns are not one token sequence (not trainable)

Mistakes of the *model* (malformed tags, unknown tools, bad arguments) are not exceptions at all:
the agent records them on the step and shows them to the model (see ``gensearcher.agent.protocol``).
Exceptions never log or print when constructed, and their messages never contain secrets.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "ContextLengthExceeded",
    "GenSearcherError",
    "GenerationError",
    "NotBuiltError",
    "PolicyError",
    "ToolError",
    "UserError",
]


class GenSearcherError(Exception):
    """Base class for every error raised by gensearcher."""


class UserError(GenSearcherError):
    """Something the user can fix: a bad input file, a bad flag, a missing folder."""


class ConfigError(UserError):
    """A setting is missing or invalid. The message names the setting (its environment variable)."""


class NotBuiltError(GenSearcherError):
    """The feature exists in the design but has not been implemented yet."""


class PolicyError(GenSearcherError):
    """The policy backend failed after its retries (endpoint down, 4xx, model crash)."""


class ContextLengthExceeded(PolicyError):
    """The prompt no longer fits the policy's context window."""


class ToolError(GenSearcherError):
    """A tool could not do its job. The message is shown to the model, so it must be helpful to it.

    `outage` is True when a service the tool depends on failed (a search API down, rate-limited or timing
    out after its retries), not because of what the model asked: training excludes such a rollout from
    the update instead of scoring it. Set it per error (`ToolError(message, outage=True)`, or on a caught
    one) where the failing service is known, or per class (`CacheMiss`).
    """

    outage: bool = False

    def __init__(self, *args: object, outage: bool | None = None):
        super().__init__(*args)
        if outage is not None:
            self.outage = outage


class GenerationError(GenSearcherError):
    """No image for one item (a missing reference, a backend failure); the batch records it."""
