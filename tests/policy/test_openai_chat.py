"""Details of the OpenAI-compatible client that the loop tests do not reach."""

from gensearcher.policy.openai_chat import _proxy_for


def test_proxy_settings_are_honoured_once(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert _proxy_for("https://api.openai.com/v1/chat/completions") == "http://proxy.internal:3128"
    assert _proxy_for("http://127.0.0.1:8000/v1/chat/completions") is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert _proxy_for("https://api.openai.com/v1/chat/completions") is None
