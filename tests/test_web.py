"""The web view (taskhub/web) and progress bars: filters and tokens as pure functions, the
JSON endpoints over HTTP, then a real headless Chromium driving the pages, and one
`ipcluster start` / `ipcluster dashboard` run.

The browser is Debian's chromium (`make test` installs it) driven by Playwright. A
screenshot of the main page is saved to build/test-artifacts/web-main.png on every run.
"""
import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import LoopbackCluster, wait_for_file, wait_until

from taskhub.client import progress
from taskhub.paths import security_file
from taskhub.web import WebServer, web_token
from taskhub.web.tasktable import table_request

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "build" / "test-artifacts" / "web-main.png"
CHROMIUM = "/usr/bin/chromium"
# Running as root in a container, without a GPU or a desktop session (see INFRA.md).
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


# -- the task table's filters ----------------------------------------------------------

def test_filters_become_a_task_db_query():
    req = table_request({"status": "error", "engine": "3", "label": "fit-*", "group": "g1",
                         "msg_id": "4f2a", "since": "2026-01-31T14:00:00+01:00", "sort": "-completed",
                         "limit": "20", "skip": "40", "q": '{"stdout": {"$regex": "warn"}}'})
    assert req.query == {
        "status": "error", "engine_id": 3, "label": {"$glob": "fit-*"}, "task_group": "g1",
        "msg_id": {"$glob": "4f2a*"},
        "submitted": {"$gte": datetime(2026, 1, 31, 13, tzinfo=timezone.utc)},
        "stdout": {"$regex": "warn"}}
    assert (req.sort, req.limit, req.skip) == ([("completed", -1)], 20, 40)


def test_no_filters_is_the_newest_page_of_everything():
    req = table_request({"status": "all", "label": "  ", "token": "x"})
    assert (req.query, req.sort, req.limit, req.skip) == ({}, [("submitted", -1)], 50, 0)
    assert table_request({"label": "fit-1"}).query == {"label": "fit-1"}  # no wildcard: equality
    assert table_request({"status": "unfinished"}).query == {"completed": None}
    assert table_request({"status": "running"}).query == {"status": "running"}


@pytest.mark.parametrize("args, message", [
    ({"status": "broken"},
     "status must be one of all, unfinished, finished, pending, queued, running, ok, error"),
    ({"engine": "one"}, "engine must be a whole number"),
    ({"limit": "5000"}, "limit must be a whole number from 1 to 500"),
    ({"sort": "stdout"}, "sort by one of submitted, completed"),
    ({"since": "yesterday"}, "since: 'yesterday' is not an ISO date-time"),
    ({"msg_id": "a*b"}, "msg_id: letters, digits"),
    ({"q": "[1]"}, "q: the query must be a JSON object"),
    ({"q": '{"status": "ok"}', "status": "ok"}, "'status' is filtered both by the form"),
])
def test_bad_filters_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        table_request(args)


def test_the_token_is_derived_from_the_key():
    assert web_token("k1") == web_token(b"k1") != web_token("k2")
    assert len(web_token("k1")) == 64


# -- a cluster with a web view -------------------------------------------------------

def flaky(marker):
    """Fails until the file `marker` exists: a task worth resubmitting."""
    print("checking", marker)
    if not os.path.exists(marker):
        raise RuntimeError(f"{marker} is missing")
    return "fixed"


def square(x):
    if x == 7:
        raise ValueError("seven is unlucky")
    return x * x


class Web:
    """A loopback cluster (2 engines), its web view, and the tasks the tests look at."""

    def __init__(self, tmp):
        self.cluster = LoopbackCluster(tmp / "profile", n=2, heartbeat_period=0.2,
                                       heartbeat_misses=25).start()
        self.server = WebServer(security_file(self.cluster.profile_dir, "client"),
                                title=str(self.cluster.profile_dir)).start()
        self.base = f"http://127.0.0.1:{self.server.port}"
        self.marker = str(tmp / "fixed")
        self.rc = self.cluster.client()
        lview = self.rc.load_balanced_view()
        lview.label = "squares"
        self.squares = lview.map_async(square, range(12))
        self.squares.wait(30)
        lview.label = "flaky"
        self.flaky = lview.apply_async(flaky, self.marker)
        self.flaky.wait(30)

    def stop(self):
        self.rc.close()
        self.server.stop()
        self.cluster.stop()


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    w = Web(tmp_path_factory.mktemp("web"))
    yield w
    w.stop()


def http(web, path, token=None, header=None, method="GET", cookie=None):
    """(status, JSON or text body) of a request to the web view."""
    url = web.base + path + (("&" if "?" in path else "?") + f"token={token}" if token else "")
    headers = {"Authorization": f"token {header}"} if header else {}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(url, headers=headers, method=method,
                                     data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body = response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        status, body = e.code, e.read().decode()
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


# -- the JSON endpoints --------------------------------------------------------------

@pytest.mark.parametrize("path, method", [
    ("/api/engines", "GET"), ("/api/tasks", "GET"), ("/api/throughput", "GET"),
    ("/api/tasks/x", "GET"), ("/api/tasks/x/resubmit", "POST"), ("/api/tasks/x/abort", "POST"),
])
def test_without_the_token_every_api_request_gets_403(web, path, method):
    assert http(web, path, method=method)[0] == 403
    assert http(web, path, token="0" * 64, method=method)[0] == 403
    assert http(web, path, header="wrong", method=method)[0] == 403


@pytest.mark.parametrize("path", ["/", "/task/x", "/static/app.js", "/static/style.css"])
def test_pages_and_scripts_are_served_without_the_token_and_hold_none(web, path):
    status, body = http(web, path)
    assert status == 200 and web.server.token not in body


def test_a_cookie_is_no_credential(web):
    cookie = f"taskhub_token_{web.server.port}={web.server.token}"
    assert http(web, "/api/engines", cookie=cookie)[0] == 403
    status, body = http(web, f"/api/tasks/{web.flaky.msg_ids[0]}/resubmit", method="POST",
                        cookie=cookie)
    assert status == 403 and "needs the web view's token" in body["error"]
    assert http(web, "/api/engines", header=web.server.token)[0] == 200
    assert http(web, "/api/engines", token=web.server.token)[0] == 200  # for scripts


def test_engines_endpoint(web):
    status, body = http(web, "/api/engines", header=web.server.token)
    assert status == 200
    engines = body["engines"]
    assert [e["id"] for e in engines] == [0, 1]
    for e in engines:
        assert e["state"] == "up" and e["host"] and isinstance(e["pid"], int)
        assert e["queue"] == 0 and e["last_heartbeat"].endswith("+00:00")
    assert sum(e["completed"] for e in engines) >= 13


def test_throughput_endpoint(web):
    status, body = http(web, "/api/throughput?window=3600", token=web.server.token)
    assert status == 200 and body["completed"] >= 13
    assert body["rate"] == pytest.approx(body["completed"] / 3600)
    assert http(web, "/api/throughput?window=0", token=web.server.token)[0] == 400


def test_throughput_history_samples_go_back_from_now():
    from taskhub.web import chart
    now = datetime(2026, 1, 1, 12, 0, 10, tzinfo=timezone.utc)
    windows = chart.sample_windows(now, window=10, step=2, samples=3)
    assert [(a.second, b.second) for a, b in windows] == [(54, 4), (56, 6), (58, 8)]
    seen = []
    rates = chart.history(lambda q: seen.append(q) or 5, now, 10, 2, 3)
    assert rates == [0.5, 0.5, 0.5]
    assert seen[-1] == {"completed": {"$gt": windows[-1][0], "$lte": windows[-1][1]}}
    with pytest.raises(ValueError, match="samples must be an integer in \\[1, 600\\]"):
        chart.history(len, now, 10, 2, 0)


def test_throughput_history_endpoint(web):
    status, body = http(web, "/api/throughput/history?window=3600&step=0.001&samples=2",
                        token=web.server.token)
    assert status == 200 and len(body["rates"]) == 2 and body["rates"][-1] > 0
    status, body = http(web, "/api/throughput/history?samples=0", token=web.server.token)
    assert status == 400 and "samples must be an integer" in body["error"]


def test_tasks_endpoint_filters_sorts_and_pages(web):
    token = web.server.token
    status, page = http(web, "/api/tasks?label=squares&sort=submitted&limit=5&skip=5",
                        token=token)
    assert status == 200 and page["total"] == 12 and page["sort"] == ["submitted"]
    assert [t["msg_id"] for t in page["tasks"]] == web.squares.msg_ids[5:10]
    _, failed = http(web, "/api/tasks?status=error", token=token)
    assert {t["label"] for t in failed["tasks"]} == {"squares", "flaky"}
    errors = {t["ename"] for t in failed["tasks"]}
    assert errors == {"ValueError", "RuntimeError"}
    status, body = http(web, "/api/tasks?sort=stdout", token=token)
    assert status == 400 and "sort by one of" in body["error"]


def test_task_endpoint(web):
    msg_id = web.flaky.msg_ids[0]
    status, body = http(web, f"/api/tasks/{msg_id}", token=web.server.token)
    task = body["task"]
    assert status == 200 and task["status"] == "error" and task["label"] == "flaky"
    assert "RuntimeError" in task["error"]["traceback"] and "checking" in task["stdout"]
    assert "buffers" not in task and body["resubmitted_from"] is None
    assert http(web, "/api/tasks/nope", token=web.server.token)[0] == 404


def test_a_task_is_found_by_any_unique_prefix_of_its_msg_id(web):
    token, msg_id = web.server.token, web.flaky.msg_ids[0]
    status, body = http(web, f"/api/tasks/{msg_id[:8]}", token=token)
    assert status == 200 and body["task"]["msg_id"] == msg_id
    web.rc.load_balanced_view().map_sync(abs, range(17), chunksize=1)
    ids = web.rc.hub_history()  # 17 ids or more: two share a first digit
    digit = next(m[0] for m in ids if sum(o[0] == m[0] for o in ids) > 1)
    status, body = http(web, f"/api/tasks/{digit}", token=token)
    assert status == 400 and body["error"].startswith(f"msg_id prefix '{digit}' is ambiguous")
    assert http(web, "/api/tasks/zzz9", token=token)[0] == 404


def test_the_hub_requests_behind_the_page(web):
    """The client API the web view uses: sorted pages, counts, engine details."""
    rc = web.rc
    page = rc.db_query({"label": "squares"}, keys=["msg_id"], sort="-submitted", limit=3)
    assert [r["msg_id"] for r in page] == web.squares.msg_ids[::-1][:3]
    assert rc.db_count({"label": "squares", "status": "error"}) == 1
    assert rc.db_count() >= 13
    engines = rc._hub_request("engines_request", {})["engines"]
    assert {e["pid"] for e in engines} == {p.pid for p in web.cluster.engines[:2]}


def test_an_engine_that_left_is_listed_as_down(web):
    proc = web.cluster.add_engine()
    web.rc.wait_for_engines(3, timeout=30)
    proc.terminate()
    proc.wait(10)

    def states():
        return {e["id"]: e["state"] for e in http(web, "/api/engines",
                                                  header=web.server.token)[1]["engines"]}
    wait_until(lambda: states().get(2) == "down", 15, what="engine 2 to be listed as down")
    [gone] = [e for e in http(web, "/api/engines", header=web.server.token)[1]["engines"]
              if e["id"] == 2]
    assert gone["pid"] == proc.pid and gone["host"]
    web.cluster.engines.remove(proc)


def test_without_a_task_db_the_view_says_why(tmp_path):
    cluster = LoopbackCluster(tmp_path / "p", n=1, db="none").start()
    server = WebServer(security_file(cluster.profile_dir, "client")).start()
    try:
        w = type("W", (), {"base": f"http://127.0.0.1:{server.port}"})
        status, body = http(w, "/api/throughput", token=server.token)
        assert status == 200 and body["rate"] is None and body["outstanding"] == 0
        status, body = http(w, "/api/tasks", token=server.token)
        assert status == 503 and "without a task database" in body["error"]
        assert http(w, "/api/engines", token=server.token)[1]["engines"][0]["state"] == "up"
    finally:
        server.stop()
        cluster.stop()


# -- the pages in a real browser -----------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"no {CHROMIUM}: run `make test`, which installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(20000)
    yield page
    context.close()


def test_the_main_page_without_the_token_shows_nothing_but_why(web, page):
    page.goto(web.base + "/")
    page.locator("#table-error", has_text="needs the web view's token").wait_for()
    assert page.locator("#tasks tbody tr.task").count() == 0


class Spy:
    """Another HTTP server on 127.0.0.1 (another port): records what browsers send it."""

    def __init__(self):
        import http.server
        import threading
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<html><body>spy</body></html>")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_the_credential_is_not_sent_to_another_port(web, page):
    """Cookies ignore ports: a token cookie set by the web view would reach every other
    server on 127.0.0.1. The page keeps it in sessionStorage, which is per origin."""
    page.goto(web.server.url)
    page.locator("#engines tbody tr.engine").first.wait_for()  # the API calls worked
    assert "token" not in page.url  # taken off the address bar
    page.goto(web.base + "/")  # a reload without the fragment still has it
    page.locator("#engines tbody tr.engine").first.wait_for()
    spy = Spy()
    try:
        page.goto(spy.base + "/anything")
        page.evaluate("fetch('/again', {credentials: 'include'})")
        page.goto(spy.base + "/img")
        wait_until(lambda: len(spy.seen) >= 3, 10, what="the spy's requests")
        assert page.evaluate("sessionStorage.getItem('taskhub-token')") is None
        assert page.context.cookies() == []
    finally:
        spy.close()
    sent = json.dumps(spy.seen)
    assert web.server.token not in sent and "cookie" not in sent.lower()


def test_find_a_failed_task_resubmit_it_and_see_it_finish(web, page):
    page.goto(web.server.url)
    engines = page.locator("#engines tbody tr.engine")
    engines.first.wait_for()
    assert page.locator("#engines tr.e-up").count() >= 2
    page.wait_for_function("document.querySelector('#rate').textContent !== '–'")
    page.locator("#tasks tbody tr.task").first.wait_for()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    page.select_option("#f-status", "error")
    page.wait_for_function("() => { const rows = [...document.querySelectorAll"
                           "('#tasks tbody tr.task')]; return rows.length === 2 && "
                           "rows.every(r => r.classList.contains('t-error')); }")
    assert "status=error" in page.url
    page.locator("#tasks tr[data-msg-id] a", has_text=web.flaky.msg_ids[0]).click()

    page.wait_for_url(f"**/task/{web.flaky.msg_ids[0]}")
    page.locator("#traceback", has_text="RuntimeError").wait_for()
    assert "checking" in page.locator("#stdout").inner_text()
    Path(web.marker).write_text("now it works")
    page.click("#resubmit")

    page.wait_for_url(lambda url: "/task/" in url and web.flaky.msg_ids[0] not in url)
    page.locator("#status.s-ok").wait_for()
    new_id = page.url.rsplit("/", 1)[-1]
    assert page.locator("#links", has_text=web.flaky.msg_ids[0]).count() == 1
    assert web.rc.get_result(new_id).get(10) == "fixed"
    [old] = web.rc.db_query({"msg_id": web.flaky.msg_ids[0]}, keys=["resubmitted"])
    assert old["resubmitted"] == new_id


def test_the_throughput_chart_shows_work_done_before_the_page_opened(web, page):
    """Opened after a burst of tasks, the chart draws their completions from the task DB,
    not a flat line that starts when the page does."""
    web.rc.load_balanced_view().map_sync(abs, range(40), chunksize=1)
    page.goto(web.server.url)
    page.wait_for_function("(document.querySelector('#spark').dataset.rates || '')"
                           ".split(' ').length >= 60")
    rates = [float(r) for r in page.locator("#spark").get_attribute("data-rates").split()]
    history = rates[:59]  # from the task DB; the last one is the page's own first poll
    assert any(r > 0 for r in history), rates


def test_sorting_and_paging_in_the_browser(web, page):
    page.goto(f"{web.base}/?label=squares&limit=20#token={web.server.token}")
    page.wait_for_function("document.querySelectorAll('#tasks tbody tr.task').length === 12")
    page.click("#tasks th[data-sort='submitted']")  # newest first -> oldest first
    page.wait_for_function(f"document.querySelector('#tasks tbody tr.task')"
                           f".dataset.msgId === {json.dumps(web.squares.msg_ids[0])}")
    page.select_option("#f-limit", "20")
    page.fill("#f-engine", "0")
    page.click("#apply")
    on_0 = len(web.rc.db_query({"label": "squares", "engine_id": 0}, keys=["msg_id"]))
    page.wait_for_function("document.querySelector('#page-info').textContent"
                           f".endsWith('of {on_0}')")


def _on_writer(controller, sql):
    done = []
    controller.dbworker.on_writer(lambda db: db._conn.execute(sql).fetchall(),
                                  lambda ok, value: done.append(ok))
    wait_until(lambda: done, what=sql)


def test_the_header_says_when_the_task_db_fails(web, page, tmp_path):
    controller = web.cluster.controller
    pages = controller.db._conn.execute("PRAGMA page_count").fetchone()[0]
    _on_writer(controller, f"PRAGMA max_page_count = {pages}")
    try:
        assert web.rc.load_balanced_view().map_sync(abs, range(-30, 0)) == \
            list(range(30, 0, -1))
        wait_until(lambda: web.rc.stats()["db"]["db_state"] == "failing", what="failing")
        page.goto(web.server.url)
        page.locator("#throughput.db-failing", has_text="TASK DB FAILING").wait_for()
        assert "full" in page.locator("#throughput").inner_text()
        page.screenshot(path=str(tmp_path / "db-failing.png"))
    finally:
        _on_writer(controller, "PRAGMA max_page_count = 1073741823")
    wait_until(lambda: web.rc.stats()["db"]["db_state"] == "ok", timeout=20, what="ok")
    page.wait_for_function("!document.querySelector('#throughput')"
                           ".classList.contains('db-failing')")


# -- ipcluster start prints the URL, ipcluster dashboard too --------------------------

def test_ipcluster_prints_the_web_views_url(tmp_path):
    env = {**os.environ, "TASKHUB_DIR": str(tmp_path)}

    def ipcluster(*args):
        return subprocess.run([sys.executable, "-m", "taskhub.cluster", *args], env=env,
                              capture_output=True, text=True, timeout=90)

    started = ipcluster("start", "-n", "1", "--daemonize")
    try:
        assert started.returncode == 0, started.stderr
        [url] = [line.split()[-1] for line in started.stdout.splitlines()
                 if line.strip().startswith("web:")]
        shown = ipcluster("dashboard", "--no-browser")
        assert shown.returncode == 0 and shown.stdout.strip() == url
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200 and "taskhub" in response.read().decode()
        base, token = url.split("#token=")
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(base + "api/engines", timeout=30)
        request = urllib.request.Request(base + "api/engines",
                                         headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    finally:
        stopped = ipcluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    gone = ipcluster("dashboard", "--no-browser")
    assert gone.returncode == 1 and "no web view recorded" in gone.stderr


def test_ipcontroller_starts_the_web_view_unless_told_not_to(tmp_path):
    from taskhub.controller.app import IPControllerApp
    from taskhub.paths import ensure_profile_dir
    from taskhub.web import read_web_file, web_file
    profile = ensure_profile_dir(tmp_path / "p")
    security_file(profile, "client").write_text(json.dumps(
        {"ip": "127.0.0.1", "ports": {}, "key": "k"}))
    web_file(profile).write_text("{}")  # a stale one, from a controller that died
    off = IPControllerApp(web_port=-1)
    off.location = profile
    assert off.start_web() is None and not web_file(profile).exists()
    on = IPControllerApp(web_port=0)
    on.location = profile
    server = on.start_web()
    try:
        info = read_web_file(profile)
        assert info["url"] == server.url and info["token"] == web_token("k")
        assert info["url"] == f"http://127.0.0.1:{server.port}/#token={web_token('k')}"
    finally:
        server.stop()


# -- progress bars -------------------------------------------------------------------

class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_text_bar_on_a_terminal_redraws_one_line():
    out = Terminal()
    bar = progress.progress_bar(10, "f", widget=False, stream=out)
    bar.update(3, 1.5)
    bar.close(10, 2.0)
    first, last = out.getvalue().split("\r")[1:]
    assert first.startswith("f [#########.....................] 3/10 tasks, 2.0 tasks/s, 1.5 s")
    assert last.rstrip() == "f [##############################] 10/10 tasks, 5.0 tasks/s, 2.0 s"
    assert out.getvalue().endswith("\n") and out.getvalue().count("\n") == 1


def test_text_bar_in_a_log_writes_lines_not_redraws():
    out = io.StringIO()
    bar = progress.progress_bar(None, widget=False, stream=out)
    bar.update(1, 0.1)  # too soon for a log line
    bar.close(4, 125.0)
    assert out.getvalue() == "4 tasks, 0.0 tasks/s, 2:05\n"


def test_in_jupyter_the_bar_is_a_widget(monkeypatch):
    """With a notebook kernel and ipywidgets (both faked here), a widget is displayed."""
    import types
    shown = []
    widgets = types.SimpleNamespace(
        IntProgress=lambda **kw: types.SimpleNamespace(value=0, bar_style="", **kw),
        HTML=lambda: types.SimpleNamespace(value=""), HBox=lambda children: children)
    kernel = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "ipywidgets", widgets)
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: kernel))
    monkeypatch.setitem(sys.modules, "IPython.display",
                        types.SimpleNamespace(display=shown.append))
    bar = progress.progress_bar(8, "f")
    assert isinstance(bar, progress.WidgetBar) and shown == [bar.box]
    bar.update(2, 1.0)
    assert (bar.bar.value, bar.info.value) == (2, "2/8 tasks, 2.0 tasks/s, 1.0 s")
    bar.close(8, 2.0)
    assert bar.bar.bar_style == "success"
    assert isinstance(progress.progress_bar(8, widget=False), progress.TextBar)


def test_wait_interactive_and_map_progress(web, capsys):
    lview = web.rc.load_balanced_view()
    ar = lview.map_async(abs, range(-10, 10), chunksize=3)
    assert ar.wait_interactive(interval=0.05) is True
    assert "20/20 tasks" in capsys.readouterr().err
    assert lview.map_sync(abs, [-1, -2], progress=True) == [1, 2]
    assert "2/2 tasks" in capsys.readouterr().err
    assert sorted(lview.imap(abs, [-3, 4], progress=True)) == [3, 4]
    assert "abs [" in capsys.readouterr().err
    slow = lview.apply_async(__import__("time").sleep, 1)
    assert slow.wait_interactive(timeout=0.1) is False
    assert "0/1 tasks" in capsys.readouterr().err
    slow.wait(10)


def test_a_running_task_shows_running_and_the_status_filter_finds_it(web, page, tmp_path):
    gate = tmp_path / "gate"
    lview = web.rc.load_balanced_view()
    lview.label = "gated"
    ar = lview.apply_async(wait_for_file, str(gate), 60)
    msg_id = ar.msg_ids[0]
    try:
        # (the query may overtake the request, which goes on another socket)
        wait_until(lambda: [r["status"] for r in web.rc.db_query(
            {"msg_id": msg_id}, keys=["status"])] == ["running"], what="the task running")
        page.goto(f"{web.base}/?label=gated#token={web.server.token}")
        page.select_option("#f-status", "running")
        page.wait_for_function(
            "(id) => { const rows = [...document.querySelectorAll('#tasks tbody tr.task')];"
            " return rows.length === 1 && rows[0].dataset.msgId === id"
            " && rows[0].classList.contains('t-running'); }", arg=msg_id)
        assert "status=running" in page.url
    finally:
        gate.touch()
    assert ar.get(30)
    page.select_option("#f-status", "ok")
    page.wait_for_function(
        "(id) => { const rows = [...document.querySelectorAll('#tasks tbody tr.task')];"
        " return rows.length === 1 && rows[0].dataset.msgId === id"
        " && rows[0].classList.contains('t-ok'); }", arg=msg_id)
