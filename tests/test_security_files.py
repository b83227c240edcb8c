"""Issue 14, files: nothing in a profile readable by others, no token in any log.

A real `ipcluster start` in a TASKHUB_DIR of the test's own: the profile and its
directories are 0700; tasks.db and its -wal/-shm, every log and pid/cluster.json are 0600.
Requests to the web view with the token in their query string — answered 200, 400, 403 and
404 — leave no trace of it in any log. A client warns when the connection file or the
profile is readable by others. The pieces (filemodes, the redaction) are also tested alone.
"""
import json
import os
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import warnings

import pytest

from taskhub import filemodes
from taskhub.client import Client
from taskhub.controller.db.sqlite import SQLiteDB
from taskhub.paths import ensure_profile_dir, security_file
from taskhub.web.auth import redacted

pytestmark = pytest.mark.timeout(180)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_new_profile_is_private_and_an_old_wide_one_is_narrowed(tmp_path):
    wide = tmp_path / "p"
    (wide / "log").mkdir(parents=True, mode=0o755)
    os.chmod(wide, 0o755)
    p = ensure_profile_dir(wide)
    assert {d.name: mode(d) for d in (p, p / "log", p / "pid", p / "security")} == \
        {"p": 0o700, "log": 0o700, "pid": 0o700, "security": 0o700}


def test_the_task_db_and_its_wal_files_are_0600(tmp_path):
    (tmp_path / "tasks.db-wal").write_bytes(b"")  # left wider by an older version
    os.chmod(tmp_path / "tasks.db-wal", 0o644)
    db = SQLiteDB(tmp_path / "tasks.db")
    db.open()
    try:
        db.add_record("m1", {"msg_id": "m1", "stdout": "password=hunter2"})
        files = sorted(f.name for f in tmp_path.iterdir())
        assert files == ["tasks.db", "tasks.db-shm", "tasks.db-wal"]
        assert {f: mode(tmp_path / f) for f in files} == dict.fromkeys(files, 0o600)
    finally:
        db.close()


def test_open_private_creates_0600_and_narrows(tmp_path):
    with filemodes.open_private(tmp_path / "new.log", "w") as f:
        f.write("x")
    (tmp_path / "old.log").write_text("x")
    os.chmod(tmp_path / "old.log", 0o644)
    filemodes.open_private(tmp_path / "old.log", "a").close()
    assert mode(tmp_path / "new.log") == mode(tmp_path / "old.log") == 0o600


@pytest.mark.parametrize("uri, shown", [
    ("/api/tasks?token=s3cret&status=bogus", "/api/tasks?token=REDACTED&status=bogus"),
    ("/?token=s3cret", "/?token=REDACTED"), ("/api/engines", "/api/engines"),
    ("/x?a=1&token=s3cret&token=again", "/x?a=1&token=REDACTED&token=REDACTED")])
def test_tokens_are_redacted_from_logged_urls(uri, shown):
    assert redacted(uri) == shown


def test_ipcluster_keeps_the_profile_private_and_tokens_out_of_logs(tmp_path):
    env = {**os.environ, "TASKHUB_DIR": str(tmp_path)}

    def ipcluster(*args):
        return subprocess.run([sys.executable, "-m", "taskhub.cluster", *args], env=env,
                              capture_output=True, text=True, timeout=90)

    started = ipcluster("start", "-n", "1", "--daemonize")
    profile = tmp_path / "profile_default"
    try:
        assert started.returncode == 0, started.stderr
        [url] = [line.split()[-1] for line in started.stdout.splitlines()
                 if line.strip().startswith("web:")]
        base, token = url.split("#token=")[0].rstrip("/"), url.split("#token=")[1]
        statuses = []
        for path in ("/api/engines", "/api/tasks", "/api/tasks?status=bogus", "/nowhere"):
            sep = "&" if "?" in path else "?"
            for given in (token, "0" * 64):
                try:
                    with urllib.request.urlopen(f"{base}{path}{sep}token={given}",
                                                timeout=30) as r:
                        statuses.append(r.status)
                except urllib.error.HTTPError as e:
                    statuses.append(e.code)
        assert {200, 400, 403, 404} <= set(statuses)
        client_file = security_file(profile, "client")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with Client(profile_dir=profile) as rc:
                assert rc.load_balanced_view().apply_sync(len, "abc") == 3
        assert not [w for w in caught if w.category is filemodes.ExposedProfileWarning]
        os.chmod(client_file, 0o644)
        os.chmod(profile, 0o755)
        with pytest.warns(filemodes.ExposedProfileWarning) as caught:
            Client(profile_dir=profile).close()
        assert sorted(str(w.message).split(" is ")[0] for w in caught
                      if w.category is filemodes.ExposedProfileWarning) == \
            [f"the connection file {client_file}", f"the profile {profile}"]
        os.chmod(client_file, 0o600)
        os.chmod(profile, 0o700)
        files = {p.relative_to(profile).as_posix(): mode(p) for p in profile.rglob("*")
                 if p.is_file() and not p.name.endswith("_config.py")}
    finally:
        stopped = ipcluster("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert mode(profile) == 0o700
    assert {"tasks.db", "pid/cluster.json"} <= set(files)
    assert any(f.startswith("log/") for f in files)
    assert {f: m for f, m in files.items() if m != 0o600} == {}
    logs = [p for p in profile.rglob("*.log")] + list((profile / "log").iterdir())
    assert logs and any("GET /api/tasks" in p.read_text(errors="replace") for p in logs)
    assert [p for p in logs if token in p.read_text(errors="replace")] == []
