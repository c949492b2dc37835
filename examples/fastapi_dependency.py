"""FastAPI tutorial, "5. 의존성에서 백그라운드 작업 추가": a dependency adds the task.

The tutorial's code with one change, the import of ``BackgroundTasks`` from
``underway.fastapi``; ``app`` and ``write_log`` are those of section 2. The dependency and
the endpoint get the same ``BackgroundTasks`` instance, also through the endpoint's
``background_tasks: BackgroundTasks = None``.

Run it with ``uvicorn --app-dir examples fastapi_dependency:app``, then
``curl -X POST 'http://127.0.0.1:8000/items?name=book'``.
"""
# The tutorial's code is kept as written, without the annotations mypy --strict asks for.
# mypy: disable-error-code="no-untyped-def, assignment"
# ruff: noqa: B008

from fastapi import Depends, FastAPI

from underway.fastapi import BackgroundTasks

app = FastAPI()


def write_log(message: str):
    """백그라운드에서 실행될 함수"""
    # 파일 쓰기, DB 저장, 이메일 발송 등
    with open("log.txt", "a") as f:
        f.write(f"{message}\n")


def audit_logger(background_tasks: BackgroundTasks):
    """감사 로그를 기록하는 의존성"""

    def log(action: str):
        background_tasks.add_task(write_log, f"[감사] {action}")

    return log


@app.post("/items")
async def create_item(
    name: str,
    logger=Depends(audit_logger),
    background_tasks: BackgroundTasks = None,
):
    logger(f"아이템 생성: {name}")
    return {"message": f"아이템 '{name}' 생성됨"}
