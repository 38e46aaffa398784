"""Unit tests of the hook API pieces: DualCache, response views, callback loading."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asgi_llm import ConfigError, CustomLogger, DualCache
from asgi_llm.config.callbacks import load_callbacks
from asgi_llm.hooks.custom_logger import overrides
from asgi_llm.hooks.response import unwrap, wrap


def test_dual_cache_api_ttl_and_bound() -> None:
    cache = DualCache(max_size=3)
    cache.set_cache("a", 1)
    assert cache.get_cache("a") == 1 and cache.get_cache("missing") is None
    cache.set_cache("short", "x", ttl=0.05)
    time.sleep(0.06)
    assert cache.get_cache("short") is None
    for key in "bcd":
        cache.set_cache(key, key)
    assert len(cache) == 3 and cache.get_cache("a") is None  # oldest write evicted
    assert cache.batch_get_cache(["b", "zz", "d"]) == ["b", None, "d"]
    cache.delete_cache("b")
    assert cache.get_cache("b") is None

    async def run() -> None:
        assert await cache.async_increment_cache("n", 2) == 2
        assert await cache.async_increment_cache("n", 3, ttl=10) == 5
        await cache.async_set_cache("k", {"v": 1}, ttl=10)
        assert await cache.async_get_cache("k") == {"v": 1}
        assert await cache.async_batch_get_cache(["k", "n"]) == [{"v": 1}, 5]

    asyncio.run(run())
    cache.flush_cache()
    assert len(cache) == 0


def test_response_view_reads_and_writes_through() -> None:
    payload = {"choices": [{"message": {"role": "assistant", "content": "hi"}}], "usage": {"total_tokens": 3}}
    view = wrap(payload)
    assert view.choices[0].message.content == view["choices"][0]["message"]["content"] == "hi"
    view.choices[0].message.content = "changed"
    view["usage"]["total_tokens"] = 9
    view.extra = wrap({"a": [1]})
    assert payload["choices"][0]["message"]["content"] == "changed" and payload["usage"]["total_tokens"] == 9
    assert payload["extra"] == {"a": [1]} and view.nothing is None and len(view.choices) == 1
    with pytest.raises(KeyError):
        view["nothing"]
    assert unwrap(view) is payload

    class Dumps:
        def model_dump(self) -> dict[str, int]:
            return {"x": 1}

    assert unwrap(Dumps()) == {"x": 1}
    with pytest.raises(TypeError):
        unwrap(object())


def test_overrides_sees_inherited_hooks() -> None:
    class Base(CustomLogger):
        async def async_post_call_success_hook(self, data, user_api_key_dict, response):  # type: ignore[no-untyped-def]
            return None

    class Sub(Base):
        pass

    assert overrides(Sub(), "async_post_call_success_hook") and not overrides(Sub(), "async_pre_call_hook")


def _write(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)


def test_callbacks_resolve_beside_the_config_then_on_sys_path(tmp_path: Path) -> None:
    _write(tmp_path, "my_hooks.py", "from asgi_llm import CustomLogger\nclass H(CustomLogger): pass\nh = H()\n")
    (tmp_path / "pkg").mkdir()
    _write(tmp_path / "pkg", "inner.py", "from asgi_llm import CustomLogger\nhandler = CustomLogger()\n")
    config = str(tmp_path / "config.yaml")
    first, second, third = load_callbacks(["my_hooks.h", "pkg.inner.handler",
                                           "examples.custom_callbacks.proxy_handler_instance"], config)
    assert type(first).__name__ == "H" and type(second) is CustomLogger
    assert type(third).__name__ == "MyCustomHandler"
    assert load_callbacks("my_hooks.h", config)[0] is first  # loaded once


@pytest.mark.parametrize(("spec", "says"), [
    ("nowhere_at_all.handler", "`litellm_settings.callbacks`: cannot import 'nowhere_at_all'"),
    ("my_hooks.missing", "module 'my_hooks' has no attribute 'missing'"),
    ("my_hooks.not_a_logger", "my_hooks.not_a_logger is a dict, not a CustomLogger instance"),
    ("broken.h", "cannot import 'broken' (ZeroDivisionError"),
    ("nodots", "is not a module.instance path"),
])
def test_bad_callback_paths_stop_start_up(spec: str, says: str, tmp_path: Path) -> None:
    _write(tmp_path, "my_hooks.py", "not_a_logger = {}\n")
    _write(tmp_path, "broken.py", "x = 1 / 0\n")
    with pytest.raises(ConfigError) as info:
        load_callbacks(spec, str(tmp_path / "config.yaml"))
    assert says in str(info.value)


def test_cli_reports_a_bad_callback_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: mock/m}\n"
                      "litellm_settings:\n  callbacks: [missing_file.handler]\n")
    proc = subprocess.run([sys.executable, "-m", "asgi_llm", "--config", str(config)], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("asgi-llm: config error: `litellm_settings.callbacks[0]`: cannot import "
                                   "'missing_file' (ModuleNotFoundError: No module named 'missing_file')")


def test_cli_hash_key() -> None:  # expected: `printf sk-1 | sha256sum`
    proc = subprocess.run([sys.executable, "-m", "asgi_llm", "--hash-key", "sk-1"], capture_output=True, text=True,
                          timeout=30)
    assert proc.stdout.strip() == "0f2c10bf3d128c719c6bfa4ecbae94b7fceebaea6e4438fef38a90e5acc326f3"
