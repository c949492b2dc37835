"""A drop-in for ``discord.ext.tasks``: change the import, keep the code.

Example:
    >>> from underway import tasks
    >>> @tasks.loop(seconds=5.0, count=10)
    ... async def printer() -> None:
    ...     print("tick")
"""

from __future__ import annotations

from underway.loop import Loop, loop

__all__ = ["Loop", "loop"]
