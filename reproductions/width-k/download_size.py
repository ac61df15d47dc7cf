"""How many bytes a sweep config downloads from Google's bucket (heads of simplified files).

    QUICKDRAW_MIRROR=../shared/quickdraw \\
        python3 reproductions/width-k/download_size.py reproductions/width-k/google-*.toml

Google's files are not here, so this measures stand-ins: for each category, a file of the
mirror's first 25 lines of it -- Google's own first lines, byte for byte (the mirror's
README) -- repeated past ``per_class`` lines, served by the loopback server of the tests
(``tests/http_mirror.py``) in the bucket's layout and fetched with the suite's head download
(``sketchgen.data.sources.resolve(..., limit=per_class)``) into a temporary cache. The
server counts the bytes it sends: what the download asks for beyond the lines it keeps is
the suite's own rule, and only the lines after the 25th are extrapolated (at the mean
length of the first 25).
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tests"))  # the loopback server of the tests
sys.path.insert(0, str(HERE))

from http_mirror import serve  # noqa: E402
from run import read_sweep  # noqa: E402

from sketchgen.config import from_toml  # noqa: E402
from sketchgen.data.download import DownloadOptions  # noqa: E402
from sketchgen.data.sources import resolve  # noqa: E402

GOOGLE_LINES = 25  # lines the mirror holds in Google's order for every category


def stand_in(source: Path, target: Path, lines: int) -> int:
    """Write Google's first lines of ``source`` repeated to ``lines`` lines (and some more,
    so the file is longer than any head); returns the bytes of the first ``lines``."""
    with open(source, "rb") as handle:
        first = list(itertools.islice(handle, GOOGLE_LINES))
    body = list(itertools.islice(itertools.cycle(first), lines + lines // 2 + GOOGLE_LINES))
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(body))
    return sum(map(len, body[:lines]))


def measure(config: str, mirror: Path) -> None:
    sweep = from_toml(config, read_sweep)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        kept = sum(stand_in(mirror / "full" / "simplified" / f"{name}.ndjson",
                            root / "mirror" / "full" / "simplified" / f"{name}.ndjson",
                            sweep.per_class) for name in sweep.categories)
        os.environ["SKETCHGEN_CACHE"] = str(root / "cache")
        options = DownloadOptions(progress=False)
        with serve(root / "mirror") as server:
            for name in sweep.categories:
                resolve(name, mirror=server.url, options=options, limit=sweep.per_class)
            sent = server.sent
    print(f"{config}: {len(sweep.categories)} categories x {sweep.per_class:,} simplified "
          f"lines: {kept / 1e6:,.1f} MB of lines, {sent / 1e6:,.1f} MB downloaded "
          f"({sent / kept - 1:+.1%}; the first request of a head is "
          f"{options.chunk_bytes:,} bytes)")


if __name__ == "__main__":
    for path in sys.argv[1:]:
        measure(path, Path(os.environ["QUICKDRAW_MIRROR"]))
