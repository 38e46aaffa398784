"""Config loading and the CLI: env values, unsupported keys, one-line start-up errors."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from asgi_llm import ConfigError, load_config, parse_config
from asgi_llm.upstream.router import Router
from tests.servers import free_socket

LITELLM_CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:9/v1
      api_key: os.environ/TEST_UPSTREAM_KEY
      timeout: 30
      stream_timeout: 5
      max_retries: 1
      region_name: eu-west-1
  - model_name: fake
    litellm_params:
      model: mock/fake
      mock_response: hi
litellm_settings:
  request_timeout: 120
  num_retries: 2
  drop_params: true
general_settings:
  master_key: os.environ/TEST_MASTER
  max_request_size_mb: 4
  database_url: postgres://x
"""


def test_litellm_config_loads_with_env_and_lists_unsupported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    monkeypatch.setenv("TEST_MASTER", "sk-master")
    path = tmp_path / "config.yaml"
    path.write_text(LITELLM_CONFIG)
    config, unsupported = load_config(path)
    assert unsupported == ["model_list[0].litellm_params.region_name", "litellm_settings.drop_params",
                           "general_settings.database_url"]
    assert config.general_settings.master_key == "sk-master"
    gpt = Router(config).pick("gpt-4o")
    assert (gpt.api_key, gpt.model, gpt.timeout, gpt.stream_timeout, gpt.retries) == (
        "sk-from-env", "gpt-4o", 30.0, 5.0, 1)
    fake = Router(config).pick("fake")
    assert (fake.provider, fake.timeout, fake.retries) == ("mock", 120.0, 2)
    assert "sk-from-env" not in repr(gpt)


MOCK = {"model_list": [{"model_name": "x", "litellm_params": {"model": "mock/x"}}]}


def test_litellm_keys_we_do_not_support_only_warn(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_list:\n  - model_name: x\n"
                    "    litellm_params: {model: mock/x, region_name: eu, drop_params: true}\n"
                    "general_settings: {database_url: postgres://x, alerting: [slack]}\n"
                    "litellm_settings: {set_verbose: true, anything_litellm_has: 1}\n"
                    "router_settings: {enable_tag_filtering: true}\nenvironment_variables: {A: b}\n")
    _, unsupported = load_config(path)
    assert sorted(unsupported) == sorted([
                           "model_list[0].litellm_params.region_name", "model_list[0].litellm_params.drop_params",
                           "litellm_settings.set_verbose", "litellm_settings.anything_litellm_has",
                           "general_settings.database_url", "general_settings.alerting",
                           "router_settings.enable_tag_filtering", "environment_variables"])


@pytest.mark.parametrize(("config", "says"), [
    ({"model_list": [{"model_name": "x", "litellm_params": {"model": "bedrock/claude"}}]},
     "`model_list[0].litellm_params.model`: unknown provider"),
    ({"model_list": [{"litellm_params": {"model": "mock/x"}}]}, "`model_list[0]`: Object missing required field"),
    ({"model_list": [{"model_name": "x", "litellm_params": {"model": "mock/x", "timeout": "soon"}}]},
     "`model_list[0].litellm_params.timeout`: Expected `float | null`, got `str`"),
    ({"model_list": [{"model_name": "x", "litellm_params": {"model": "mock/x", "api_key": "os.environ/NOPE_X"}}]},
     "`model_list[0].litellm_params.api_key`: environment variable NOPE_X is not set"),
    ({"model_list": []}, "`model_list`: no models configured"),
    ({"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/x", "api_base": "file:///etc"}}]},
     "must be an http(s) URL"),
    ({**MOCK, "general_settings": {"master_kye": "sk-x"}},
     "general_settings.master_kye: unknown key; did you mean master_key?"),
    ({**MOCK, "router_settings": {"fallback": []}}, "router_settings.fallback: unknown key; did you mean fallbacks?"),
    ({**MOCK, "modle_list": []}, "modle_list: unknown key; did you mean model_list?"),
    ({**MOCK, "general_settings": {"upstream": {"max_conections": 5}}},
     "general_settings.upstream.max_conections: unknown key; did you mean max_connections?"),
    ({**MOCK, "general_settings": {"max_request_size_mb": -1}}, "`general_settings.max_request_size_mb`: Expected"),
    ({**MOCK, "litellm_settings": {"num_retries": -1}}, "`litellm_settings.num_retries`: Expected `int` >= 0"),
    ({"model_list": [{"model_name": "x", "litellm_params": {"model": "mock/x", "max_retries": -2}}]},
     "`model_list[0].litellm_params.max_retries`: Expected"),
    ({**MOCK, "general_settings": {"request_body_timeout": 0}}, "`general_settings.request_body_timeout`"),
    ({**MOCK, "general_settings": {"max_messages": 0}}, "`general_settings.max_messages`"),
    ({**MOCK, "prompts": {"path": "/nonexistent/prompts"}}, "`prompts.path`: /nonexistent/prompts does not exist"),
])
def test_bad_configs_name_the_key(config: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert says in str(info.value) and "\n" not in str(info.value)


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "asgi_llm", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def test_cli_bad_config_is_one_line_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model_list:\n  - model_name: x\n    litellm_params:\n      model: nowhere/x\n")
    proc = _cli("--config", str(path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert err.startswith("asgi-llm: config error: `model_list[0].litellm_params.model`")
    path.write_text("model_list: [\n")
    proc = _cli("--config", str(path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "not valid YAML" in err and err.strip().count("\n") == 0


@pytest.mark.parametrize(("extra", "says"), [
    ("general_settings:\n  master_kye: sk-x\n", "general_settings.master_kye: unknown key; did you mean master_key?"),
    ("prompts: missing-folder\n", "`prompts.path`: "),
    ("prompts: prompts\n", "`prompts.path`: prompt file "),
])
def test_cli_refuses_configs_that_cannot_run(tmp_path: Path, extra: str, says: str) -> None:
    """A typo in a security key would start an open gateway; a broken prompt file would 404 every prompt."""
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "broken.yaml").write_text("id: p\nversions: [{template: 1, variables: 7}]\n")
    path = tmp_path / "c.yaml"
    path.write_text("model_list:\n  - model_name: x\n    litellm_params: {model: mock/x}\n" + extra)
    proc = _cli("--config", str(path))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().count("\n") == 0 and err.startswith(f"asgi-llm: config error: {says}"), err


def test_cli_serves_a_config_and_warns_once(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n"
                    "      region_name: eu\nrouter_settings:\n  enable_tag_filtering: true\n")
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    proc = _cli("--config", str(path), "--port", str(port), "--log-level", "warning")
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = httpx.post(f"http://127.0.0.1:{port}/chat/completions", timeout=5,
                                  json={"model": "m", "messages": [{"role": "user", "content": "yo"}]})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, "gateway did not start"
                time.sleep(0.1)
        assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"].endswith("You said: yo")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    warnings = [line for line in err.splitlines() if "not supported" in line]
    assert len(warnings) == 1
    assert "model_list[0].litellm_params.region_name" in warnings[0] and "router_settings" in warnings[0]


MODELS = {"model_list": [{"model_name": "m", "litellm_params": {"model": "mock/m"}}]}


def test_where_redis_is_comes_from_litellm_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_llm.config.redis import cache_in_redis, redis_target

    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert redis_target(parse_config({**MODELS, "litellm_settings": {"cache": True}})) is None  # local
    monkeypatch.setenv("REDIS_PASSWORD", "pw")
    monkeypatch.setenv("RH", "cache.internal")
    from_params = parse_config({**MODELS, "litellm_settings": {"cache": True, "cache_params": {
        "type": "redis", "host": "os.environ/RH", "port": "6380", "namespace": "team-a"}}})
    target = redis_target(from_params)
    assert target is not None and (target.host, target.port, target.password) == ("cache.internal", 6380, None)
    assert "pw" not in repr(target) and cache_in_redis(from_params.litellm_settings.cache_params, target)
    router = parse_config({**MODELS, "router_settings": {"redis_host": "r.internal", "redis_port": 7000,
                                                         "redis_password": "secret"}})
    target = redis_target(router)
    assert target is not None and (target.host, target.port) == ("r.internal", 7000) and "secret" not in repr(target)
    monkeypatch.setenv("REDIS_HOST", "env.internal")
    monkeypatch.setenv("REDIS_PORT", "6390")
    target = redis_target(parse_config({**MODELS, "litellm_settings": {"cache": True}}))
    assert target is not None and (target.host, target.port, target.password) == ("env.internal", 6390, "pw")
    local = parse_config({**MODELS, "litellm_settings": {"cache": True, "cache_params": {"type": "local"}}})
    assert not cache_in_redis(local.litellm_settings.cache_params, redis_target(local))  # limits on Redis only


def test_redis_cache_with_no_redis_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from asgi_llm.gateway import Gateway

    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    config = parse_config({**MODELS, "litellm_settings": {"cache": True, "cache_params": {"type": "redis"}}})
    with pytest.raises(ConfigError, match=r"cache_params\.host"):
        Gateway(config)


@pytest.mark.parametrize(("config", "says"), [
    ({"keys": [{"key_hash": "0" * 64, "rpm_limit": 0}]}, "keys[0].rpm_limit"),
    ({"teams": [{"team_id": "t", "tpm_limit": -1}]}, "teams[0].tpm_limit"),
    ({"teams": [{"team_id": "t", "rpm_limt": 5}]}, "did you mean rpm_limit"),
    ({"general_settings": {"rate_limit_fail": "maybe"}}, "general_settings.rate_limit_fail"),
    ({"litellm_settings": {"cache_params": {"scope": "everyone"}}}, "litellm_settings.cache_params.scope"),
])
def test_bad_limits_and_cache_settings_name_the_key(config: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**MODELS, **config})
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_cache_params_litellm_keys_we_ignore_are_listed(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("model_list:\n  - model_name: x\n    litellm_params: {model: mock/x, rpm: 10}\n"
                    "litellm_settings:\n  cache: true\n  cache_params: {type: local, s3_bucket_name: b}\n")
    config, unsupported = load_config(path)
    assert unsupported == ["litellm_settings.cache_params.s3_bucket_name"]
    assert config.model_list[0].litellm_params.rpm == 10
