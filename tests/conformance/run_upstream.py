"""Run ipyparallel's own test suite against taskhub and print a per-file table.

    build/conformance/ipyparallel-9.2.0-py3-none-any.whl   (pip download --no-deps, cached)
    <tmp>/ipyparallel/            the alias package (tests/conformance/alias/ipyparallel):
                                  ipyparallel's names bound to taskhub's objects
    <tmp>/ipyparallel/tests/      upstream's tests, unpacked from the wheel, unedited, but for
                                  the fixture modules in REPLACED (they start taskhub's own
                                  ipcontroller / ipengine)
    pytest <tmp>/ipyparallel/tests  -p tally  ->  <tmp>/results.jsonl  ->  table

Usage: python tests/conformance/run_upstream.py [--json OUT] [--markdown OUT] [--failures]
                                                [-k EXPR] [FILE ...]
Nothing from the wheel is written outside build/ and the temporary folder.
"""
import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "9.2.0"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = ROOT / "build" / "conformance"
WHEEL = CACHE / f"ipyparallel-{VERSION}-py3-none-any.whl"
TESTS_PREFIX = "ipyparallel/tests/"
REPLACED = {"__init__.py": HERE / "fixtures" / "tests_init.py"}
# Upstream files left out of the run (none now: test_magics.py, the %px magics, runs since
# the notebook issue; named on the command line, an excluded file runs anyway).
EXCLUDED = {}
PER_TEST_TIMEOUT = 60  # s; ClusterTestCase arms its own 30 s alarm too
RUN_TIMEOUT = 900  # s for the whole run
PYTEST_INI = f"""[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
timeout = {PER_TEST_TIMEOUT}
addopts = -p no:cacheprovider -p tally -q -rN --continue-on-collection-errors
"""
COLUMNS = ("collected", "passed", "failed", "errors", "skipped")


def wheel():
    """The pinned wheel, downloaded once into build/conformance."""
    if not WHEEL.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q",
                        f"ipyparallel=={VERSION}", "-d", str(CACHE)], check=True)
    return WHEEL


def prepare(workdir):
    """Lay out the alias package with upstream's tests inside it; returns the tests dir."""
    package = workdir / "ipyparallel"
    shutil.copytree(HERE / "alias" / "ipyparallel", package,
                    ignore=shutil.ignore_patterns("__pycache__"))
    with zipfile.ZipFile(wheel()) as zf:
        for name in zf.namelist():
            if name.startswith(TESTS_PREFIX) and not name.endswith("/"):
                target = workdir / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(zf.read(name))
    tests = package / "tests"
    for name, replacement in REPLACED.items():
        shutil.copy(replacement, tests / name)
    (workdir / "pytest.ini").write_text(PYTEST_INI)
    return tests


def run(workdir, files, keyword):
    tests = prepare(workdir)
    results = workdir / "results.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(workdir), str(HERE)]),
               TASKHUB_DIR=str(workdir / "taskhub-home"), IPP_NONINTERACTIVE="1",
               TASKHUB_CONFORMANCE_RESULTS=str(results))
    env.pop("PYTEST_ADDOPTS", None)
    args = [sys.executable, "-m", "pytest", "-c", str(workdir / "pytest.ini"),
            "--rootdir", str(workdir)]
    args += [f"--ignore={tests / name}" for name in EXCLUDED if name not in files]
    if keyword:
        args += ["-k", keyword]
    args += [str(tests / f) for f in files] if files else [str(tests)]
    try:
        subprocess.run(args, cwd=workdir, env=env, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"conformance run stopped after {RUN_TIMEOUT} s; counting what finished")
    return read_results(results)


def _file_of(nodeid):
    return nodeid.split("::")[0].rsplit("/", 1)[-1]


def read_results(path):
    """{nodeid: {"file", "outcome", "detail"}} from the plugin's lines."""
    phases = collections.defaultdict(dict)
    collect_errors = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row["when"] == "collect" and row["outcome"] == "failed":
                collect_errors[row["nodeid"]] = row["detail"]
            else:
                phases[row["nodeid"]][row["when"]] = row
    tests = {nodeid: {"file": _file_of(nodeid), **_final(p)} for nodeid, p in phases.items()}
    for nodeid, detail in collect_errors.items():
        tests[nodeid] = {"file": _file_of(nodeid), "outcome": "collect-error", "detail": detail}
    return tests


def _final(p):
    """A test's outcome from its phases: a failed call is failed, any other failed phase an
    error (so a pass whose teardown broke does not count as a pass)."""
    if "call" in p and p["call"]["outcome"] == "failed":
        return {"outcome": "failed", "detail": p["call"]["detail"]}
    for when in ("setup", "teardown"):
        if when in p and p[when]["outcome"] == "failed":
            return {"outcome": "error", "detail": p[when]["detail"]}
    if any(row["outcome"] == "skipped" for row in p.values()):
        return {"outcome": "skipped", "detail": ""}
    if "call" in p and p["call"]["outcome"] == "passed":
        return {"outcome": "passed", "detail": ""}
    return {"outcome": "not-run", "detail": "collected but never finished (run cut short?)"}


def table(tests):
    """{file: {column: count}} and the totals."""
    per_file = collections.defaultdict(lambda: dict.fromkeys(COLUMNS, 0))
    key = {"passed": "passed", "failed": "failed", "error": "errors", "skipped": "skipped",
           "collect-error": "errors", "not-run": "errors"}
    for test in tests.values():
        row = per_file[test["file"]]
        row[key[test["outcome"]]] += 1
        if test["outcome"] != "collect-error":
            row["collected"] += 1
    total = {c: sum(row[c] for row in per_file.values()) for c in COLUMNS}
    return dict(sorted(per_file.items())), total


def format_table(per_file, total):
    lines = [f"{'file':28}" + "".join(f"{c:>11}" for c in COLUMNS)]
    for name, row in per_file.items():
        lines.append(f"{name:28}" + "".join(f"{row[c]:>11}" for c in COLUMNS))
    lines.append(f"{'TOTAL':28}" + "".join(f"{total[c]:>11}" for c in COLUMNS))
    return "\n".join(lines)


def markdown(per_file, total, tests):
    """The table and, per reason (tests/conformance/reasons.py), the upstream tests that
    do not pass, for docs/compatibility.md."""
    from reasons import reason_for
    lines = ["| file | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in per_file.items():
        lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in COLUMNS) + " |")
    lines.append("| **total** | " + " | ".join(f"**{total[c]}**" for c in COLUMNS) + " |")
    groups = collections.defaultdict(list)
    for nodeid, test in sorted(tests.items()):
        if test["outcome"] not in ("passed", "skipped"):
            groups[reason_for(nodeid, test["detail"])].append((nodeid, test["outcome"]))
    for (kind, why), members in sorted(groups.items(), key=lambda g: (g[0][0], -len(g[1]))):
        lines += ["", f"### {kind}: {why} ({len(members)})", ""]
        lines += [f"- `{nodeid.split('tests/', 1)[-1]}` ({outcome})" for nodeid, outcome in members]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="upstream test files (default: all)")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression")
    parser.add_argument("--json", help="write {per_file, total, tests} here")
    parser.add_argument("--failures", action="store_true", help="print each non-pass")
    parser.add_argument("--markdown", help="write the table and the failures by reason here")
    parser.add_argument("--from-json", help="report on an earlier run's --json, not a new run")
    opts = parser.parse_args(argv)
    if opts.from_json:
        tests = json.loads(Path(opts.from_json).read_text())["tests"]
    else:
        with tempfile.TemporaryDirectory(prefix="taskhub-conformance-") as tmp:
            tests = run(Path(tmp), opts.files, opts.keyword)
    per_file, total = table(tests)
    if opts.failures:
        for nodeid, test in sorted(tests.items()):
            if test["outcome"] not in ("passed", "skipped"):
                last = test["detail"].strip().splitlines()[-1:] or [""]
                print(f"{test['outcome']:13} {nodeid}  {last[0][:200]}")
    print(format_table(per_file, total))
    if opts.markdown:
        Path(opts.markdown).write_text(markdown(per_file, total, tests))
    if opts.json:
        Path(opts.json).write_text(json.dumps({"per_file": per_file, "total": total,
                                               "tests": tests}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
