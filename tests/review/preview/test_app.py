"""The preview web app over HTTP: the page, its parts, local-only access, live reload."""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ccm.review.preview.app import PreviewServer, create_app
from ccm.review.preview.workspace import Workspace

with warnings.catch_warnings():
    # starlette's TestClient warns that plain httpx is deprecated in favour of httpx2.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

LIGHT = "payment_reminder"


@pytest.fixture()
def client(project: tuple[list[Path], Path]) -> Iterator[TestClient]:
    """An in-process client of the app (no file watching) over the project copy."""
    packs, templates = project
    app = create_app(Workspace(packs, templates, lint=False), watch=False)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def test_page_lists_templates_and_switchers(client: TestClient) -> None:
    """The page lists the templates and offers pack, template, locale and sample choices."""
    page = client.get("/", params={"pack": "globex", "template": LIGHT}).text
    for name in ("pack", "template", "locale", "sample"):
        assert f"id=select-{name}" in page
    assert "<option value='acme'>" in page and "<option value='globex' selected>" in page
    assert "Payment reminder" in page and "Monthly statement" in page
    assert "id=sms-text" in page and "/email-html?" in page


def test_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    """CSS and JS are inline: no external script, stylesheet, font or image."""
    page = client.get("/", params={"template": "welcome"}).text
    assert "<link" not in page and "<script src" not in page
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", page)
    assert "url(" not in page


def test_pdf_pages_and_email_html_are_served(client: TestClient) -> None:
    """PDF pages come as PNG images, the email HTML without scripts, pack files locally."""
    query = {"pack": "acme", "template": "welcome"}
    png = client.get("/pdf-page", params={**query, "n": 1})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert client.get("/pdf-page", params={**query, "n": 99}).status_code == 404
    html = client.get("/email-html", params=query)
    assert html.status_code == 200
    assert "script-src 'none'" in html.headers["content-security-policy"]
    logo = re.search(r"/pack-file/acme/[^\"' )]+", html.text)
    assert logo is not None
    assert client.get(logo.group(0)).status_code == 200
    assert client.get("/pack-file/acme/..%2F..%2Ftemplates/x").status_code == 404


def test_lint_fragment_and_health(client: TestClient) -> None:
    """/lint answers with an HTML fragment and /health with the generation."""
    assert "Lint is off" in client.get("/lint").text
    assert client.get("/health").json()["generation"] == 0


def test_only_local_host_names_are_answered(client: TestClient) -> None:
    """A request naming another host (DNS rebinding) is refused."""
    assert client.get("/", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/health", headers={"host": "localhost:8765"}).status_code == 200


def test_template_error_is_on_the_page(client: TestClient,
                                       project: tuple[list[Path], Path]) -> None:
    """A broken template shows its file and line on the page; the server keeps serving."""
    _, templates = project
    (templates / LIGHT / "email.mjml.j2").write_text("{% extends 'pack/email.mjml.j2' %}\n"
                                                    "{% block content %}{{ oops( }}{% endblock %}")
    page = client.get("/", params={"template": LIGHT})
    assert page.status_code == 200
    assert f"templates/{LIGHT}/email.mjml.j2:2" in page.text
    assert "role=alert" in page.text
    assert client.get("/health").status_code == 200


def test_lint_fragment_shows_the_findings_for_the_view(
        project: tuple[list[Path], Path]) -> None:
    """With lint on, /lint lists each finding with severity, rule, file:line and message."""
    packs, templates = project
    source = templates / LIGHT / "email.mjml.j2"
    source.write_text(source.read_text("utf-8").replace(
        "{% block content %}\n", "{% block content %}\n<mj-text>Please act now.</mj-text>\n", 1),
        "utf-8")
    line = source.read_text("utf-8").split("\n").index("<mj-text>Please act now.</mj-text>") + 1
    app = create_app(Workspace(packs, templates), watch=False)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        params = {"pack": "acme", "template": LIGHT, "locale": "en_GB"}
        assert "id=lint-body" in client.get("/", params=params).text
        fragment = client.get("/lint", params=params).text
        assert "<span class='sev sev-error'>error</span> <code>banned-term</code>" in fragment
        assert f"templates/{LIGHT}/email.mjml.j2:{line}" in fragment
        assert "&#x27;act now&#x27; is banned by the acme tone of voice" in fragment
        clean = client.get("/lint", params={**params, "pack": "globex", "locale": "en_US",
                                             "template": "welcome"}).text
        assert "No findings for what is shown." in clean


def test_saving_a_file_sends_reload(project: tuple[list[Path], Path]) -> None:
    """The real server re-renders after a save and tells the open page (no timing is asserted:
    the client's 10 s read timeout fails the test if the reload never comes)."""
    packs, templates = project
    ws = Workspace(packs, templates)
    with PreviewServer(ws) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        params = {"pack": "acme", "template": LIGHT}
        assert "id=sms-text" in http.get("/", params=params).text
        with http.stream("GET", "/events", params=params) as events:
            lines = events.iter_lines()
            assert next(lines) == "retry: 500"
            assert next(lines) == "event: hello"
            hello = next(lines)
            source = templates / LIGHT / "sms.txt.j2"
            time.sleep(0.3)  # let the watcher settle on the fresh copy
            source.write_text(source.read_text("utf-8").replace(
                "{% block content %}\n", "{% block content %}\nZebra. ", 1), "utf-8")
            for line in lines:
                if line == "event: reload":
                    break
            reload_data = next(lines)
        assert reload_data.startswith("data: ") and reload_data != hello
        page = http.get("/", params=params).text
        assert "ACME: Zebra. " in page
