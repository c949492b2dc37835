"""FastAPI tutorial, "2. 기본 사용법": log an item's creation after the response.

The tutorial's code with one change, the import of ``BackgroundTasks``, which now comes
from ``underway.fastapi`` instead of ``fastapi``. ``write_log`` appends to ``log.txt`` in
the current directory.

Run it with ``uvicorn --app-dir examples fastapi_basic:app``, then
``curl -X POST 'http://127.0.0.1:8000/items?name=book'``.
"""
# The tutorial's code is kept as written, without the annotations mypy --strict asks for.
# mypy: disable-error-code="no-untyped-def"

from fastapi import FastAPI

from underway.fastapi import BackgroundTasks

app = FastAPI()


def write_log(message: str):
    """백그라운드에서 실행될 함수"""
    # 파일 쓰기, DB 저장, 이메일 발송 등
    with open("log.txt", "a") as f:
        f.write(f"{message}\n")


@app.post("/items")
async def create_item(name: str, background_tasks: BackgroundTasks):
    """아이템 생성 후, 백그라운드에서 로그를 기록합니다."""
    # 백그라운드 작업 등록
    background_tasks.add_task(write_log, f"아이템 생성: {name}")

    # 즉시 응답 반환 (로그 기록은 백그라운드에서 진행)
    return {"message": f"아이템 '{name}' 생성됨", "status": "ok"}
