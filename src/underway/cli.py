"""The ``underway`` command line."""

from __future__ import annotations

import asyncio
import logging
import runpy
import sys
from pathlib import Path

import click

from underway import runner

__all__ = ["main"]


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="underway")
def main() -> None:
    """underway: background work for Python."""


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("script", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("script_args", nargs=-1, type=click.UNPROCESSED)
@click.option(
    "--grace",
    default=runner.DEFAULT_GRACE,
    show_default=True,
    help="Seconds loops get to finish their iteration after Ctrl-C or SIGTERM.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def run(script: Path, script_args: tuple[str, ...], grace: float, verbose: bool) -> None:
    """Run SCRIPT, then every loop it started, until they have all ended.

    The script is run as __main__ with SCRIPT_ARGS in sys.argv. Ctrl-C or SIGTERM stops
    the loops gracefully. The exit status is 1 if a loop ended with an unhandled error.
    """
    _configure_logging(verbose)
    sys.argv = [str(script), *script_args]
    sys.path.insert(0, str(script.resolve().parent))
    runpy.run_path(str(script), run_name="__main__")
    loops = asyncio.run(runner.serve(grace=grace))
    failed = [lp.name for lp in loops if lp.failed()]
    if failed:
        raise click.ClickException(f"loop(s) ended with an unhandled error: {', '.join(failed)}")


@main.command()
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def demo(verbose: bool) -> None:
    """Run a short demonstration of underway's periodic loops."""
    from underway import demo as demo_module

    _configure_logging(verbose)
    demo_module.main()
