"""Importable app modules and helpers for the durable-queue tests.

Worker subprocesses import the app modules here (``tests.queue_apps.basic:uw``); each
reads its store's URL from ``UNDERWAY_URL`` and records what its tasks do in the file named
by ``UNDERWAY_TEST_LOG``, so that a test can count executions across processes.
"""
