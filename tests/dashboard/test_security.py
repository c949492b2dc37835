"""The dashboard's security: tokens on every route, sessions, CSRF, Origin, bounds, escaping."""

from __future__ import annotations

import logging
import re

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from tests.dashboard.conftest import TOKEN, Tasks, client_for, run_until_idle
from underway import JobStatus, Underway
from underway.dashboard import create_dashboard, mount
from underway.dashboard.guard import _loopback
from underway.dashboard.security import COOKIE_NAME

WRONG = "wrong-token-0123456789abcdef"


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, "the page has no CSRF field"
    return match.group(1)


async def dead_job(uw: Underway, tasks: Tasks) -> str:
    """Enqueue a job and move it to dead, as an operator would find it."""
    job = await tasks.boom.enqueue("x")
    backend = await uw.backend()
    record = await backend.mark_dead(job.id, "test: cannot run")
    assert record is not None and record.status is JobStatus.DEAD
    return job.id


async def login(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/login", data={"token": token, "next": "/"})


async def test_every_route_refuses_a_missing_or_wrong_token(uw: Underway, tasks: Tasks) -> None:
    job_id = await dead_job(uw, tasks)
    app = create_dashboard(uw, token=TOKEN)
    walked: set[tuple[str, str]] = set()
    async with client_for(app) as client:
        for route in app.routes:
            if not isinstance(route, Route) or route.path == "/login":
                continue
            path = route.path.replace("{job_id}", job_id)
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                attempts: list[dict[str, str]] = [
                    {},
                    {"authorization": f"Bearer {WRONG}"},
                    {"authorization": "Basic dXNlcjpwYXNz"},
                    {"authorization": f"Bearer {TOKEN[:-1]}"},
                    {"cookie": f"{COOKIE_NAME}=forged.1700000000.deadbeef"},
                    {"accept": "text/html"},
                ]
                for headers in attempts:
                    response = await client.request(method, path, headers=headers)
                    assert response.status_code == 401, (method, path, headers)
                    assert response.headers["www-authenticate"].startswith("Bearer")
                    assert "dead" not in response.text.lower() or "log in" in response.text.lower()
                walked.add((method, route.path))
                # The right token gets past the guard on the same route (actions are sent
                # cross-origin, so that they are refused after the guard and change nothing).
                headers = {"authorization": f"Bearer {TOKEN}", "origin": "http://evil.example"}
                ok = await client.request(method, path, headers=headers)
                assert ok.status_code == (403 if method == "POST" else 200), (method, path)
    assert {
        ("GET", "/"),
        ("GET", "/jobs"),
        ("GET", "/jobs/{job_id}"),
        ("POST", "/jobs/{job_id}/retry"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("POST", "/purge"),
        ("GET", "/schedules"),
        ("GET", "/workers"),
        ("GET", "/api/overview"),
        ("GET", "/api/jobs/{job_id}"),
        ("GET", "/metrics"),
        ("POST", "/logout"),
    } <= walked
    backend = await uw.backend()
    record = await backend.get_job(job_id)
    assert record is not None and record.status is JobStatus.DEAD  # nothing was retried
    await uw.close()


async def test_a_browser_without_a_session_gets_the_login_form_with_401(uw: Underway) -> None:
    async with client_for(create_dashboard(uw, token=TOKEN)) as client:
        response = await client.get("/jobs?status=dead", headers={"accept": "text/html"})
        assert response.status_code == 401
        assert 'name="token"' in response.text
        assert 'name="next" value="/jobs?status=dead"' in response.text
    await uw.close()


async def test_login_sets_a_strict_httponly_cookie_that_opens_the_pages(uw: Underway) -> None:
    async with client_for(create_dashboard(uw, token=TOKEN)) as client:
        refused = await login(client, WRONG)
        assert refused.status_code == 401
        assert "set-cookie" not in refused.headers
        response = await login(client)
        assert response.status_code == 303
        assert response.headers["location"] == "/"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=")
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="):
            assert attribute in cookie
        assert TOKEN not in cookie
        page = await client.get("/")
        assert page.status_code == 200
        assert "Queues" in page.text
        logout = await client.post("/logout", data={"csrf": csrf_of(page.text)})
        assert logout.status_code == 303
        assert "Max-Age=0" in logout.headers["set-cookie"]
    await uw.close()


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
async def test_login_never_redirects_off_the_dashboard(uw: Underway, target: str) -> None:
    async with client_for(create_dashboard(uw, token=TOKEN)) as client:
        response = await client.post("/login", data={"token": TOKEN, "next": target})
        assert response.status_code == 303
        assert response.headers["location"] == "/"
    await uw.close()


async def test_actions_need_the_sessions_csrf_token_and_the_same_origin(
    uw: Underway, tasks: Tasks
) -> None:
    job_id = await dead_job(uw, tasks)
    backend = await uw.backend()
    app = create_dashboard(uw, token=TOKEN)
    async with client_for(app) as client, client_for(app) as other:
        await login(client)
        page = await client.get(f"/jobs/{job_id}")
        csrf = csrf_of(page.text)
        assert 'id="retry"' in page.text
        for data in ({}, {"csrf": ""}, {"csrf": "x" * 64}):
            refused = await client.post(f"/jobs/{job_id}/retry", data=data)
            assert refused.status_code == 403
            assert "CSRF" in refused.text
        for header in ({"origin": "http://evil.example"}, {"referer": "http://evil.example/"}):
            cross = await client.post(f"/jobs/{job_id}/retry", data={"csrf": csrf}, headers=header)
            assert cross.status_code == 403
            assert "Cross-origin" in cross.text
        purge = await client.post("/purge", data={"older_than": "0s"})
        assert purge.status_code == 403
        # The token of one session is no good in another.
        await login(other)
        foreign = await other.post(f"/jobs/{job_id}/retry", data={"csrf": csrf})
        assert foreign.status_code == 403
        record = await backend.get_job(job_id)
        assert record is not None and record.status is JobStatus.DEAD

        accepted = await client.post(
            f"/jobs/{job_id}/retry", data={"csrf": csrf}, headers={"origin": "http://testserver"}
        )
        assert accepted.status_code == 303
        assert accepted.headers["location"] == f"/jobs/{job_id}?done=retried"
    record = await backend.get_job(job_id)
    assert record is not None and record.status is JobStatus.QUEUED
    await uw.close()


async def test_bearer_callers_act_without_a_csrf_token(uw: Underway, tasks: Tasks) -> None:
    job_id = await dead_job(uw, tasks)
    async with client_for(create_dashboard(uw, token=TOKEN)) as client:
        headers = {"authorization": f"Bearer {TOKEN}"}
        response = await client.post(f"/jobs/{job_id}/retry", headers=headers)
        assert response.status_code == 303
        again = await client.post(f"/jobs/{job_id}/retry", headers=headers)
        assert again.status_code == 409  # queued now: only failed or dead jobs are retried
        cancelled = await client.post(f"/jobs/{job_id}/cancel", headers=headers)
        assert cancelled.status_code == 303
        assert cancelled.headers["location"].endswith("done=cancelled")
    record = await (await uw.backend()).get_job(job_id)
    assert record is not None and record.status is JobStatus.CANCELLED
    await uw.close()


async def test_read_only_hides_actions_and_refuses_them_with_403(
    uw: Underway, tasks: Tasks
) -> None:
    job_id = await dead_job(uw, tasks)
    waiting = await tasks.ok.enqueue(1)
    app = create_dashboard(uw, token=TOKEN, read_only=True)
    assert app.read_only
    async with client_for(app) as client:
        await login(client)
        page = await client.get(f"/jobs/{job_id}")
        assert page.status_code == 200
        assert 'id="retry"' not in page.text
        assert "read-only" in page.text
        jobs = await client.get("/jobs")
        assert "/purge" not in jobs.text
        csrf = csrf_of(page.text)  # the logout form still carries one
        attempts = [
            (f"/jobs/{job_id}/retry", {"csrf": csrf}),
            (f"/jobs/{waiting.id}/cancel", {"csrf": csrf}),
            ("/purge", {"csrf": csrf, "older_than": "0s"}),
        ]
        for path, data in attempts:
            response = await client.post(path, data=data)
            assert response.status_code == 403, path
            assert "read-only" in response.text
            bearer = await client.post(path, headers={"authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 403, path
    backend = await uw.backend()
    dead = await backend.get_job(job_id)
    queued = await backend.get_job(waiting.id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert queued is not None and queued.status is JobStatus.QUEUED
    await uw.close()


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=ten",
        "limit=1e3",
        "limit=99999999999999999999",
        "offset=-1",
        "offset=100001",
        "offset=1.5",
        "status=bogus",
        "status=QUEUED",
        "queue=" + "q" * 201,
        "task=" + "t" * 201,
        "queue=a%00b",
        "id=" + "i" * 201,
    ],
)
async def test_paging_and_filter_parameters_out_of_bounds_get_400(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await client.get(f"/jobs?{query}")
    assert response.status_code == 400, query
    html = await client.get(f"/jobs?{query}", headers={"accept": "text/html"})
    assert html.status_code == 400
    assert "<h1>" in html.text


async def test_the_largest_page_and_offset_are_served(
    client: httpx.AsyncClient, tasks: Tasks
) -> None:
    for i in range(3):
        await tasks.ok.enqueue(i)
    response = await client.get("/jobs?limit=500&offset=0&status=queued&queue=default&task=ok")
    assert response.status_code == 200
    assert response.text.count('class="badge s-queued"') == 3
    far = await client.get("/jobs?limit=500&offset=100000")
    assert far.status_code == 200
    assert "No job matches." in far.text
    paged = await client.get("/jobs?limit=2")
    assert 'rel="next"' in paged.text
    assert "offset=2" in paged.text


async def test_unknown_jobs_are_404_and_look_up_by_id_redirects(
    client: httpx.AsyncClient, tasks: Tasks
) -> None:
    job = await tasks.ok.enqueue(5)
    missing = await client.get("/jobs/0123456789abcdef")
    assert missing.status_code == 404
    assert (await client.get("/api/jobs/nope")).status_code == 404
    assert (await client.get("/jobs?id=nope")).status_code == 404
    found = await client.get(f"/jobs?id={job.id}")
    assert found.status_code == 303
    assert found.headers["location"] == f"/jobs/{job.id}"


async def test_stored_text_is_escaped(uw: Underway, tasks: Tasks) -> None:
    payload = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    job = await tasks.boom.enqueue(payload)
    await run_until_idle(uw)
    async with client_for(create_dashboard(uw, token=TOKEN)) as client:
        await login(client)
        page = await client.get(f"/jobs/{job.id}")
        listing = await client.get("/jobs")
    assert page.status_code == 200
    assert "&lt;script&gt;" in page.text
    assert "ValueError: boom:" in page.text  # the error and its traceback are shown
    assert "Traceback (most recent call last)" in page.text
    for html in (page.text, listing.text):
        assert "<script>alert" not in html
        assert "<img src=x" not in html
    await uw.close()


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    for path in ("/", "/static/style.css", "/metrics", "/nope"):
        response = await client.get(path)
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
    page = await client.get("/")
    assert "<script>" not in page.text  # no inline script: the CSP would block it
    assert ' style="' not in page.text
    assert " onclick=" not in page.text


async def test_insecure_mode_opens_pages_but_keeps_csrf(
    uw: Underway, tasks: Tasks, caplog: pytest.LogCaptureFixture
) -> None:
    job_id = await dead_job(uw, tasks)
    with caplog.at_level(logging.WARNING, logger="underway.dashboard"):
        app = create_dashboard(uw, insecure_no_auth=True)
    assert "WITHOUT AUTHENTICATION" in caplog.text
    assert app.token is None
    async with client_for(app, host="127.0.0.1:8080") as client:
        rebound = await client.get(f"/jobs/{job_id}", headers={"host": "evil.example:8080"})
        assert rebound.status_code == 403  # a DNS-rebinding page gets nothing
        page = await client.get(f"/jobs/{job_id}")
        assert page.status_code == 200
        assert COOKIE_NAME in page.headers["set-cookie"]
        assert "no auth" in page.text
        refused = await client.post(f"/jobs/{job_id}/retry", data={})
        assert refused.status_code == 403
        done = await client.post(
            f"/jobs/{job_id}/retry",
            data={"csrf": csrf_of(page.text)},
            headers={"origin": "http://127.0.0.1:8080"},
        )
        assert done.status_code == 303
    await uw.close()


async def test_tokens_are_generated_when_not_given_and_checked_when_given(
    uw: Underway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="underway.dashboard"):
        app = create_dashboard(uw)
    assert app.token is not None and len(app.token) >= 40
    assert app.token in caplog.text
    async with client_for(app, authorization=f"Bearer {app.token}") as client:
        assert (await client.get("/")).status_code == 200
    with pytest.raises(ValueError, match="at least 16"):
        create_dashboard(uw, token="short")
    with pytest.raises(ValueError, match="not both"):
        create_dashboard(uw, token=TOKEN, insecure_no_auth=True)
    await uw.close()


async def test_mounted_under_a_path_links_and_cookies_stay_inside_it(
    uw: Underway, tasks: Tasks
) -> None:
    job = await tasks.ok.enqueue(2)
    host = Starlette()
    dashboard = mount(host, uw, path="/underway/", token=TOKEN)
    assert dashboard.token == TOKEN
    async with (
        client_for(dashboard) as _,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=host), base_url="http://testserver"
        ) as client,
    ):
        assert (await client.get("/underway/")).status_code == 401
        response = await client.post(
            "/underway/login", data={"token": TOKEN, "next": f"/underway/jobs/{job.id}"}
        )
        assert response.status_code == 303
        assert response.headers["location"] == f"/underway/jobs/{job.id}"
        assert "Path=/underway;" in response.headers["set-cookie"]
        outside = await client.post("/underway/login", data={"token": TOKEN, "next": "/admin"})
        assert outside.headers["location"] == "/underway"
        page = await client.get("/underway/")
        assert page.status_code == 200
        assert 'href="/underway/jobs"' in page.text
        assert 'href="/underway/static/style.css"' in page.text
        assert (await client.get("/underway/static/dashboard.js")).status_code == 200
    with pytest.raises(ValueError, match="sub-path"):
        mount(host, uw, path="/", token=TOKEN)
    await uw.close()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1:8080", True),
        ("localhost", True),
        ("LOCALHOST:80", True),
        ("[::1]:8080", True),
        ("127.0.0.1.evil.example", False),
        ("localhost.evil.example:8080", False),
        ("evil.example", False),
        ("", False),
    ],
)
def test_insecure_mode_recognises_loopback_host_names(host: str, loopback: bool) -> None:
    assert _loopback(host) is loopback
