"""Exceptions, split by who can fix the problem.

    GenSearcherError
    ├── UserError             the user can fix it (bad config, bad file); the CLI prints one line, exit 2
    │   └── ConfigError       a setting is missing or invalid; names the setting
    ├── PolicyError           the policy endpoint or model failed (infrastructure); the batch records it
    │   └── ContextLengthExceeded   the conversation no longer fits the model's context
    ├── ToolError             a tool failed; the agent shows the message to the model as an observation
    └── NotBuiltError         a feature that is declared but not implemented yet

Mistakes of the *model* (malformed tags, unknown tools, bad arguments) are not exceptions at all:
the agent records them on the step and shows them to the model (see ``gensearcher.agent.protocol``).
Exceptions never log or print when constructed, and their messages never contain secrets.
"""

from __future__ import annotations


class GenSearcherError(Exception):
    """Base class for every error raised by gensearcher."""


class UserError(GenSearcherError):
    """Something the user can fix: a bad input file, a bad flag, a missing folder."""


class ConfigError(UserError):
    """A setting is missing or invalid. The message names the setting (its environment variable)."""


class PolicyError(GenSearcherError):
    """The policy backend failed after its retries (endpoint down, 4xx, model crash)."""


class ContextLengthExceeded(PolicyError):
    """The prompt no longer fits the policy's context window."""


class ToolError(GenSearcherError):
    """A tool could not do its job. The message is shown to the model, so it must be helpful to it."""


class NotBuiltError(GenSearcherError):
    """The feature exists in the design but has not been implemented yet."""


class GenerationError(GenSearcherError):
    """An image could not be generated for one item (missing reference, backend failure). The batch records it."""
