"""FastAPI tutorial, "4. 여러 백그라운드 작업 추가": three tasks, run in the order added.

The tutorial's endpoint with one change, the import of ``BackgroundTasks`` from
``underway.fastapi``. The tutorial does not define ``send_welcome_email`` and
``notify_admin``; the two small versions below write to ``log.txt`` like ``write_log``
(section 2), so that the order can be seen there.

Run it with ``uvicorn --app-dir examples fastapi_multiple:app``, then
``curl -X POST 'http://127.0.0.1:8000/register?name=kim'``.
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


# Not in the tutorial, which leaves these two to the reader.
def send_welcome_email(name: str) -> None:
    write_log(f"환영 이메일: {name}")


async def notify_admin(message: str) -> None:
    write_log(f"관리자 알림: {message}")


@app.post("/register")
async def register_user(name: str, background_tasks: BackgroundTasks):
    """사용자 등록 후, 여러 백그라운드 작업을 실행합니다."""

    # 작업 1: 환영 이메일 발송
    background_tasks.add_task(send_welcome_email, name)

    # 작업 2: 관리자 알림
    background_tasks.add_task(notify_admin, f"신규 가입: {name}")

    # 작업 3: 로그 기록
    background_tasks.add_task(write_log, f"사용자 등록: {name}")

    return {"message": f"'{name}' 등록 완료"}
    # 응답 후 작업 1 → 작업 2 → 작업 3 순서대로 실행
