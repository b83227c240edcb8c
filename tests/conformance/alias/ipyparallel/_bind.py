"""Bind ipyparallel names to the taskhub objects that do the same job.

This package exists only for the conformance run (tests/conformance/run_upstream.py): it
lets ipyparallel's own test suite import `ipyparallel` and get taskhub. It implements no
behaviour and patches nothing; a name taskhub lacks is simply absent, so the upstream
test that needs it fails and is counted as missing.
"""
import importlib


def bind(namespace, module, names):
    """Copy `names` ("name" or "ipp_name=taskhub_name") from taskhub `module` into
    `namespace`, skipping those taskhub does not have."""
    try:
        source = importlib.import_module(module)
    except ImportError:
        return
    for spec in names.split():
        ours, _, theirs = spec.partition("=")
        if hasattr(source, theirs or ours):
            namespace[ours] = getattr(source, theirs or ours)
