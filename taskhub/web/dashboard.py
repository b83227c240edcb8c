"""`ipcluster dashboard`: print the web view's URL (token included) and open it in a browser.

    ipcluster dashboard [--profile P | --profile-dir D] [--no-browser]

The URL comes from the profile's security/taskhub-web.json, written by the controller when
its web view starts. A browser is opened only where there is a desktop to show it on;
elsewhere (ssh sessions, containers) the URL is printed for you to open, e.g. through an
ssh tunnel (`ssh -L PORT:127.0.0.1:PORT host`).
"""
import json
import os
import sys

from ..error import ConnectionFileError
from .webfile import read_web_file


def add_parser(commands, add_profile_options, run):
    """Add the `dashboard` command; `run(args)` carries it out (it knows the profile)."""
    dashboard = commands.add_parser("dashboard", help="print and open the web view's URL")
    add_profile_options(dashboard)
    dashboard.add_argument("--no-browser", action="store_true",
                           help="only print the URL, do not open a browser")
    dashboard.set_defaults(func=run)


def ready_line(profile_dir):
    """The line `ipcluster start` prints about the web view, or "" if there is none."""
    try:
        return f"  web:     {read_web_file(profile_dir)['url']}\n"
    except ConnectionFileError:
        return ""


def cmd_dashboard(args, profile_dir):
    try:
        info = read_web_file(profile_dir)
    except ConnectionFileError as e:
        sys.stderr.write(f"ipcluster: {e}\n")
        return 1
    problem = _answers(info)
    if problem:
        sys.stderr.write(f"ipcluster: the web view at {info['url'].split('?')[0]} does not "
                         f"answer ({problem}); is the cluster running?\n")
        return 1
    sys.stdout.write(info["url"] + "\n")
    sys.stdout.flush()
    if not args.no_browser and _has_desktop():
        import webbrowser  # here: ipcluster's other commands need neither it nor urllib
        webbrowser.open(info["url"])
    return 0


def _answers(info):
    """"" if the web view answers an authorized request, else what went wrong."""
    import urllib.error
    import urllib.request
    url = info["url"].split("#")[0].split("?")[0] + "api/engines"
    request = urllib.request.Request(url, headers={"Authorization": f"token {info['token']}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            json.load(response)
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        return str(getattr(e, "reason", e))
    return ""


def _has_desktop():
    # without one, webbrowser falls back to text browsers that would take over the terminal
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
