"""How task arguments and results become the bytes a backend stores.

The default, :class:`JsonSerializer`, writes JSON with orjson. It carries what JSON
carries: ``None``, ``bool``, ``int`` (64-bit), ``float``, ``str``, lists and tuples (read
back as lists) and dicts with ``str`` keys. ``str``/``int`` subclasses (``StrEnum``,
``IntEnum``), plain enums and ``uuid.UUID`` are written as their JSON value and read back as
that value. Anything else (dates, dataclasses, sets, bytes, ``Decimal``, custom objects) is
refused at enqueue with a :class:`~underway.errors.SerializationError` that names the
argument and says what to pass instead, before anything is stored. A payload larger than
``max_payload_bytes`` is refused with :class:`~underway.errors.PayloadTooLargeError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import orjson

from underway.errors import DeserializationError, PayloadTooLargeError, SerializationError

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "JsonSerializer", "Serializer"]

#: The default size limit of one serialized payload: 1 MiB.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

# Dates and dataclasses would be written as strings and dicts and read back as such: the
# task would receive a different type from the one it was called with. Refuse them.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class Serializer(Protocol):
    """What the queue needs from a serializer."""

    def dumps_call(
        self,
        task_name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        param_names: Sequence[str] = (),
    ) -> bytes:
        """Serialize a call's arguments.

        Args:
            task_name: The task, for error messages.
            args: The positional arguments.
            kwargs: The keyword arguments.
            param_names: The function's positional parameter names, so that an error can
                name a positional argument as the function's author knows it.

        Raises:
            SerializationError: An argument cannot be serialized; the message names it.
            PayloadTooLargeError: The payload is over the size limit.
        """
        ...

    def loads_call(self, payload: bytes) -> tuple[list[Any], dict[str, Any]]:
        """Return the ``(args, kwargs)`` that :meth:`dumps_call` stored.

        Raises:
            DeserializationError: The payload is not one this serializer wrote.
        """
        ...

    def dumps_result(self, task_name: str, value: Any) -> bytes:
        """Serialize a task's return value.

        Raises:
            SerializationError: The value cannot be serialized.
            PayloadTooLargeError: The result is over the size limit.
        """
        ...

    def loads_result(self, data: bytes) -> Any:
        """Return the value that :meth:`dumps_result` stored.

        Raises:
            DeserializationError: The data is not one this serializer wrote.
        """
        ...


class JsonSerializer:
    """JSON through orjson, strict about types, with a payload size limit."""

    def __init__(self, *, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> None:
        """Create a serializer.

        Args:
            max_payload_bytes: The largest payload (arguments or result) it accepts.

        Raises:
            ValueError: ``max_payload_bytes`` is not positive.
        """
        if max_payload_bytes <= 0:
            raise ValueError("max_payload_bytes must be a positive number of bytes.")
        self.max_payload_bytes = max_payload_bytes

    def dumps_call(
        self,
        task_name: str,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        param_names: Sequence[str] = (),
    ) -> bytes:
        """Serialize a call's arguments as ``{"args": [...], "kwargs": {...}}``.

        See :meth:`Serializer.dumps_call`.
        """
        try:
            data = orjson.dumps({"args": args, "kwargs": kwargs}, option=_OPTIONS)
        except TypeError as exc:
            raise _explain_call(task_name, args, kwargs, param_names, exc) from exc
        self._check_size(data, f"the arguments of task {task_name!r}")
        return data

    def loads_call(self, payload: bytes) -> tuple[list[Any], dict[str, Any]]:
        """Return ``(args, kwargs)``; see :meth:`Serializer.loads_call`."""
        try:
            decoded = orjson.loads(payload)
        except (orjson.JSONDecodeError, TypeError) as exc:
            raise DeserializationError(f"the job's arguments are not valid JSON: {exc}") from exc
        if not (
            isinstance(decoded, dict)
            and isinstance(decoded.get("args"), list)
            and isinstance(decoded.get("kwargs"), dict)
        ):
            raise DeserializationError(
                'the job\'s arguments are JSON but not {"args": [...], "kwargs": {...}}.'
            )
        return decoded["args"], decoded["kwargs"]

    def dumps_result(self, task_name: str, value: Any) -> bytes:
        """Serialize a return value; see :meth:`Serializer.dumps_result`."""
        try:
            data = orjson.dumps(value, option=_OPTIONS)
        except TypeError as exc:
            path, culprit = _find_culprit(value, "result")
            raise SerializationError(
                f"the return value of task {task_name!r} cannot be stored as JSON: "
                f"{_describe(path, culprit, exc)}; {_hint(culprit, path)}."
            ) from exc
        self._check_size(data, f"the return value of task {task_name!r}")
        return data

    def loads_result(self, data: bytes) -> Any:
        """Return the stored value; see :meth:`Serializer.loads_result`."""
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise DeserializationError(f"the job's result is not valid JSON: {exc}") from exc

    def _check_size(self, data: bytes, what: str) -> None:
        if len(data) > self.max_payload_bytes:
            raise PayloadTooLargeError(
                f"{what} serialize to {len(data):,} bytes, over the limit of "
                f"{self.max_payload_bytes:,} bytes (max_payload_bytes); store large data "
                "elsewhere (a file or an object store) and pass its key or path instead."
            )


def _explain_call(
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    param_names: Sequence[str],
    exc: TypeError,
) -> SerializationError:
    named: list[tuple[str, Any]] = []
    for index, value in enumerate(args):
        name = param_names[index] if index < len(param_names) else f"#{index + 1} (positional)"
        named.append((name, value))
    named.extend(kwargs.items())
    for name, value in named:
        path, culprit = _find_culprit(value, str(name))
        if path is not None:
            return SerializationError(
                f"argument {name!r} of task {task_name!r} cannot be stored as JSON: "
                f"{_describe(path, culprit, exc)}; {_hint(culprit, path)}."
            )
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        return SerializationError(f"keyword argument names of task {task_name!r} must be str.")
    return SerializationError(f"the arguments of task {task_name!r} cannot be stored: {exc}")


def _find_culprit(value: Any, path: str) -> tuple[str | None, Any]:
    """Return the path to the first value JSON cannot carry, or ``(None, None)``."""
    if value is None or isinstance(value, (str, float, bool, uuid.UUID)):
        return None, None
    if isinstance(value, int):
        return (None, None) if _INT_MIN <= value <= _INT_MAX else (path, value)
    if isinstance(value, enum.Enum) and not dataclasses.is_dataclass(value):
        return _find_culprit(value.value, path)
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = _find_culprit(item, f"{path}[{index}]")
            if found[0] is not None:
                return found
        return None, None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} key {key!r}", key
            found = _find_culprit(item, f"{path}[{key!r}]")
            if found[0] is not None:
                return found
        return None, None
    return path, value


def _describe(path: str | None, culprit: Any, exc: TypeError) -> str:
    if path is None:
        return str(exc)
    kind = type(culprit)
    type_name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    if " key " in path:
        return f"{path} is a {type_name}, but JSON object keys are str"
    if isinstance(culprit, int) and not isinstance(culprit, bool):
        return f"{path} is an integer outside the 64-bit range"
    return f"{path} is a {type_name}"


def _hint(culprit: Any, path: str | None) -> str:
    ref = path or "it"
    if " key " in ref:
        return "use str keys in dicts, e.g. {str(k): v for k, v in d.items()}"
    if isinstance(culprit, (dt.datetime, dt.date, dt.time)):
        return f"pass {ref}.isoformat() and parse it in the task"
    if isinstance(culprit, dt.timedelta):
        return f"pass {ref}.total_seconds() instead"
    if dataclasses.is_dataclass(culprit):
        return f"pass dataclasses.asdict({ref}) and rebuild it in the task"
    if isinstance(culprit, (set, frozenset)):
        return f"pass list({ref}) instead"
    if isinstance(culprit, (bytes, bytearray, memoryview)):
        return "pass text (decode it, or base64-encode binary data) or a reference to a file"
    if isinstance(culprit, decimal.Decimal):
        return f"pass str({ref}) and convert it back in the task"
    if isinstance(culprit, int):
        return f"pass str({ref}) and convert it back in the task"
    return (
        "pass JSON types only (str, int, float, bool, None, list, dict with str keys), "
        "for example an id the task can load the object by"
    )
