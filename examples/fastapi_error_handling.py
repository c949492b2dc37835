"""FastAPI tutorial, "주의사항 2. 에러 처리": a task that catches its own errors.

The tutorial shows ``important_task`` alone; here an endpoint (``POST /important``) adds
it, and ``BackgroundTasks`` comes from ``underway.fastapi``. The function is kept as
written. With underway the ``try``/``except`` is optional: a task that raises is logged at
ERROR with its name and traceback, and the tasks after it still run.

Run it with ``uvicorn --app-dir examples fastapi_error_handling:app``, then
``curl -X POST 'http://127.0.0.1:8000/important?data=x'``.
"""
# The tutorial's code is kept as written, without the annotations mypy --strict asks for.
# mypy: disable-error-code="no-untyped-def"

from fastapi import FastAPI

from underway.fastapi import BackgroundTasks

app = FastAPI()


def important_task(data: str):
    try:
        # 중요한 처리...
        pass
    except Exception as e:
        # 에러 로깅 (클라이언트에게는 전달되지 않음)
        print(f"백그라운드 작업 실패: {e}")


@app.post("/important")
async def important(data: str, background_tasks: BackgroundTasks):
    background_tasks.add_task(important_task, data)
    return {"message": "ok"}
