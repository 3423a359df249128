"""An existing `.env.gen_image` (the reference system's settings file) works, or says why not.

The file is written here with every variable the reference system reads from it (reference-formats.md and
reference-system.md section 10), in its own syntax (quotes, `export`, comments, empty values).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from gensearcher.config import load_settings
from gensearcher.errors import ConfigError

EVERY_VARIABLE = """\
# Gen-Searcher settings, as the reference keeps them
GEN_IMAGE_SERVICE=nano
QWEN_EDIT_APP_URL='["http://127.0.0.1:8101", "http://127.0.0.1:8102"]'
QWEN_EDIT_APP_PATH=/generate
GEN_IMAGE_NANO_API_KEY=nano-secret-key
GEN_IMAGE_NANO_MODEL=gemini-3-pro-image-preview
GEN_IMAGE_NANO_BASE_URL=http://127.0.0.1:8103/v1beta
GEN_IMAGE_NANO_TIMEOUT=1200
GEN_IMAGE_NANO_MAX_TRY=30
GEN_IMAGE_NANO_MAX_POLL=180
GEN_REWARD_API_KEY=reward-secret-key
GEN_REWARD_API_BASE_URL=http://127.0.0.1:8104/v1
GEN_REWARD_MODEL=gpt-4.1-judge
GEN_REWARD_MAX_TRY=30
GEN_REWARD_TEXT_COEF=0.5
MAX_LLM_CALL_PER_RUN=7
GEN_IMAGE_OUTPUT_DIR=./output_images
GEN_IMAGE_TIMEOUT=1800
GEN_MIN_INPUT_IMAGES=2
GEN_MAX_INPUT_IMAGES=3
GEN_API_CONCURRENCY=32
GEN_MAX_NEW_TOKENS_PER_TURN=2048
QWEN_VL_MAX_PIXELS=90000
TEXT_SEARCH_API_BASE_URL=http://127.0.0.1:8105/search
IMAGE_SEARCH_API_BASE_URL=http://127.0.0.1:8105/images
export SERPER_KEY_ID="serper-secret-key"
JINA_API_KEYS=jina-secret-key
IMAGE_SEARCH_SAVE_DIR=./cached_images
IMG_DL_UA=TestAgent/1.0
BROWSE_SUMMARY_BASE_URL=http://127.0.0.1:8106/v1
BROWSE_SUMMARY_MODEL=Qwen3-VL-30B-A3B-Instruct
BROWSE_SUMMARY_API_KEY=summary-secret-key
BROWSE_GENERATE_ENGINE=vllm
BROWSE_RANDOM_SLEEP=0
OPENAI_API_KEY=policy-secret-key
OPENAI_BASE_URL=http://127.0.0.1:8107/v1
GEN_EVAL_MODEL=Gen-Searcher-8B
DATASET_NAME=GenRL
GEN_EVAL_INPUT_JSON=KnowGen-Bench.json
SOMETHING_ELSE=1
EMPTY_ONE=
"""

# A checkout under test (PYTHONPATH=src) stays first on the path of the commands the tests run.
PYTHONPATH = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}

IGNORED = ["GEN_IMAGE_NANO_MAX_POLL", "BROWSE_GENERATE_ENGINE", "BROWSE_RANDOM_SLEEP", "DATASET_NAME",
           "GEN_EVAL_INPUT_JSON", "SOMETHING_ELSE"]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "gensearcher.config" and r.levelno == logging.WARNING]


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def test_every_variable_is_mapped_or_named_in_one_warning_line(tmp_path, caplog):
    (tmp_path / ".env.gen_image").write_text(EVERY_VARIABLE)
    with caplog.at_level(logging.WARNING, logger="gensearcher.config"):
        s = load_settings()
    # The generator: Nano is the gemini backend, configured by GEN_IMAGE_NANO_*.
    g = s.generator
    assert g.backend == "gemini" and secret(g.api_key) == "nano-secret-key"
    assert g.api_model == "gemini-3-pro-image-preview" and g.api_base_url == "http://127.0.0.1:8103/v1beta"
    assert g.timeout_s == 1200  # the smaller of GEN_IMAGE_NANO_TIMEOUT and GEN_IMAGE_TIMEOUT (the reference)
    assert g.max_retries == 29  # 30 attempts
    assert g.app_urls == ["http://127.0.0.1:8101", "http://127.0.0.1:8102"] and g.app_path == "/generate"
    assert g.concurrency == 32
    # The judge (the reward's and the evaluation's) and the RL reward gate.
    j = s.judge
    assert secret(j.api_key) == "reward-secret-key" and (j.base_url, j.model) == ("http://127.0.0.1:8104/v1",
                                                                                "gpt-4.1-judge")
    assert (j.max_retries, j.text_coef) == (29, 0.5)
    assert (s.reward.min_input_images, s.reward.max_input_images) == (2, 3)
    assert s.reward.image_dir == Path("output_images")
    # The agent, its policy (the evaluation runner's OPENAI_* and GEN_EVAL_MODEL) and its tools.
    assert (s.agent.max_llm_calls, s.agent.max_new_tokens_per_turn, s.policy.max_pixels) == (7, 2048, 90000)
    assert s.policy.base_url == "http://127.0.0.1:8107/v1" and s.policy.model == "Gen-Searcher-8B"
    assert secret(s.policy.api_key) == "policy-secret-key"
    search = s.search
    assert (search.text_search_url, search.image_search_url) == ("http://127.0.0.1:8105/search",
                                                                "http://127.0.0.1:8105/images")
    assert secret(search.serper_api_key) == "serper-secret-key"
    assert secret(search.jina_api_keys) == "jina-secret-key"
    assert search.image_dir == Path("cached_images") and s.fetch.user_agent == "TestAgent/1.0"
    assert search.summary_base_url == "http://127.0.0.1:8106/v1"
    assert search.summary_model == "Qwen3-VL-30B-A3B-Instruct"
    assert secret(search.summary_api_key) == "summary-secret-key"
    # Everything else: one line, each variable with its reason; nothing mapped in it, no secret, no empty one.
    lines = warnings_of(caplog)
    assert len(lines) == 1 and "\n" not in lines[0]
    line = lines[0]
    assert line.startswith(".env.gen_image: ignored ")
    for name in IGNORED:
        assert f"{name} (" in line
    assert line.count(" (") == len(IGNORED)
    assert "SOMETHING_ELSE (not a setting gensearcher knows)" in line and "EMPTY_ONE" not in line
    assert "secret" not in line and "GEN_IMAGE_NANO_API_KEY" not in line


@pytest.mark.parametrize("service, backend", [("nano", "gemini"), ("seed", "seedream"), ("gpt", "openai"),
                                              ("qwen_image", "http")])
def test_gen_image_service_selects_the_generator(tmp_path, caplog, service, backend):
    (tmp_path / ".env.gen_image").write_text(f"GEN_IMAGE_SERVICE={service}\nGEN_IMAGE_NANO_API_KEY=nano-key\n"
                                             "GEN_IMAGE_NANO_MAX_TRY=5\n")
    with caplog.at_level(logging.WARNING, logger="gensearcher.config"):
        s = load_settings()
    assert s.generator.resolved_backend() == backend
    if backend == "gemini":
        assert secret(s.generator.api_key) == "nano-key" and s.generator.max_retries == 4
        assert not warnings_of(caplog)
    else:  # Nano's key is not sent to another vendor
        assert s.generator.api_key is None and s.generator.max_retries == 3
        assert warnings_of(caplog) == [".env.gen_image: ignored GEN_IMAGE_NANO_API_KEY (GEN_IMAGE_SERVICE is "
                                       "not nano); GEN_IMAGE_NANO_MAX_TRY (GEN_IMAGE_SERVICE is not nano)"]


def test_precedence_environment_over_dotenv_over_gen_image_file(tmp_path, monkeypatch):
    (tmp_path / ".env.gen_image").write_text("MAX_LLM_CALL_PER_RUN=3\nGEN_REWARD_MODEL=from-file\n"
                                             "GEN_IMAGE_SERVICE=seed\nGEN_API_CONCURRENCY=4\n")
    (tmp_path / ".env").write_text("GENSEARCHER_JUDGE_MODEL=from-dotenv\n")
    monkeypatch.setenv("GENSEARCHER_GENERATOR_BACKEND", "openai")
    s = load_settings()
    assert s.agent.max_llm_calls == 3 and s.judge.model == "from-dotenv"
    assert s.generator.backend == "openai" and s.generator.concurrency == 4
    assert load_settings({"generator": {"concurrency": 2}}).generator.concurrency == 2
    assert load_settings(gen_image_file=None).agent.max_llm_calls == 9


def test_generic_openai_names_count_only_in_the_file(monkeypatch):
    """In a shell, OPENAI_* usually belong to other tools: they must not become the policy (nor its key)."""
    monkeypatch.setenv("OPENAI_API_KEY", "someone-elses-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8199/v1")
    s = load_settings()
    assert s.policy.base_url is None and s.policy.api_key is None


@pytest.mark.parametrize("text, message", [
    ("GEN_IMAGE_SERVICE=dalle\n", "GEN_IMAGE_SERVICE='dalle' is not one of nano, seed, gpt"),
    ("GEN_IMAGE_SERVICE=nano\nGEN_IMAGE_NANO_MAX_TRY=many\n", "GEN_IMAGE_NANO_MAX_TRY: not an integer"),
    ("GEN_MIN_INPUT_IMAGES=5\nGEN_MAX_INPUT_IMAGES=4\n", "min_input_images is larger than max_input_images"),
    ("GEN_API_CONCURRENCY=0\n", "GENSEARCHER_GENERATOR_CONCURRENCY"),
])
def test_bad_values_are_config_errors_naming_the_variable(tmp_path, text, message):
    (tmp_path / ".env.gen_image").write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings()


def test_the_command_line_reads_it_and_warns_once(tmp_path):
    (tmp_path / ".env.gen_image").write_text(
        "GEN_IMAGE_SERVICE=nano\nGEN_IMAGE_NANO_API_KEY=nano-secret-key\nBROWSE_RANDOM_SLEEP=1\n")
    result = subprocess.run([sys.executable, "-m", "gensearcher", "config"], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                                               **PYTHONPATH},
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert '"backend": "gemini"' in result.stdout and "nano-secret-key" not in result.stdout + result.stderr
    warning = [line for line in result.stderr.splitlines() if "ignored" in line]
    assert len(warning) == 1 and "BROWSE_RANDOM_SLEEP (" in warning[0]
