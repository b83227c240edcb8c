"""What signing the buffers costs on big payloads: a `--mb` MB numpy array pushed to 2
engines and pulled back, this checkout against another revision, alternating rounds (as
bench/ab.py does for the map and apply_sync latency).

    .venv/bin/python -m bench.sign_cost --base main [--rounds 3] [--mb 100]

Each buffer is hashed once by its sender and once by each receiver that checks it (the
controller, then the engine or the client); HMAC-SHA256 runs at about 1.7 GB/s on a CPU with
SHA extensions. Prints each side's median and the ratio after/before.
"""
import argparse
import json
import statistics
import subprocess
import sys

from bench.ab import HERE, REPO, checkout

DRIVER = HERE / "ab_pushpull_driver.py"


def one_round(tree, mb):
    env = {"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, str(DRIVER), str(mb)], env=env, capture_output=True,
                         text=True, timeout=600, cwd=tree)
    if out.returncode != 0:
        raise RuntimeError(f"the driver failed in {tree}:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.sign_cost")
    p.add_argument("--base", required=True, help="the revision to compare against")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mb", type=int, default=100)
    args = p.parse_args(argv)
    sides = {"before": checkout(args.base), "after": REPO}
    rows = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, tree in sides.items():
            rows[name].append(one_round(tree, args.mb))
    med = {n: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for n, rs in rows.items()}
    print(f"{'':10} {f'push {args.mb} MB (ms)':>18} {f'pull {args.mb} MB (ms)':>18}")
    for name in sides:
        print(f"{name:10} {med[name]['push'] * 1e3:18.1f} {med[name]['pull'] * 1e3:18.1f}")
    print(f"{'ratio':10} {med['after']['push'] / med['before']['push']:18.3f} "
          f"{med['after']['pull'] / med['before']['pull']:18.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
