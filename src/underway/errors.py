"""The exceptions underway raises.

Every error that underway itself raises derives from one base::

    UnderwayError
    ├── LoopError             a periodic loop was used in a way its state does not allow
    ├── SerializationError    a task's arguments or result cannot be stored (also TypeError)
    ├── PayloadTooLargeError  a serialized payload is over the size limit (also ValueError)
    ├── DeserializationError  a stored payload cannot be decoded (also ValueError)
    └── BackendError          the job store failed or refused an operation
        ├── BackendUnavailableError  a backend's driver is not installed (also ImportError)
        └── CorruptRecordError       a stored job record cannot be read back

Misuse of an API (a wrong type, a negative interval, an unknown time zone) raises the
built-in ``TypeError`` or ``ValueError`` with a sentence that says what to pass instead;
those are not wrapped, so that code written for ``discord.ext.tasks`` keeps catching what
it caught before.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CorruptRecordError",
    "DeserializationError",
    "LoopError",
    "PayloadTooLargeError",
    "SerializationError",
    "UnderwayError",
]


class UnderwayError(Exception):
    """Base class of every exception raised by underway."""


class LoopError(UnderwayError, RuntimeError):
    """A loop was asked to do something its current state does not allow.

    It is also a ``RuntimeError``, which ``discord.ext.tasks`` raises in the same places.
    """


class SerializationError(UnderwayError, TypeError):
    """A task's arguments or result cannot be serialized; nothing was stored.

    It is also a ``TypeError``: the value passed has a type the serializer cannot carry.
    """


class PayloadTooLargeError(UnderwayError, ValueError):
    """A serialized payload is larger than the configured limit; nothing was stored."""


class DeserializationError(UnderwayError, ValueError):
    """A stored payload cannot be decoded back into arguments or a result."""


class BackendError(UnderwayError):
    """The job store failed or refused an operation.

    Driver errors (``sqlite3.Error``, redis and PostgreSQL errors) are translated into this
    class in exactly one place per backend, with the driver's error as ``__cause__``.
    """


class BackendUnavailableError(BackendError, ImportError):
    """The driver a backend needs is not installed; the message names the pip extra."""


class CorruptRecordError(BackendError):
    """A stored job record cannot be read back (a malformed row or hash)."""
