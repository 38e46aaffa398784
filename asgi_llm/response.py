"""Response objects for hooks: attribute and key access over the served JSON.

``wrap(payload)`` gives a view where ``response.choices[0].message.content`` and
``response["choices"][0]["message"]["content"]`` both work, as on LiteLLM's
``ModelResponse``. The view writes through to the underlying dict, so what a hook
changes is what the client gets. A missing attribute reads as ``None`` (as an unset
optional field of the OpenAI types does); a missing key raises ``KeyError``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj(value)
    if isinstance(value, list):
        return ObjList(value)
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


class Obj:
    """A dict seen as an object as well; see the module docstring."""

    __slots__ = ("_data",)
    _data: dict[str, Any]

    def __init__(self, data: dict[str, Any]) -> None:
        object.__setattr__(self, "_data", data)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return wrap(self._data.get(name))

    def __setattr__(self, name: str, value: Any) -> None:
        self._data[name] = unwrap(value)

    def __getitem__(self, key: str) -> Any:
        return wrap(self._data[key])

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

    def __repr__(self) -> str:
        return f"Obj({self._data!r})"

    def get(self, key: str, default: Any = None) -> Any:
        return wrap(self._data.get(key, default))

    def keys(self) -> Any:
        return self._data.keys()

    def items(self) -> Iterator[tuple[str, Any]]:
        return ((k, wrap(v)) for k, v in self._data.items())

    def model_dump(self) -> dict[str, Any]:
        return self._data

    dict = to_dict = json = model_dump


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

    def __repr__(self) -> str:
        return f"Obj({self._data!r})"


class ObjList:
    """A list whose items are views too."""

    __slots__ = ("_data",)
    _data: list[Any]

    def __init__(self, data: list[Any]) -> None:
        self._data = data

    def __getitem__(self, index: int) -> Any:
        return wrap(self._data[index])

    def __setitem__(self, index: int, value: Any) -> None:
        self._data[index] = unwrap(value)

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[Any]:
        return (wrap(v) for v in self._data)

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, ObjList) else other)

    def __repr__(self) -> str:
        return f"ObjList({self._data!r})"

    def append(self, value: Any) -> None:
        self._data.append(unwrap(value))
