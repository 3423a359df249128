"""The reference system's environment names that are not plain aliases of one setting.

Most of the reference's names mean exactly one of our settings and are declared as aliases on the field
(``env_aliases`` in ``config.py``). The ones here need more: a value to translate (``GEN_IMAGE_SERVICE=nano``
means the gemini backend), a condition (``GEN_IMAGE_NANO_*`` configure the generator only when the
service is Nano), a unit (``*_MAX_TRY`` counts attempts, our settings count retries), or a file of their
own (the evaluation runner's generic ``OPENAI_*`` names are read from ``.env.gen_image`` only: in a
shell they usually belong to other tools, and the key would go to whatever endpoint they name).

``translate`` turns one source's names into our canonical names (never replacing a canonical name the
source already has) and, for a ``.env.gen_image`` file, lists what it ignored and why.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from gensearcher.errors import ConfigError

GEN_IMAGE_FILE = ".env.gen_image"

# GEN_IMAGE_SERVICE value -> our generator backend. The reference's default is its Qwen server.
SERVICES = {"nano": "gemini", "seed": "seedream", "gpt": "openai", "qwen_image": "http", "qwen": "http"}
_OUR_BACKENDS = ("diffusers", "http", "openai", "gemini", "seedream")

# Nano's settings, honoured when the generator is gemini (GEN_IMAGE_SERVICE=nano or our own name).
_NANO = {
    "GEN_IMAGE_NANO_API_KEY": "GENSEARCHER_GENERATOR_API_KEY",
    "GEN_IMAGE_NANO_MODEL": "GENSEARCHER_GENERATOR_API_MODEL",
    "GEN_IMAGE_NANO_BASE_URL": "GENSEARCHER_GENERATOR_API_BASE_URL",
}

# The evaluation runner's names: they configure the policy it evaluates (a vLLM server by default).
_FILE_ONLY = {
    "OPENAI_BASE_URL": "GENSEARCHER_POLICY_BASE_URL",
    "OPENAI_API_KEY": "GENSEARCHER_POLICY_API_KEY",
    "GEN_EVAL_MODEL": "GENSEARCHER_POLICY_MODEL",
}

IGNORED = {
    "BROWSE_GENERATE_ENGINE": "browse summaries use any OpenAI-compatible endpoint, set by BROWSE_SUMMARY_*",
    "BROWSE_RANDOM_SLEEP": "no random delay before browse; the fetcher limits requests per host instead",
    "GEN_IMAGE_NANO_MAX_POLL": "unused by the reference as well",
    "DATASET_NAME": "an rllm dataset registry name; training reads data files",
    "GEN_EVAL_INPUT_JSON": "give the file to the command: --input or --data",
}


def generator_backend(sources: Sequence[Mapping[str, str]]) -> str | None:
    """The generator backend the sources ask for, highest-precedence source first (None: not asked)."""
    for values in sources:
        for name in ("GENSEARCHER_GENERATOR_BACKEND", "GENSEARCHER_GENERATOR"):
            if values.get(name, "").strip():
                return values[name].strip()
        service = values.get("GEN_IMAGE_SERVICE", "").strip()
        if service:
            return _service(service)
    return None


def translate(values: Mapping[str, str], *, backend: str | None, known: Collection[str],
              whole_file: bool) -> tuple[dict[str, str], list[str]]:
    """`values` plus canonical names for the reference names above; and "NAME (reason)" for each ignored one.

    `known` are the names the settings read directly (canonical names and aliases). Only a whole
    `.env.gen_image` file reports what it ignores (the process environment holds much else).
    """
    out = dict(values)
    ignored: list[str] = []

    def put(name: str, value: str) -> None:
        if not out.get(name, "").strip():
            out[name] = value

    for name, value in values.items():
        value = value.strip()
        if not value:
            continue  # an empty value sets nothing, in the reference too
        if name == "GEN_IMAGE_SERVICE":
            backend_name = _service(value)
            # Our own alias wins, as in generator_backend.
            if not values.get("GENSEARCHER_GENERATOR", "").strip():
                put("GENSEARCHER_GENERATOR_BACKEND", backend_name)
        elif name in _NANO or name in ("GEN_IMAGE_NANO_TIMEOUT", "GEN_IMAGE_NANO_MAX_TRY"):
            if backend != "gemini":
                ignored.append(f"{name} (GEN_IMAGE_SERVICE is not nano)")
            elif name == "GEN_IMAGE_NANO_TIMEOUT":
                # The reference's deadline for Nano is the smaller of the two timeouts.
                limits = [_number(name, value), *([_number("GEN_IMAGE_TIMEOUT", values["GEN_IMAGE_TIMEOUT"])]
                                                  if values.get("GEN_IMAGE_TIMEOUT", "").strip() else [])]
                put("GENSEARCHER_GENERATOR_TIMEOUT_S", f"{min(limits):g}")
            elif name == "GEN_IMAGE_NANO_MAX_TRY":
                put("GENSEARCHER_GENERATOR_MAX_RETRIES", str(_retries(name, value)))
            else:
                put(_NANO[name], value)
        elif name == "GEN_REWARD_MAX_TRY":
            put("GENSEARCHER_JUDGE_MAX_RETRIES", str(_retries(name, value)))
        elif name in _FILE_ONLY and whole_file:
            put(_FILE_ONLY[name], value)
        elif whole_file and name in IGNORED:
            ignored.append(f"{name} ({IGNORED[name]})")
        elif whole_file and name not in known:
            ignored.append(f"{name} (not a setting gensearcher knows)")
    return out, ignored


def _service(value: str) -> str:
    name = value.strip().lower()
    if name in SERVICES:
        return SERVICES[name]
    if name in _OUR_BACKENDS:
        return name
    raise ConfigError(f"GEN_IMAGE_SERVICE={value!r} is not one of {', '.join([*SERVICES, *_OUR_BACKENDS])}")


def _number(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"invalid setting {name}: not a number") from None


def _retries(name: str, value: str) -> int:
    """The reference counts attempts; we count retries after the first attempt."""
    try:
        attempts = int(value)
    except ValueError:
        raise ConfigError(f"invalid setting {name}: not an integer") from None
    return max(attempts - 1, 0)
