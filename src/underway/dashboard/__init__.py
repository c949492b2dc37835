"""The underway dashboard: see and steer the queue from a browser, and scrape its metrics.

Run it on its own with ``underway dashboard module:uw`` or mount it in your Starlette or
FastAPI app::

    from underway.dashboard import mount

    dashboard = mount(app, uw, path="/underway")  # dashboard.token is the access token

It needs the ``dashboard`` extra: ``pip install 'underway[dashboard]'``. See
``docs/dashboard.md`` for the security model and the metrics.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from underway.app import Underway

from .app import Dashboard, create_dashboard
from .security import generate_token

__all__ = ["Dashboard", "create_dashboard", "generate_token", "mount"]


def mount(app: Starlette, uw: Underway, path: str = "/underway", **options: Any) -> Dashboard:
    """Serve the dashboard inside a Starlette (or FastAPI) app at ``path``.

    Args:
        app: The app to mount it in.
        uw: The app whose queue the dashboard shows.
        path: Where: ``"/underway"`` serves it at ``/underway/``.
        **options: The keyword arguments of :func:`create_dashboard` (``token``,
            ``read_only``, ``insecure_no_auth``, ...).

    Returns:
        The mounted dashboard; its ``token`` is the access token (generated when not
        given).

    Raises:
        ValueError: ``path`` does not start with ``/`` or is the root.
    """
    if not path.startswith("/") or path.rstrip("/") == "":
        raise ValueError(
            f"path must be a sub-path such as '/underway', not {path!r}; to serve the "
            "dashboard at the root, run create_dashboard(uw) as the app itself."
        )
    dashboard = create_dashboard(uw, **options)
    app.mount(path.rstrip("/"), dashboard, name="underway-dashboard")
    return dashboard
