"""Test doubles that stand at the process boundary, usable in your own tests too.

`ScriptedPolicyServer` is a real OpenAI-compatible chat server on 127.0.0.1 that answers each
conversation from a script. Point any policy client at `server.base_url`.
"""

from gensearcher.testing.policy_server import Reply, ScriptedPolicyServer
from gensearcher.testing.threaded_server import ThreadedUvicorn

__all__ = ["Reply", "ScriptedPolicyServer", "ThreadedUvicorn"]
