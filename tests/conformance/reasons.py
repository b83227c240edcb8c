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
    ("internals", "test_canning.py", "ipyparallel's canning layer (can/uncan, CannedArray): "
     "taskhub serializes with dill and pickle protocol 5 instead"),
    ("internals", "test_serialize.py", "ipyparallel's canning layer (see test_canning)"),
    ("internals", "test_dependency.py", "imports can/uncan (ipyparallel's canning layer)"),
    ("internals", "test_async.py", "ipyparallel._async.AsyncFirst (its sync/async method "
     "machinery)"),
    ("internals", "test_shellcmd.py", "ipyparallel.cluster.shellcmd (its remote shell "
     "protocol); taskhub's SSH launcher runs plain ssh commands"),
    ("internals", "test_util.py::test_disambiguate_ip", "ipyparallel.util.disambiguate_ip_address"),
    ("internals", "*::test_wait_for_send", "zmq MessageTracker on sends (track=True)"),
    ("internals", "*::test_*_tracked", "zmq MessageTracker on sends (track=True)"),
    ("internals", "test_apps.py::test_bind_kernel", "IPEngine.bind_kernel over ipykernel's "
     "kernel app: the notebook issue"),
    # -- IPython kernel behaviour: the notebook issue ----------------------------------------
    ("notebook", "*::test_data_pub*", "ipyparallel.datapub.publish_data / ar.data"),
    ("notebook", "*::test_await_data", "ipyparallel.datapub.publish_data / ar.data"),
    ("notebook", "*::test_*displaypub", "display() outputs of apply'd functions as "
     "ipyparallel shapes them"),
    ("notebook", "test_client.py::TestClient::test_activate*", "%px magics registered "
     "when the Client is made in IPython"),
    ("notebook", "*::test_execute_magic", "IPython magics in execute on the engine"),
    ("notebook", "*::test_magic_pylab", "IPython %pylab on the engine"),
    ("notebook", "test_magics.py::*::test_autopx_nonblocking", "an engine does not abort "
     "the execute requests queued behind one that failed (ipykernel's stop_on_error): "
     "each task runs on its own"),
    # -- missing features --------------------------------------------------------------------
    ("missing", "test_cluster.py::test_wait_for_engines_crash", "wait_for_engines raising "
     "EngineError when every engine process has ended (the Client does not know the "
     "cluster's processes; Cluster.start_and_connect does)"),
    ("internals", "test_slurm.py", "puts the IPython dir under /data/ (upstream CI's shared "
     "file system), which this machine has not"),
    ("internals", "test_ssh.py", "needs upstream CI's ssh server container (port 2222, "
     "/opt/conda/bin/python3)"),
    ("internals", "test_launcher.py", "collects ipyparallel's WindowsHPCLauncher at import "
     "(taskhub has no Windows HPC launcher)"),
    ("missing", "test_apps.py::test_ipcluster_*", "ipcluster subcommands and options as "
     "ipyparallel spells them (clean, --cluster-id, list -o json)"),
    ("missing", "*::test_compositeerror_truncate", "get_result of direct tasks the hub has "
     "not recorded yet (UnknownTaskError)"),
    ("missing", "*::test_signal_engines", "Client.send_signal"),
    ("missing", "*::test_display_output_error", "AsyncResult.wait_for_output (stdout and "
     "stderr of a task may arrive after its reply; taskhub has no end-of-output marker)"),
    ("missing", "*::test_owner_pop", "AsyncResult.wait_for_output (see above)"),
    ("missing", "*::test_importer", "DirectView.importer (imports sent on to the engines)"),
    ("missing", "test_asyncresult.py::*::test_error_engine_info_*",
     "CompositeError.elist's engine_info lacks engine_uuid"),
    ("missing", "test_client.py::TestClient::test_get_execute_result",
     "ExecuteReply has no value equality: the same result fetched twice gives two unequal "
     "objects"),
    ("missing", "test_lbview.py::TestLoadBalancedView::test_retries",
     "retries never returning to an engine that failed the task"),
]


def reason_for(nodeid, detail=""):
    """(kind, why) for a test that did not pass."""
    short = nodeid.split("ipyparallel/tests/", 1)[-1]
    for kind, pattern, why in REASONS:
        if fnmatch.fnmatch(short, pattern) or fnmatch.fnmatch(short, pattern + "::*"):
            return kind, why
    last = (detail or "").strip().splitlines()[-1:] or ["(no output)"]
    return "untriaged", last[0][:160].replace("`", "'")
