"""FastAPI tutorial, "코드 예제 2: 다중 백그라운드 작업": three steps after an order.

The tutorial's code with one change, the import of ``BackgroundTasks`` from
``underway.fastapi``. The three steps run after the response, in the order added.

Run it with ``uvicorn --app-dir examples fastapi_order:app``, then
``curl -X POST 'http://127.0.0.1:8000/order?item=pen'``.
"""
# The tutorial's code is kept as written, without the annotations mypy --strict asks for.
# mypy: disable-error-code="no-untyped-def, var-annotated"

from fastapi import FastAPI

from underway.fastapi import BackgroundTasks

app = FastAPI()

task_log = []


def log_step(step: str):
    task_log.append(step)


@app.post("/order")
async def create_order(
    item: str,
    background_tasks: BackgroundTasks,
):
    """주문 생성 후 여러 후처리를 백그라운드에서 실행"""
    background_tasks.add_task(log_step, f"주문 확인: {item}")
    background_tasks.add_task(log_step, f"재고 차감: {item}")
    background_tasks.add_task(log_step, f"알림 발송: {item}")

    return {"message": f"주문 완료: {item}"}
    # 응답 후: 주문 확인 → 재고 차감 → 알림 발송 순서로 실행
