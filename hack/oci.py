#!/usr/bin/env python3
"""Push a directory as a Flux OCI artifact (what `flux push artifact` makes), with nothing but the
registry's HTTP API: one gzipped tar layer, Flux's media types, and the source/revision annotations.

    python hack/oci.py push DIR 127.0.0.1:5000/name:tag [--source URL] [--revision REV] [--plain-http]

A Flux OCIRepository pointing at the reference extracts the layer into its artifact.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import io
import json
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

CONFIG_MEDIA_TYPE = "application/vnd.cncf.flux.config.v1+json"
CONTENT_MEDIA_TYPE = "application/vnd.cncf.flux.content.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"


def tar_gz(files: dict[str, bytes]) -> bytes:
    """Files (path in the archive -> content) as a reproducible tar.gz: sorted, no owners, fixed times."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def directory_files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _request(method: str, url: str, data: bytes | None = None, content_type: str | None = None,
             ) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(url, data=data, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, dict(resp.headers)


def _upload(base: str, name: str, blob: bytes) -> str:
    digest = _digest(blob)
    _, headers = _request("POST", f"{base}/v2/{name}/blobs/uploads/", b"")
    location = urllib.parse.urljoin(f"{base}/", headers["Location"])
    sep = "&" if "?" in location else "?"
    _request("PUT", f"{location}{sep}digest={urllib.parse.quote(digest)}", blob, "application/octet-stream")
    return digest


def push(directory: Path, reference: str, *, source: str = "", revision: str = "", plain_http: bool = True) -> str:
    """Push and return the manifest's digest."""
    host, _, rest = reference.partition("/")
    name, _, tag = rest.rpartition(":")
    if not (host and name and tag):
        raise ValueError(f"reference {reference!r} is not HOST/NAME:TAG")
    base = f"{'http' if plain_http else 'https'}://{host}"
    layer, config = tar_gz(directory_files(directory)), b"{}"
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": _upload(base, name, config), "size": len(config)},
        "layers": [{"mediaType": CONTENT_MEDIA_TYPE, "digest": _upload(base, name, layer), "size": len(layer)}],
        "annotations": {
            "org.opencontainers.image.created": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "org.opencontainers.image.source": source,
            "org.opencontainers.image.revision": revision or tag,
        },
    }
    body = json.dumps(manifest, separators=(",", ":")).encode()
    _request("PUT", f"{base}/v2/{name}/manifests/{tag}", body, MANIFEST_MEDIA_TYPE)
    return _digest(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    ps = sub.add_parser("push")
    ps.add_argument("directory", type=Path)
    ps.add_argument("reference")
    ps.add_argument("--source", default="")
    ps.add_argument("--revision", default="")
    ps.add_argument("--tls", action="store_true", help="HTTPS instead of plain HTTP (loopback registries)")
    args = p.parse_args()
    print(push(args.directory, args.reference, source=args.source, revision=args.revision, plain_http=not args.tls))


if __name__ == "__main__":
    main()
