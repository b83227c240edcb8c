"""bench/uneven.py with its peers: the table, a peer that cannot be set up, and the drivers
run on a tiny workload.

The peer drivers run only for the peers whose venv is already installed under bench/.peers/
(installing ipyparallel, dask and Ray takes minutes: `python -m bench.uneven` does it on
first use); taskhub itself always runs through the same driver call, so the peer path is
covered even on a machine without peer venvs. Nothing here asserts a timing.
"""
import pytest

from bench import driver, uneven
from bench.peers import PEERS_DIR, PeerSetupError


def test_table_has_a_row_per_workload_and_a_column_per_setting_or_peer():
    ideals = {"pattern": 3.0, "sweep": 1.24}
    results = {"taskhub default": {"pattern": 3.3, "sweep": 1.3, "noop": 9000.0},
               "taskhub eager": {"pattern": 10.0, "sweep": 1.5, "noop": 10000.0},
               "Ray": "unavailable: pip install | failed"}
    lines = uneven.table(results, ideals, engines=4, repeat=3, noop_tasks=2000).splitlines()
    header = next(line for line in lines if line.startswith("| workload"))
    assert header.split(" | ")[1:] == ["taskhub default", "taskhub eager", "Ray |"]
    rows = {line.split(" | ")[0]: line.split(" | ")[1:] for line in lines
            if line.startswith("| ") and line is not header}
    assert rows["| pattern (3.00s)"] == ["3.30s (1.10x)", "10.00s (3.33x)",
                                         "unavailable: pip install / failed |"]
    assert rows["| 2000 no-op map, tasks/s"][:2] == ["9000 (0.90x eager)", "10000 (1.00x eager)"]


def test_a_peer_whose_venv_cannot_be_made_is_reported_unavailable(monkeypatch, tmp_path):
    def broken(venv):
        raise PeerSetupError("pip install ray failed: no network")
    monkeypatch.setattr(driver, "python_for", broken)
    got = uneven.run_peer("ray", {"sweep": [0.0]}, 1, 1, 1, tmp_path)
    assert got == "unavailable: pip install ray failed: no network"


INSTALLED = [p for p in ("ipp", "ipp-hwm0", "dask", "ray")
             if (PEERS_DIR / ("ipp" if p.startswith("ipp") else p) / ".installed").exists()]


@pytest.mark.parametrize("name", ["taskhub", *INSTALLED])
def test_a_driver_runs_the_uneven_workloads(name, tmp_path):
    loads = {"pattern": [0.05, 0.0, 0.0, 0.0], "sweep": [0.01 * i for i in range(3)]}
    got = uneven.run_peer(name, loads, engines=2, repeat=1, noop_tasks=20,
                          log_dir=tmp_path, timeout=120)
    assert isinstance(got, dict), got
    assert set(got) == {"pattern", "sweep", "noop"}
    assert all(v > 0 for v in got.values())
