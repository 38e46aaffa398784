"""The built-in prompt store: versioned, labelled prompt templates in YAML files.

A file holds one prompt (``id``, ``versions``) or many (``prompts: [...]``). A
version has ``labels`` (``production``, ``staging``...), a ``template`` (text, sent
as one user message) or chat ``messages``, an optional ``model`` and ``params``,
and declared ``variables`` with a ``type`` (string, number, boolean, enum with
``values``) and an optional ``default``. Templates use Langfuse's ``{{ name }}``.

Rendering is strict: a missing required variable, an undeclared one or a value of
the wrong type gets a 400 naming each offender; values are inserted as text in
one pass, never evaluated. Resolution: ``prompt_version`` > ``prompt_label`` > the
``production`` label > the newest version; an unknown id, version or label gets
404. Files are re-read when they change (checked at most every
``check_interval`` seconds); a broken file keeps its last good prompts and logs why.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import msgspec
import yaml

from asgi_llm.hooks.prompt_manager import CustomPromptManagement
from asgi_llm.prompts.template import Compiled, parse_file
from asgi_llm.request.errors import GatewayError

log = logging.getLogger("asgi_llm.prompts")
_clock = time.perf_counter  # the clock of RequestContext.start, so a request can lend its reading


class PromptStore(CustomPromptManagement):
    """The store as a prompt manager; see the module docstring."""

    def __init__(self, path: str | Path, check_interval: float = 1.0) -> None:
        self.path = Path(path)
        self.check_interval = check_interval
        self._files: dict[Path, tuple[int, int]] = {}  # path -> (mtime_ns, size) last read
        self._by_file: dict[Path, dict[str, list[Compiled]]] = {}
        self.prompts: dict[str, list[Compiled]] = {}
        self.defaults: dict[str, Compiled] = {}  # per id: the `production` version, else the newest
        self.broken: dict[Path, str] = {}  # files that failed their last read, and why (start-up refuses them)
        self._checked = 0.0
        self._started = False
        self.refresh(force=True)
        self._started = True

    @property
    def integration_name(self) -> str:
        return "prompt-store"

    def should_run_prompt_management(self, prompt_id: str | None, dynamic_callback_params: dict[str, Any]) -> bool:
        self.refresh()
        return prompt_id in self.prompts  # other ids are left to the custom managers

    def refresh(self, force: bool = False) -> None:
        now = _clock()
        if not force and now - self._checked < self.check_interval:
            return
        self._checked = now
        files = sorted(self.path.glob("*.y*ml")) if self.path.is_dir() else [self.path]
        seen = {f: (st.st_mtime_ns, st.st_size) for f in files if f.suffix in (".yaml", ".yml")
                for st in [f.stat()]}
        if seen == self._files:
            return
        for file in set(self._by_file) - set(seen):
            del self._by_file[file]
        for file, stamp in seen.items():
            if self._files.get(file) != stamp:
                self._load(file)
        self._files = seen
        merged: dict[str, list[Compiled]] = {}
        for file in sorted(self._by_file):
            for prompt_id, versions in self._by_file[file].items():
                if prompt_id in merged:
                    log.error("prompt %r in %s is already defined in another file; ignored", prompt_id, file)
                else:
                    merged[prompt_id] = versions
        self.prompts = merged
        self.defaults = {k: ([v for v in vs if "production" in v.labels] or vs)[-1] for k, vs in merged.items() if vs}

    def _load(self, file: Path) -> None:
        try:
            prompts = parse_file(yaml.safe_load(file.read_text(encoding="utf-8")))
            loaded = {p.id: sorted((Compiled(p.id, v) for v in p.versions), key=lambda c: c.version)
                      for p in prompts}
        except (OSError, yaml.YAMLError, msgspec.ValidationError, ValueError) as exc:
            kept = "keeping its last good version" if file in self._by_file else "no prompts loaded from it"
            if self._started:  # at start-up whoever made the store reports `broken` (the gateway refuses it)
                log.error("prompt file %s is broken (%s); %s", file, exc, kept)
            self.broken[file] = " ".join(str(exc).split())
            return
        self.broken.pop(file, None)
        self._by_file[file] = loaded

    def lookup(self, prompt_id: str, version: Any = None, label: str | None = None,
               now: float | None = None) -> Compiled | None:
        """The version to render, or None when the store holds no such id (so other managers may);
        404 for an unknown version or label of an id it holds. One freshness check, against ``now``
        (a ``time.perf_counter()`` reading, such as the request's start) when given."""
        if (_clock() if now is None else now) - self._checked >= self.check_interval:
            self.refresh()
        if version is None and label is None:
            return self.defaults.get(prompt_id)
        versions = self.prompts.get(prompt_id)
        if not versions:
            return None
        if version is not None:
            found = [v for v in versions if str(v.version) == str(version)]
            what, param = f"version {version!r}", "prompt_version"
        else:
            found = [v for v in versions if label in v.labels]
            what, param = f"label {label!r}", "prompt_label"
        if not found:
            raise GatewayError(404, f"Prompt {prompt_id!r} has no {what}.", param=param, code="prompt_not_found")
        return found[-1]

    def resolve(self, prompt_id: str, version: Any = None, label: str | None = None) -> Compiled:
        """As ``lookup``, with 404 naming an id the store does not hold."""
        found = self.lookup(prompt_id, version, label)
        if found is None:
            raise GatewayError(404, f"Prompt {prompt_id!r} is not in the prompt store.", param="prompt_id",
                               code="prompt_not_found")
        return found

    async def async_get_chat_completion_prompt(
            self, model: str, messages: list[Any], non_default_params: dict[str, Any], prompt_id: str | None,
            prompt_variables: dict[str, Any] | None, dynamic_callback_params: dict[str, Any],
    ) -> tuple[str, list[Any], dict[str, Any]]:
        if prompt_id is None:
            raise GatewayError(400, "The prompt store needs a `prompt_id`.", param="prompt_id",
                               code="missing_prompt_id")
        chosen = self.resolve(prompt_id, dynamic_callback_params.get("prompt_version"),
                              dynamic_callback_params.get("prompt_label"))
        return chosen.model or model, chosen.render(prompt_variables or {}, messages), (
            {**chosen.params, **non_default_params} if chosen.params else non_default_params)
