"""`automl data upload`: put a local data set into the object store."""

from __future__ import annotations

import argparse
import os

from automl.cli.client import Context
from automl.cli.errors import CliError

CONTENT_TYPES = {
    ".csv": "text/csv",
    ".parquet": "application/vnd.apache.parquet",
    ".npz": "application/octet-stream",
}


def register(subparsers, common: argparse.ArgumentParser) -> None:
    """Add the `data` command and its subcommands."""
    data = subparsers.add_parser("data", help="upload data sets to the object store")
    commands = data.add_subparsers(dest="action", required=True, metavar="ACTION")

    upload = commands.add_parser("upload", parents=[common], help="upload a CSV, Parquet or NPZ file")
    upload.add_argument("file", metavar="FILE", help="local file to upload")
    upload.add_argument("--key", default="", help="object key (default: datasets/FILE NAME)")
    upload.set_defaults(func=upload_command)


def default_key(path: str) -> str:
    """Return the key a file is uploaded under by default: `datasets/{file name}`."""
    return f"datasets/{os.path.basename(path)}"


def upload(ctx: Context, path: str, key: str) -> str:
    """Upload a local file under `key`, creating the bucket when needed, and return its URI.

    Raises
    ------
    CliError
        When `path` is not a readable file or `key` is empty or ends with `/`.
    """
    if not os.path.isfile(path):
        raise CliError(f"{path} is not a file; give the path of a CSV, Parquet or NPZ file")
    if not key or key.endswith("/"):
        raise CliError(f"'{key}' is not an object key; use a key such as {default_key(path)}")
    content_type = CONTENT_TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")
    ctx.store.ensure_bucket()
    return ctx.store.put_file(key, path, content_type)


def upload_command(args, ctx: Context) -> int:
    """Upload a file and print its s3:// URI."""
    uri = upload(ctx, args.file, args.key or default_key(args.file))
    print(uri)
    return 0
