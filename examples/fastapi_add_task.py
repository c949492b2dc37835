"""FastAPI tutorial, "3. BackgroundTasks.add_task()": a plain and an ``async def`` task.

The tutorial shows the two ``add_task`` calls as a fragment; here they are the body of an
endpoint (``POST /signup``), kept as written, with ``write_log`` from section 2. The only
other change is the import of ``BackgroundTasks`` from ``underway.fastapi``. The response
is sent at once; ``send_email`` then takes two seconds.

Run it with ``uvicorn --app-dir examples fastapi_add_task:app``, then
``curl -X POST http://127.0.0.1:8000/signup``.
"""
# The tutorial's code is kept as written, without the annotations mypy --strict asks for.
# mypy: disable-error-code="no-untyped-def"

import asyncio

from fastapi import FastAPI

from underway.fastapi import BackgroundTasks

app = FastAPI()


def write_log(message: str):
    """백그라운드에서 실행될 함수"""
    # 파일 쓰기, DB 저장, 이메일 발송 등
    with open("log.txt", "a") as f:
        f.write(f"{message}\n")


@app.post("/signup")
async def signup(background_tasks: BackgroundTasks):
    # 일반 함수 등록
    background_tasks.add_task(write_log, "메시지")

    # async 함수도 등록 가능
    async def send_email(to: str, subject: str):
        await asyncio.sleep(2)  # 이메일 발송 시뮬레이션

    background_tasks.add_task(send_email, "user@example.com", subject="가입 환영")
    return {"message": "ok"}
