"""underway: background work for Python.

Periodic loops (:func:`loop`), run standalone with :func:`run`; durable jobs and schedules
(:class:`Underway`, ``@uw.task``, ``@uw.loop``, ``@uw.cron``) run by workers.
"""

from __future__ import annotations

from underway.app import Underway
from underway.background import BackgroundTasks
from underway.clock import Clock, SystemClock, VirtualClock
from underway.context import JobContext, current_job
from underway.errors import LoopError, UnderwayError
from underway.handle import Job, JobCancelled, JobFailed
from underway.job import JobStatus
from underway.loop import Loop, loop
from underway.runner import run
from underway.task import Task
from underway.worker import Worker

__all__ = [
    "BackgroundTasks",
    "Clock",
    "Job",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobStatus",
    "Loop",
    "LoopError",
    "SystemClock",
    "Task",
    "Underway",
    "UnderwayError",
    "VirtualClock",
    "Worker",
    "current_job",
    "loop",
    "run",
]
