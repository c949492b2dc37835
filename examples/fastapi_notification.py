"""FastAPI tutorial, "코드 예제 1: 기본 백그라운드 작업": log a notification.

The tutorial's code with one change, the import of ``BackgroundTasks`` from
``underway.fastapi``. ``task_log`` is a list in memory, as in the tutorial.

Run it with ``uvicorn --app-dir examples fastapi_notification:app``, then
``curl -X POST 'http://127.0.0.1:8000/send-notification?email=a@example.com'``.
"""
# The tutorial's code is kept as written, without the annotations mypy --strict asks for.
# mypy: disable-error-code="no-untyped-def, var-annotated"

from fastapi import FastAPI

from underway.fastapi import BackgroundTasks

app = FastAPI()

# 로그 저장용 리스트 (실제로는 파일이나 DB 사용)
task_log = []


def write_log(message: str):
    """로그를 기록하는 백그라운드 함수"""
    task_log.append(message)


@app.post("/send-notification")
async def send_notification(
    email: str,
    background_tasks: BackgroundTasks,
):
    """알림 발송 후 로그를 백그라운드에서 기록"""
    background_tasks.add_task(write_log, f"알림 발송: {email}")
    return {"message": f"'{email}'에 알림 발송 예정"}
