"""Redaction of configured secrets from texts that came back from a remote party.

A failing server may echo what it was sent (a header, the URL with its query) in its error body; that text
then travels on into observations the policy reads, trajectories, results files and stdout. Every error
text from a remote party goes through a `Redactor` before it is stored, shown or sent on.

A secret is replaced in its plain form and in the forms a server is likely to echo: URL-encoded (both
`quote` and `quote_plus`) and after a `Bearer ` prefix. Values shorter than `MIN_SECRET_CHARS` are not
treated as secrets: replacing every "a" in a text would destroy it and protect nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, SecretStr

MIN_SECRET_CHARS = 6
MASK = "[redacted]"


class Redactor:
    """`redactor(text)` is `text` with every form of every secret replaced by `[redacted]`."""

    def __init__(self, secrets: Iterable[str | SecretStr | None] = ()):
        forms: set[str] = set()
        for secret in secrets:
            value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            if not value:
                continue
            value = value.strip()
            if value.lower().startswith("bearer "):
                value = value[7:].strip()
            if len(value) < MIN_SECRET_CHARS:
                continue
            forms.update({value, quote(value, safe=""), quote_plus(value), quote(value)})
        # Longest first, so a form that contains another is replaced whole.
        self._forms = sorted(forms, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text

    def merged(self, other: Redactor) -> Redactor:
        combined = Redactor()
        combined._forms = sorted(set(self._forms) | set(other._forms), key=len, reverse=True)
        return combined

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Redactor:
        """The credentials among request headers (authorization, api keys, tokens, cookies)."""
        return cls(value for name, value in headers.items() if _is_credential_header(name))

    @classmethod
    def from_settings(cls, settings: BaseModel) -> Redactor:
        """Every SecretStr anywhere in a settings tree."""
        return cls(_secrets_of(settings))


def redact(text: str, secrets: Iterable[str | SecretStr | None]) -> str:
    """`text` with the given secrets replaced (see `Redactor`)."""
    return Redactor(secrets)(text)


def _is_credential_header(name: str) -> bool:
    name = name.lower()
    return name in ("authorization", "proxy-authorization", "cookie") or "key" in name or "token" in name


def credential_headers(headers: Mapping[str, str]) -> set[str]:
    """The names of the headers that carry credentials (dropped when a redirect leaves the origin)."""
    return {name for name in headers if _is_credential_header(name)}


def _secrets_of(value: object) -> list[SecretStr]:
    if isinstance(value, SecretStr):
        return [value]
    if isinstance(value, BaseModel):
        return [secret for name in type(value).model_fields for secret in _secrets_of(getattr(value, name))]
    if isinstance(value, (list, tuple, set)):
        return [secret for item in value for secret in _secrets_of(item)]
    if isinstance(value, dict):
        return [secret for item in value.values() for secret in _secrets_of(item)]
    return []
