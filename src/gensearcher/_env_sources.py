"""How settings are read from environment names: the derived names, the aliases, and the dotenv files.

Every field has one derived name, ``GENSEARCHER_<SECTION>_<FIELD>`` (``GENSEARCHER_<FIELD>`` at the top
level), plus the reference system's names declared on the field (``env_aliases``); the derived name wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

ENV_PREFIX = "GENSEARCHER_"


def env_name(section: str | None, field: str) -> str:
    """The canonical environment variable of a setting, e.g. env_name('policy', 'base_url')."""
    parts = [section, field] if section else [field]
    return ENV_PREFIX + "_".join(parts).upper()


def env_names(section: str | None, field: str, info: FieldInfo) -> list[str]:
    """The derived name of a field, then its declared aliases."""
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    aliases = extra.get("env_aliases")
    return [env_name(section, field), *([str(a) for a in aliases] if isinstance(aliases, list) else [])]


def section_class(info: FieldInfo) -> type[BaseModel] | None:
    """The section model of a top-level field, or None for a top-level leaf setting."""
    ann = info.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def leaf_fields(settings_cls: type[BaseModel]) -> list[tuple[str | None, str, FieldInfo]]:
    """(section or None, field, info) of every leaf setting, in declaration order."""
    out: list[tuple[str | None, str, FieldInfo]] = []
    for name, info in settings_cls.model_fields.items():
        section = section_class(info)
        if section is None:
            out.append((None, name, info))
        else:
            out.extend((name, sub, sub_info) for sub, sub_info in section.model_fields.items())
    return out


class NamedEnvSource(PydanticBaseSettingsSource):
    """Reads each declared field from its environment names; empty strings count as unset."""

    def __init__(self, settings_cls: type[BaseSettings], environ: dict[str, str]):
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def _lookup(self, names: list[str]) -> str | None:
        for name in names:
            value = self._environ.get(name)
            if value is not None and value.strip() != "":
                return value
        return None

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for section, field, info in leaf_fields(self.settings_cls):
            value = self._lookup(env_names(section, field, info))
            if value is None:
                continue
            if section is None:
                data[field] = value
            else:
                data.setdefault(section, {})[field] = value
        return data


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables of a dotenv file (`export` lines and comments allowed), or {} when it is missing."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if v is not None}
