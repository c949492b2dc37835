"""The exceptions underway raises.

Every error that underway itself raises derives from one base::

    UnderwayError
    └── LoopError            a periodic loop was used in a way its state does not allow

Misuse of an API (a wrong type, a negative interval, an unknown time zone) raises the
built-in ``TypeError`` or ``ValueError`` with a sentence that says what to pass instead;
those are not wrapped, so that code written for ``discord.ext.tasks`` keeps catching what
it caught before.
"""

from __future__ import annotations

__all__ = ["LoopError", "UnderwayError"]


class UnderwayError(Exception):
    """Base class of every exception raised by underway."""


class LoopError(UnderwayError, RuntimeError):
    """A loop was asked to do something its current state does not allow.

    It is also a ``RuntimeError``, which ``discord.ext.tasks`` raises in the same places.
    """
