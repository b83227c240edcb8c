"""Limits said out loud: a controller refuses engines past its descriptor limit or its
max_engines with a message naming the limit; the refused engine logs it, `ipcluster start`
prints it, rc.stats() reports the limit, and the engines already in keep working."""
import resource
import subprocess
import sys

import pytest
from conftest import LoopbackCluster, wait_until

from taskhub.controller import hubstate as hs
from taskhub.controller import limits


def test_the_hub_refuses_the_engine_past_its_limit_and_takes_one_after_a_departure():
    hub = hs.HubState(engine_limit=2, limit_reason="its max_engines setting is 2")
    hub.register("a", {}, 0.0)
    hub.register("b", {}, 0.0)
    with pytest.raises(hs.RegistrationError, match="takes at most 2 engines and has 2: its "
                                                   "max_engines setting is 2"):
        hub.register("c", {}, 0.0)
    hub.handle(hs.Unregister("a"))
    assert hub.register("c", {}, 0.0).id == 2  # room again; ids are never reused


def test_capacity_comes_from_the_descriptor_limit_or_max_engines():
    per, reserved = limits.FDS_PER_ENGINE, limits.RESERVED_FDS
    n, why = limits.engine_capacity(0, (reserved + 10 * per, 4096))
    assert n == 10 and f"file-descriptor limit of {reserved + 10 * per}" in why
    assert "ulimit -n" in why and "hard limit 4096" in why
    assert limits.engine_capacity(3, (reserved + 10 * per, 4096)) == \
        (3, "its max_engines setting is 3")
    assert limits.engine_capacity(50, (reserved + 10 * per, 4096))[0] == 10
    assert limits.engine_capacity(0, (10, 10))[0] == 0


def test_an_engine_past_max_engines_is_told_why_and_the_others_work(tmp_path):
    cluster = LoopbackCluster(tmp_path / "profile", n=2, max_engines=2).start()
    try:
        cluster.add_engine()
        extra = cluster.engines[-1]
        assert extra.wait(60) == 1
        log = (cluster.profile_dir / "log" / "engine-2.log").read_text()
        assert "takes at most 2 engines and has 2: its max_engines setting is 2" in log
        with cluster.client() as rc:
            stats = rc.stats()
            assert (stats["engines"], stats["engine_limit"]) == (2, 2)
            assert stats["engine_limit_reason"] == "its max_engines setting is 2"
            assert sorted(rc[:].apply_sync(lambda: 1)) == [1, 1]
    finally:
        cluster.stop()


def _lower_fd_limit(n):
    def apply():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


def test_ipcluster_start_prints_the_refusal_under_a_low_descriptor_limit(profile):
    # room for exactly 2 engines: the third is refused, and ipcluster says so at once
    fds = limits.RESERVED_FDS + 2 * limits.FDS_PER_ENGINE
    started = subprocess.run([sys.executable, "-m", "taskhub.cluster", "start", "--daemonize",
                              "-n", "3"], env=profile.env, capture_output=True, text=True,
                             timeout=120, preexec_fn=_lower_fd_limit(fds))
    assert started.returncode != 0
    assert "only 2 of 3 engines registered when 1 engine process(es) or job(s) had ended" \
        in started.stderr
    assert f"takes at most 2 engines and has 2: its file-descriptor limit of {fds} allows 2 " \
        "engines" in started.stderr
    wait_until(lambda: not profile.leftovers(), 30, what="the failed start to clean up")
