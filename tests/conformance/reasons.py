"""Why each upstream test that does not pass does not, for docs/compatibility.md.

REASONS: (kind, pattern, why), first match wins. `pattern` is an fnmatch pattern over the
node id (after "ipyparallel/tests/"). kind is one of:
    deliberate  taskhub does otherwise on purpose (docs/compatibility.md says why)
    missing     a feature taskhub lacks (yet)
    internals   the test drives ipyparallel internals taskhub has no counterpart of
    notebook    IPython-kernel behaviour: the notebook issue
A failure that no pattern explains is listed as "untriaged" with its last error line.
"""
import fnmatch

REASONS = [
    # -- deliberate differences --------------------------------------------------------------
    ("deliberate", "test_*db.py::*::test_pop_safe_find*",
     "find_records() without keys leaves the buffers out (they can be large); name "
     "'buffers' in keys to get them"),
    ("deliberate", "test_client.py::TestClient::test_resubmit_header",
     "headers carry their signer's sender id and sequence number (the no-replay rule, "
     "docs/security.md); a resubmission is signed by the hub, so those two keys differ "
     "from the original's besides msg_id and date"),
    ("deliberate", "test_client.py::TestClient::test_resubmit_badkey",
     "resubmit of an unknown msg_id raises UnknownTaskError (a KeyError) at once, "
     "not a RemoteError wrapping KeyError"),
    ("deliberate", "test_client.py::TestClient::test_wait_for_engines",
     "wait_for_engines returns the engine ids rather than None"),
    ("deliberate", "test_client.py::TestClient::test_resubmit_inflight",
     "resubmit of a task still running is refused (ValueError): resubmitting runs a task "
     "again, which it has not finished doing"),
    ("deliberate", "*::test_use_cloudpickle", "no cloudpickle strategy: use_dill() (the "
     "default) carries the same functions"),
    ("deliberate", "*::test_cloudpickle_push_pull", "no cloudpickle strategy (see above)"),
    ("deliberate", "test_client.py::TestClient::test_curve",
     "the connection file of a loopback cluster carries a key, CurveZMQ keys only off "
     "loopback"),
    # -- ipyparallel internals ---------------------------------------------------------------
    ("internals", "test_client.py::TestClient::test_view_indexing",
     "uses Client._build_targets (private)"),
    ("internals", "test_client.py::TestClient::test_targets", "uses Client._build_targets"),
    ("internals", "test_asyncresult.py::TestAsyncResult::test_not_single_result",
     "patches Client._build_targets"),
    ("internals", "test_client.py::TestClient::test_ids_list", "reads Client._ids"),
    ("internals", "test_client.py::TestClient::test_purge_everything",
     "reads Client.session.digest_history (jupyter_client's Session)"),
    ("internals", "test_client.py::TestClient::test_outstanding",
     "reads Client._outstanding_dict"),
    ("internals", "test_client.py::TestClient::test_*hostname*",
     "patches ipyparallel.util / socket lookups of the connection-file hostname check"),
    ("internals", "test_client.py::TestClient::test_local_ip_true*",
     "patches ipyparallel.util / socket lookups of the connection-file hostname check"),
    ("internals", "test_async.py", "ipyparallel._async.AsyncFirst (its sync/async method "
     "machinery)"),
    ("internals", "test_shellcmd.py", "ipyparallel.cluster.shellcmd (its remote shell "
     "protocol); taskhub's SSH launcher runs plain ssh commands"),
    ("internals", "test_util.py::test_disambiguate_ip", "ipyparallel.util.disambiguate_ip_address"),
    ("internals", "*::test_wait_for_send", "injects a delay through Client._io_loop "
     "(ipyparallel's tornado IO loop)"),
    ("internals", "*::test_scatter_tracked", "waits on AsyncResult._sent_event (private)"),
    ("internals", "test_apps.py::test_bind_kernel", "IPEngine.bind_kernel over ipykernel's "
     "kernel app: the notebook issue"),
    # -- IPython kernel behaviour: the notebook issue ----------------------------------------
    ("notebook", "test_client.py::TestClient::test_activate*", "%px magics registered "
     "when the Client is made in IPython"),
    ("notebook", "*::test_execute_magic", "IPython magics in execute on the engine"),
    ("notebook", "*::test_magic_pylab", "IPython %pylab on the engine"),
    ("deliberate", "test_launcher.py::test_entrypoints*", "taskhub's launchers are entry "
     "points of the taskhub.controller_launchers / taskhub.engine_launchers groups; under "
     "ipyparallel's group names an installed ipyparallel would load them as its own"),
    ("deliberate", "test_apps.py::test_ipcluster_start_stop*", "taskhub's profiles live "
     "under $TASKHUB_DIR, not in IPython's profile directories: the test looks for the "
     "cluster file in $IPYTHONDIR/profile_default"),
    ("deliberate", "test_apps.py::test_ipcluster_clean", "taskhub's profiles live under "
     "$TASKHUB_DIR, not in IPython's profile directories ('ipcluster clean' cleans "
     "taskhub's: its logs, record and connection files)"),
    ("deliberate", "test_apps.py::test_ipcluster_list", "'ipcluster list' shows profile, "
     "controller, engines alive/recorded and running|stale (ipyparallel: cluster id, "
     "running, engine count, launcher) and has no '-o json'"),
    ("internals", "test_launcher.py::test_ssh_waitpid", "ipyparallel's remote shell "
     "protocol helpers (ssh_waitpid); taskhub's SSH launcher runs plain ssh commands"),
    ("notebook", "test_cluster.py::test_wait_for_engines_crash", "crashes the engines "
     "through PYTHONSTARTUP, which IPython kernels run and taskhub's engines (plain Python "
     "processes) do not, so no engine crashes"),
    ("notebook", "test_magics.py::*::test_autopx_nonblocking", "an engine does not abort "
     "the execute requests queued behind one that failed (ipykernel's stop_on_error): "
     "each task runs on its own"),
    # -- missing features --------------------------------------------------------------------
    ("internals", "test_slurm.py", "puts the IPython dir under /data/ (upstream CI's shared "
     "file system), which this machine has not"),
    ("internals", "test_ssh.py", "needs upstream CI's ssh server container (port 2222, "
     "/opt/conda/bin/python3)"),
    ("missing", "*::test_compositeerror_truncate", "get_result of direct tasks the hub has "
     "not recorded yet (UnknownTaskError)"),
]


def reason_for(nodeid, detail=""):
    """(kind, why) for a test that did not pass."""
    short = nodeid.split("ipyparallel/tests/", 1)[-1]
    for kind, pattern, why in REASONS:
        if fnmatch.fnmatch(short, pattern) or fnmatch.fnmatch(short, pattern + "::*"):
            return kind, why
    last = (detail or "").strip().splitlines()[-1:] or ["(no output)"]
    return "untriaged", last[0][:160].replace("`", "'")
