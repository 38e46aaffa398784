"""Response objects for hooks: attribute and key access over the served JSON.

``wrap(payload)`` gives a view where ``response.choices[0].message.content`` and
``response["choices"][0]["message"]["content"]`` both work, as on LiteLLM's
``ModelResponse``. The view writes through to the underlying dict, so what a hook
changes is what the client gets. A missing attribute reads as ``None`` (as an unset
optional field of the OpenAI types does); a missing key raises ``KeyError``.

Views behave like LiteLLM's pydantic objects where hooks rely on it: ``copy.copy``,
``copy.deepcopy`` and ``pickle`` give independent views, ``==`` compares the data (a
plain dict too), ``dict(view)``, ``model_dump()``/``json()``/``dict()`` give a new
plain dict, ``model_dump_json()`` a JSON string. A payload with a known ``object``
(``chat.completion``...) is wrapped as its LiteLLM-named type (``response_types``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import msgspec

_BY_OBJECT: dict[str, type[Obj]] = {}  # "chat.completion" -> ModelResponse... (filled by response_types)


def wrap(value: Any, kind: type[Obj] | None = None) -> Any:
    """A view of ``value`` (a dict or list); ``kind``: the view type, else the one its ``object`` names."""
    if isinstance(value, dict):
        if kind is None:
            name = value.get("object")
            kind = _BY_OBJECT.get(name, Obj) if type(name) is str else Obj
        return kind(value)
    if isinstance(value, list):
        return ObjList(value, kind)
    return value


def unwrap(value: Any) -> Any:
    """The plain JSON data behind a view, a dict, or an object with ``model_dump``/``dict``."""
    if isinstance(value, Obj | ObjList):
        return value._data
    if isinstance(value, dict | list | str | int | float | bool) or value is None:
        return value
    for method in ("model_dump", "dict", "to_dict"):
        dump = getattr(value, method, None)
        if callable(dump):
            return dump()
    raise TypeError(f"a hook returned a {type(value).__name__}, which is not a response object or dict")


def _plain(value: Any) -> Any:
    """``value`` with every view in it (a hook's constructor arguments) replaced by its data."""
    value = unwrap(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class Obj:
    """A dict seen as an object as well; see the module docstring.

    ``Obj(data)`` is a view of ``data`` (changes write through); a subclass called with
    keyword fields (``Message(content="hi")``) builds new data from its defaults.
    """

    __slots__ = ("_data",)
    _data: dict[str, Any]
    fields: ClassVar[dict[str, type[Obj]]] = {}  # child views by field: dicts, or lists of them

    def __init__(self, data: dict[str, Any] | None = None, /, **values: Any) -> None:
        if data is None or values:
            data = {**self.defaults(), **_plain(data or {}), **_plain(values)}
        object.__setattr__(self, "_data", data)

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """The data of a view built without arguments (a subclass's LiteLLM defaults)."""
        return {}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return wrap(self._data.get(name), self._child(name))

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = unwrap(value)

    def __getitem__(self, key: str) -> Any:
        return wrap(self._data[key], self._child(key))

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = unwrap(value)

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, Obj) else other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dict it shows

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._data!r})"

    def __copy__(self) -> Obj:
        return self._kind()(copy.copy(self._data))

    def __deepcopy__(self, memo: dict[int, Any]) -> Obj:
        return self._kind()(copy.deepcopy(self._data, memo))

    def __reduce__(self) -> tuple[Any, ...]:
        return self._kind(), (self._data,)

    def _kind(self) -> type[Obj]:
        return type(self)

    def _child(self, name: str) -> type[Obj] | None:
        return self._kind().fields.get(name)

    def get(self, key: str, default: Any = None) -> Any:
        return wrap(self._data.get(key, default), self._child(key))

    def keys(self) -> Any:
        return self._data.keys()

    def values(self) -> Iterator[Any]:
        return (wrap(v, self._child(k)) for k, v in self._data.items())

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((k, wrap(v, self._child(k))) for k, v in self._data.items())

    def model_dump(self, **_: Any) -> dict[str, Any]:
        """A new plain dict of the data (changing it does not change the view), as pydantic's does."""
        return copy.deepcopy(self._data)

    dict = to_dict = json = model_dump  # LiteLLM's ModelResponse.json() returns the dict too

    def model_dump_json(self, **_: Any) -> str:
        return msgspec.json.encode(self._data).decode()


class LazyObj(Obj):
    """An ``Obj`` whose data is made on first use (``make()``): for responses that cost a parse
    or an assembly which a callback may never look at."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        object.__setattr__(self, "_make", make)

    def __getattr__(self, name: str) -> Any:
        if name == "_data":
            data = self._make()
            object.__setattr__(self, "_data", data if isinstance(data, dict) else {})
            return self._data
        return super().__getattr__(name)

    def _kind(self) -> type[Obj]:  # the type its data names: for children, copies and isinstance
        name = self._data.get("object")
        return _BY_OBJECT.get(name, Obj) if type(name) is str else Obj

    @property  # type: ignore[misc]
    def __class__(self) -> type[Obj]:  # type: ignore[override]  # isinstance(response, ModelResponse) holds
        return self._kind()

    def __repr__(self) -> str:
        return f"Obj({self._data!r})"


class ObjList:
    """A list whose items are views too (of ``kind`` when given)."""

    __slots__ = ("_data", "_kind")
    _data: list[Any]

    def __init__(self, data: list[Any], kind: type[Obj] | None = None) -> None:
        self._data = data
        self._kind = kind

    def __getitem__(self, index: int) -> Any:
        return wrap(self._data[index], self._kind)

    def __setitem__(self, index: int, value: Any) -> None:
        self._data[index] = unwrap(value)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        kind = self._kind
        return (wrap(v, kind) for v in self._data)

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, ObjList) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ObjList({self._data!r})"

    def __copy__(self) -> ObjList:
        return ObjList(copy.copy(self._data), self._kind)

    def __deepcopy__(self, memo: dict[int, Any]) -> ObjList:
        return ObjList(copy.deepcopy(self._data, memo), self._kind)

    def __reduce__(self) -> tuple[Any, ...]:
        return ObjList, (self._data, self._kind)

    def append(self, value: Any) -> None:
        self._data.append(unwrap(value))
