"""Configuration: precedence, reference aliases, masking, validation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gensearcher.config import Settings, all_env_names, load_settings
from gensearcher.errors import ConfigError

# A checkout under test (PYTHONPATH=src) stays first on the path of the commands the tests run.
PYTHONPATH = {"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}


def test_precedence_flag_over_env_over_dotenv_over_toml_over_default(tmp_path, monkeypatch):
    (tmp_path / "gensearcher.toml").write_text('max_refs = 2\n[policy]\nmodel = "toml-model"\ntemperature = 0.1\n[agent]\nmax_llm_calls = 3\n')
    assert load_settings().policy.model == "toml-model"
    (tmp_path / ".env").write_text("GENSEARCHER_POLICY_MODEL=dotenv-model\nMAX_LLM_CALL_PER_RUN=4\nUNRELATED=1\n")
    assert load_settings().policy.model == "dotenv-model"
    monkeypatch.setenv("GENSEARCHER_POLICY_MODEL", "env-model")
    settings = load_settings()
    assert settings.policy.model == "env-model"
    assert settings.agent.max_llm_calls == 4  # .env alias beats the toml
    assert settings.policy.temperature == 0.1 and settings.max_refs == 2  # from the toml
    assert settings.policy.top_p == 0.9  # default
    flagged = load_settings({"policy": {"model": "flag-model", "base_url": None}})
    assert flagged.policy.model == "flag-model" and flagged.policy.temperature == 0.1


def test_explicit_config_file(tmp_path):
    path = tmp_path / "custom.toml"
    path.write_text("[agent]\nmax_new_tokens_per_turn = 1000\n")
    assert load_settings(config_file=path).agent.max_new_tokens_per_turn == 1000
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(config_file=tmp_path / "missing.toml")


def test_reference_system_names_are_aliases(monkeypatch):
    env = {
        "MAX_LLM_CALL_PER_RUN": "7", "GEN_MAX_NEW_TOKENS_PER_TURN": "2048", "QWEN_VL_MAX_PIXELS": "90000",
        "IMAGE_SEARCH_SAVE_DIR": "./cached_images", "SERPER_KEY_ID": "serper-secret",
        "TEXT_SEARCH_API_BASE_URL": "https://s.example/search", "IMAGE_SEARCH_API_BASE_URL": "https://s.example/images",
        "JINA_API_KEYS": "jina-secret", "BROWSE_SUMMARY_BASE_URL": "http://sum:8001/v1",
        "BROWSE_SUMMARY_MODEL": "Qwen3-VL-30B-A3B-Instruct", "QWEN_EDIT_APP_URL": "http://a:8001, http://b:8001",
        "GEN_REWARD_API_KEY": "judge-secret", "GEN_REWARD_API_BASE_URL": "https://api.example/v1",
        "GEN_REWARD_MODEL": "gpt-4.1", "GEN_REWARD_TEXT_COEF": "0.5", "GENSEARCHER_IMAGE_SEARCH_BACKEND": "serper",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = load_settings()
    assert (s.agent.max_llm_calls, s.agent.max_new_tokens_per_turn, s.policy.max_pixels) == (7, 2048, 90000)
    assert str(s.search.image_dir) == "cached_images" and s.search.serper_api_key.get_secret_value() == "serper-secret"
    assert s.search.text_search_url == "https://s.example/search" and s.search.summary_model == "Qwen3-VL-30B-A3B-Instruct"
    assert s.generator.app_urls == ["http://a:8001", "http://b:8001"]
    assert s.judge.model == "gpt-4.1" and s.judge.text_coef == 0.5 and s.search.image_backend == "serper"
    masked = str(s.masked())
    assert "secret" not in masked and masked.count("***") == 3


def test_canonical_name_beats_alias_and_empty_values_are_unset(monkeypatch):
    monkeypatch.setenv("MAX_LLM_CALL_PER_RUN", "7")
    monkeypatch.setenv("GENSEARCHER_AGENT_MAX_LLM_CALLS", "5")
    monkeypatch.setenv("SERPER_KEY_ID", "")
    s = load_settings()
    assert s.agent.max_llm_calls == 5 and s.search.serper_api_key is None


def test_json_list_of_generator_urls(monkeypatch):
    monkeypatch.setenv("QWEN_EDIT_APP_URL", '["http://x:1", "http://y:2"]')
    assert load_settings().generator.app_urls == ["http://x:1", "http://y:2"]


def test_invalid_value_names_the_setting_without_echoing_it(monkeypatch):
    monkeypatch.setenv("GENSEARCHER_POLICY_TEMPERATURE", "hot-secret")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "GENSEARCHER_POLICY_TEMPERATURE" in str(info.value) and "hot-secret" not in str(info.value)


def test_policy_backend_resolution():
    assert load_settings({"policy": {"base_url": "http://x/v1", "model": "m"}}).resolved_policy_backend() == "openai"
    assert load_settings({"policy": {"model": "/ckpt"}}).resolved_policy_backend() == "transformers"
    with pytest.raises(ConfigError, match="GENSEARCHER_POLICY_MODEL"):
        load_settings({"policy": {"base_url": "http://x/v1"}}).resolved_policy_backend()
    with pytest.raises(ConfigError, match="GENSEARCHER_POLICY_BASE_URL"):
        load_settings({"policy": {"backend": "openai", "model": "m"}}).resolved_policy_backend()


def test_required_environment_names_exist():
    names = {name for names in all_env_names().values() for name in names}
    for required in ("GENSEARCHER_POLICY_BASE_URL", "GENSEARCHER_POLICY_MODEL", "GENSEARCHER_POLICY_API_KEY",
                     "GENSEARCHER_OUTPUT_DIR", "GENSEARCHER_SEARCH_BACKEND", "GENSEARCHER_IMAGE_SEARCH_BACKEND",
                     "GENSEARCHER_JUDGE_BASE_URL", "GENSEARCHER_JUDGE_MODEL", "GENSEARCHER_JUDGE_API_KEY"):
        assert required in names
    assert set(Settings.model_fields) >= {"policy", "agent", "search", "generator", "judge"}


def test_config_command_masks_secrets_and_bad_config_exits_2(tmp_path):
    env = {"PATH": "", "GENSEARCHER_POLICY_API_KEY": "sk-very-secret", "HOME": str(tmp_path), **PYTHONPATH}
    result = subprocess.run([sys.executable, "-m", "gensearcher", "config"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 0 and '"api_key": "***"' in result.stdout and "sk-very-secret" not in result.stdout
    env["GENSEARCHER_AGENT_MAX_LLM_CALLS"] = "zero"
    result = subprocess.run([sys.executable, "-m", "gensearcher", "config"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=60, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "GENSEARCHER_AGENT_MAX_LLM_CALLS" in result.stderr


def test_every_setting_has_a_description():
    from gensearcher._env_sources import leaf_fields

    bare = [f"{section}.{field}" if section else field for section, field, info in leaf_fields(Settings)
            if not (info.description or "").strip()]
    assert bare == []


def test_the_readme_table_is_generated_from_the_descriptions(tmp_path):
    """The README's configuration table is `gensearcher config --markdown`; rerun it with --update README.md."""
    from gensearcher._settings_docs import END, START, replace_block, settings_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = readme.split(START, 1)[1].split(END, 1)[0]
    assert block == "\n" + settings_markdown(), "run: gensearcher config --markdown --update README.md"
    table = settings_markdown()
    for path, names in all_env_names().items():
        assert f"| `{path}` | " + ", ".join(f"`{n}`" for n in names) + " |" in table
    assert replace_block(f"a\n{START}\nold\n{END}\nb", "new\n") == f"a\n{START}\nnew\n{END}\nb"
    copy = tmp_path / "README.md"
    copy.write_text(f"intro\n{START}\nstale\n{END}\nrest\n")
    result = subprocess.run([sys.executable, "-m", "gensearcher", "config", "--markdown", "--update", str(copy)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
                            env={"PATH": "", "HOME": str(tmp_path), **PYTHONPATH})
    assert result.returncode == 0, result.stderr
    assert copy.read_text() == f"intro\n{START}\n{table}{END}\nrest\n"


@pytest.mark.parametrize("overrides, name", [
    ({"agent": {"concurrency": 0}}, "GENSEARCHER_AGENT_CONCURRENCY"),
    ({"generator": {"concurrency": 0}}, "GENSEARCHER_GENERATOR_CONCURRENCY"),
    ({"judge": {"concurrency": -1}}, "GENSEARCHER_JUDGE_CONCURRENCY"),
    ({"reward": {"min_input_images": 5}}, "min_input_images is larger than max_input_images"),
])
def test_overrides_are_validated_like_every_other_source(overrides, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(overrides)


def test_a_policy_client_without_its_endpoint_is_a_config_error():
    from gensearcher.config import PolicyConfig
    from gensearcher.policy.openai_chat import OpenAIChatPolicy

    with pytest.raises(ConfigError, match="base_url and model"):
        OpenAIChatPolicy(PolicyConfig(model="m"))
