"""``depthlib synth`` and ``depthlib download``: the data sub-commands collected by :mod:`depthlib.cli`."""

from __future__ import annotations

import argparse
import pathlib
import sys


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r} must be HxW, e.g. 240x320") from None
    if h < 4 or w < 4:
        raise argparse.ArgumentTypeError(f"--size {text!r}: both sides must be >= 4")
    return h, w


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _out_folder(text: str) -> str:
    if pathlib.Path(text).exists() and not pathlib.Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is an existing file, not a folder")
    return text


def _run_synth(args: argparse.Namespace) -> int:
    from .writer import check_nyu_png_target, write_nyu_png

    try:
        # Checked before the first frame is rendered: an existing dataset is never touched without --overwrite.
        check_nyu_png_target(args.out, args.split, args.scene, args.overwrite)
    except FileExistsError as err:
        print(f"depthlib synth: {err}".replace("overwrite=True (`depthlib synth --overwrite`)", "--overwrite"),
              file=sys.stderr)
        return 2
    listing = write_nyu_png(args.out, args.n, args.size, args.seed, args.scene, args.split, batch=args.batch,
                            progress=not args.quiet, overwrite=args.overwrite, workers=args.threads)
    print(f"wrote {args.n} {args.scene} frames listed in {listing}; read them with "
          f"open_dataset('nyu_png', {str(args.out)!r}, split={args.split!r})")
    return 0


def _run_download(args: argparse.Namespace) -> int:
    from .download import DownloadError, download, list_manifests, load_manifest

    if args.list or args.name is None:
        for name in list_manifests():
            print(f"{name:14s} {load_manifest(name).description}")
        return 0
    try:
        dest = download(args.name, args.root, connect_timeout=args.timeout, progress=not args.quiet)
    except DownloadError as err:
        print(f"depthlib download {args.name}: {err}", file=sys.stderr)
        return 2
    print(f"{args.name} is ready in {dest}")
    return 0


def add_subcommands(subparsers) -> None:
    """Register ``synth`` and ``download`` on the ``depthlib`` command's sub-parsers."""
    p = subparsers.add_parser("synth", help="write procedural RGB-D frames in DenseDepth's nyu_data layout")
    p.add_argument("--out", required=True, type=_out_folder,
                   help="output folder (gets data/nyu2_<split>.csv); an existing dataset needs --overwrite")
    p.add_argument("--n", type=_positive_int, default=100, help="number of frames (default 100)")
    p.add_argument("--size", type=_size, default=(240, 320), help="HxW (default 240x320)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scene", choices=("indoor", "outdoor"), default="indoor")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="test: 16-bit mm depth pngs (default); train: 8-bit, 255 = 10 m")
    p.add_argument("--batch", type=_positive_int, default=8, help="frames rendered per batch (default 8)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="render threads (default: the number of CPU cores)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a dataset already in --out (its listing, frames and stale files)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run_synth)

    p = subparsers.add_parser("download", help="fetch a dataset's official archives (checksums, resume)")
    p.add_argument("name", nargs="?", help="dataset name; omit (or --list) to list them")
    p.add_argument("--root", default="data", help="where datasets go (default data/)")
    p.add_argument("--timeout", type=float, default=5.0, help="connect timeout in seconds (default 5)")
    p.add_argument("--list", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run_download)
