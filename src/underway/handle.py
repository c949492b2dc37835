"""``Job``: a handle on one durable run of a task, as returned by ``enqueue``."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from underway.errors import UnderwayError
from underway.job import JobRecord, JobStatus

if TYPE_CHECKING:
    from underway.app import Underway

__all__ = ["Job", "JobCancelled", "JobFailed"]

R = TypeVar("R")


class JobFailed(UnderwayError):
    """The job ended ``failed`` or ``dead``; ``job`` holds its error and traceback."""

    def __init__(self, job: Job[Any]) -> None:
        reason = f" ({job.dead_reason})" if job.dead_reason else ""
        super().__init__(
            f"job {job.id} of task {job.task_name!r} {job.status}{reason}: {job.error}"
        )
        self.job = job


class JobCancelled(UnderwayError):
    """The job was cancelled before it could finish."""

    def __init__(self, job: Job[Any]) -> None:
        super().__init__(f"job {job.id} of task {job.task_name!r} was cancelled")
        self.job = job


class Job(Generic[R]):
    """One durable run of a task: its state when last read, and ways to act on it.

    The attributes are a snapshot; :meth:`refresh` reads them again.
    """

    def __init__(self, app: Underway, record: JobRecord) -> None:
        self._app = app
        self._record = record

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.task_name!r} {self.status}>"

    @property
    def record(self) -> JobRecord:
        """The stored record this snapshot was made from."""
        return self._record

    @property
    def id(self) -> str:
        """The job's id."""
        return self._record.id

    @property
    def task_name(self) -> str:
        """The name of the task it runs."""
        return self._record.task_name

    @property
    def queue(self) -> str:
        """The queue it waits in."""
        return self._record.queue

    @property
    def status(self) -> JobStatus:
        """queued, scheduled, running, succeeded, failed, cancelled or dead."""
        return self._record.status

    @property
    def attempts(self) -> int:
        """How many times a worker has started it."""
        return self._record.attempts

    @property
    def args(self) -> tuple[Any, ...]:
        """The positional arguments it was enqueued with."""
        return tuple(self._app.serializer.loads_call(self._record.payload)[0])

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments it was enqueued with."""
        return self._app.serializer.loads_call(self._record.payload)[1]

    @property
    def enqueued_at(self) -> datetime:
        """When it was stored (aware, UTC)."""
        return self._record.enqueued_at

    @property
    def scheduled_at(self) -> datetime:
        """When it may run (aware, UTC)."""
        return self._record.scheduled_at

    @property
    def started_at(self) -> datetime | None:
        """When a worker last started it."""
        return self._record.started_at

    @property
    def finished_at(self) -> datetime | None:
        """When it reached a final status."""
        return self._record.finished_at

    @property
    def error(self) -> str | None:
        """The last error, as ``"Type: message"``."""
        return self._record.error

    @property
    def traceback(self) -> str | None:
        """The traceback of the last error."""
        return self._record.traceback

    @property
    def dead_reason(self) -> str | None:
        """Why the job is dead, if it is."""
        return self._record.dead_reason

    @property
    def progress(self) -> float | None:
        """The last progress the task reported, from 0.0 to 1.0."""
        return self._record.progress

    @property
    def progress_message(self) -> str | None:
        """The message that came with the progress."""
        return self._record.progress_message

    def is_finished(self) -> bool:
        """Whether the status is final."""
        return self._record.is_finished

    async def refresh(self) -> Job[R]:
        """Read the job's state again from the store; return ``self``."""
        record = await self._app.backend_record(self.id)
        if record is not None:
            self._record = record
        return self

    async def result(self, timeout: float | None = None) -> R:
        """Wait until the job has finished and return what the task returned.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Raises:
            TimeoutError: the job had not finished within ``timeout``.
            JobFailed: the job ended ``failed`` or ``dead``.
            JobCancelled: the job was cancelled.
        """
        delay = 0.005
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._record.is_finished:
            if deadline is not None and loop.time() >= deadline:
                raise TimeoutError(
                    f"job {self.id} of task {self.task_name!r} is still {self.status} "
                    f"after {timeout} s"
                )
            pause = delay if deadline is None else min(delay, max(0.0, deadline - loop.time()))
            await asyncio.sleep(pause)
            delay = min(delay * 1.5, 0.25)
            record = await self._app.backend_record(self.id)
            if record is None:
                # Finished and purged between two looks: waiting on would never end.
                raise UnderwayError(
                    f"job {self.id} of task {self.task_name!r} is no longer in the store "
                    "(purged after it finished, or the store was replaced); its result is lost."
                )
            self._record = record
        if self.status is JobStatus.SUCCEEDED:
            data = self._record.result
            return cast(R, None if data is None else self._app.serializer.loads_result(data))
        if self.status is JobStatus.CANCELLED:
            raise JobCancelled(self)
        raise JobFailed(self)

    async def cancel(self) -> Job[R]:
        """Cancel the job: at once if it waits, at its worker's next heartbeat if it runs."""
        record = await self._app.cancel_job(self.id)
        if record is not None:
            self._record = record
        return self
