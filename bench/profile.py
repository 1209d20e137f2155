"""``python -m bench.profile``: where one ranked-matches request spends its time.

One gunicorn worker (one process, one thread) serves ``GET /demands/{id}/matches`` for the
benchmark demands of a world to one client, as case 1 measures it; after a warm-up, py-spy
samples that worker while the client keeps asking. Printed: requests served and their mean
wall time, then each function's inclusive share of the samples (a function counts once per
sample however deep it recurs), the largest first.

Needs py-spy (``pip install py-spy``; it is not a dependency of the product) and the world of
``python -m bench`` at that size (it is seeded if missing).
"""

from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.load import Gunicorn
from bench.matching import PER_PAGE
from bench.world import SIZES, admin_token, ensure_demands, prepare

WARMUP = 200
# "name (path/to/file.py:123)" -> "name (file.py)": lines differ per call site, the function not.
_FRAME = re.compile(r" \((?:.*/)?([^/:]+):\d+\)$")


def inclusive_shares(collapsed: str) -> tuple[int, Counter[str]]:
    """Total samples and, per function, the samples whose stack contains it."""
    total, shares = 0, Counter[str]()
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        shares.update({_FRAME.sub(r" (\1)", frame): int(count) for frame in set(stack.split(";"))})
    return total, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=SIZES, default="10k")
    parser.add_argument("--seconds", type=int, default=30, help="how long py-spy samples")
    parser.add_argument("--top", type=int, default=60, help="functions printed")
    args = parser.parse_args()
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")

    world = prepare(SIZES[args.size])
    demands = ensure_demands(world, 300)
    headers = {"Authorization": f"Bearer {admin_token(world)}", "Accept": "application/json"}
    with (
        Gunicorn(world.env(), workers=1, threads=1) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        worker = subprocess.run(  # noqa: S603
            ["pgrep", "-P", str(server.process.pid)],  # noqa: S607
            capture_output=True, text=True, check=True,
        ).stdout.split()[0]  # fmt: skip
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

        def ask(i: int) -> None:
            path = f"/api/v1/demands/{demands[i % len(demands)]}/matches?per_page={PER_PAGE}"
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            answer.read()
            assert answer.status == 200, answer.status

        for i in range(WARMUP):
            ask(i)
        output = Path(tmp) / "profile.txt"
        spy = subprocess.Popen(  # noqa: S603
            ["py-spy", "record", "--pid", worker, "--rate", "500", "--duration",  # noqa: S607
             str(args.seconds), "--format", "raw", "--output", str(output), "--nonblocking"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        served, started = 0, time.perf_counter()
        while spy.poll() is None:
            ask(served)
            served += 1
        elapsed = time.perf_counter() - started
        total, shares = inclusive_shares(output.read_text())

    each = 1000 * elapsed / served
    print(f"{args.size}: {served:,} requests in {elapsed:.1f} s, {each:.2f} ms each")
    print(f"{total:,} samples of the gunicorn worker (both its threads); inclusive shares:")
    for function, samples in shares.most_common(args.top):
        print(f"{100 * samples / total:6.1f} %  {function}")


if __name__ == "__main__":
    main()
