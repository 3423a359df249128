"""Small pieces every HTTP client here shares: backoff, Retry-After, and reading a vendor's error body."""

from __future__ import annotations

import json
import random


def backoff(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential backoff with jitter: about base, 2 base, 4 base ... seconds, at most `cap`."""
    return min(cap, base * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25)


def retry_after_seconds(value: str | None, *, cap: float = 60.0) -> float | None:
    """Retry-After in seconds (the HTTP-date form is rare for APIs; callers fall back to backoff)."""
    try:
        return max(0.0, min(cap, float(value))) if value is not None and value != "" else None
    except ValueError:
        return None


def error_message(raw: bytes, limit: int = 300) -> str:
    """The message of an error body: OpenAI/vLLM/Google/Ark `{"error": {...}}`, flat `{"message"}`, or text."""
    try:
        payload = json.loads(raw)
    except ValueError:
        return raw[:limit].decode("utf-8", "replace")
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    if isinstance(error, dict):
        code = error.get("code") or error.get("status")
        message = str(error.get("message", error))
        return (message + (f" ({code})" if isinstance(code, str) and code else ""))[:limit]
    return str(error)[:limit]
