"""``underway.run()``: run every started loop until they have all ended.

Loops started at the top of a script (``heartbeat.start()``) wait for an event loop;
``run()`` provides one, starts them, and returns when they have all ended. Ctrl-C or
SIGTERM stops them gracefully: a running iteration finishes, ``after_loop`` runs, and
``run()`` returns normally. A second signal, or the grace period running out, cancels
them at once.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from underway.errors import LoopError
from underway.loop import Loop, registry

__all__ = ["run", "serve"]

logger = logging.getLogger("underway.run")

DEFAULT_GRACE = 30.0


def run(*, grace: float = DEFAULT_GRACE) -> None:
    """Run the event loop with every started loop until they have all ended.

    Args:
        grace: Seconds that loops get, after Ctrl-C or SIGTERM, to finish their current
            iteration before they are cancelled.

    Raises:
        LoopError: called from inside a running event loop (use ``await serve()`` there).
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise LoopError(
            "underway.run() starts its own event loop and cannot be called inside one; "
            "in async code, use 'await underway.runner.serve()' instead."
        )
    asyncio.run(serve(grace=grace))


async def serve(*, grace: float = DEFAULT_GRACE) -> list[Loop[Any]]:
    """Start deferred loops and wait until every running loop has ended.

    Returns:
        The loops that ran, so that a caller can check ``failed()`` on each.
    """
    for started, (args, kwargs) in list(registry.deferred.items()):
        registry.deferred.pop(started, None)
        started._launch(args, kwargs)
    ran: dict[Loop[Any], None] = {}
    running = _running()
    if not running:
        logger.warning(
            "underway.run(): no loop was started. Call .start() on each loop before run()."
        )
        return []
    with _SignalHandlers(grace):
        while running:
            ran.update(dict.fromkeys(running))
            tasks = {lp._task for lp in running if lp._task is not None}
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            running = _running()
    return list(ran)


def _running() -> list[Loop[Any]]:
    return [lp for lp in registry.started if lp.is_running()]


class _SignalHandlers:
    """SIGINT/SIGTERM: the first stops every loop gracefully, the second cancels them."""

    def __init__(self, grace: float) -> None:
        self._grace = grace
        self._signals = 0
        self._installed: list[signal.Signals] = []
        self._timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> _SignalHandlers:
        event_loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                event_loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a platform without loop signal handlers
            self._installed.append(sig)
        return self

    def __exit__(self, *exc_info: object) -> None:
        event_loop = asyncio.get_running_loop()
        for sig in self._installed:
            event_loop.remove_signal_handler(sig)
        if self._timer is not None:
            self._timer.cancel()

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        running = _running()
        if self._signals == 1:
            logger.warning(
                "Received %s: stopping %d loop(s) after their current iteration "
                "(up to %.0f s); send it again to stop at once.",
                sig.name,
                len(running),
                self._grace,
            )
            for lp in running:
                lp.stop()
            self._timer = asyncio.get_running_loop().call_later(self._grace, self._cancel_all)
        else:
            logger.warning("Received %s again: cancelling %d loop(s).", sig.name, len(running))
            self._cancel_all()

    def _cancel_all(self) -> None:
        for lp in _running():
            lp.cancel()
