"""Content-addressed artifact store on fsspec: a local directory by default, s3://bucket/prefix by config.

An artifact's id is the sha256 of its bytes, so storing identical bytes twice is a no-op and a reference names
exactly one content. Objects live at `<root>/objects/<id[:2]>/<id><suffix>`, and a reference records that path
relative to the root: a project (or its store) copied or moved elsewhere reads its own objects, never the
original's. Older references hold an absolute URI; they are read by their file name, in this store. Every
read checks the bytes against the id, and a put over an object whose bytes no longer match rewrites it.
Writes are atomic: a local write goes to a temporary file that is renamed into place; an S3 put is a single
object write. Human-readable outputs (reports) are written under `<root>/runs/...` by name and are not
content-addressed. Processes that share a store take turns through `lock(name)` (see `locks.py`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import fsspec
import polars as pl
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict

from ..canonical import canonical_json
from ..settings import StorageConfig
from . import files, locks

OBJECTS = "objects"


class ArtifactRef(BaseModel):
    """What tasks pass to each other: small, hashable and JSON-serialisable.

    `uri` is the object's path inside the store (`objects/ab/<id>.parquet`); `ArtifactStore.uri_of` and
    `link` turn it into a URI or a URL.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    uri: str
    kind: str
    size: int


class ArtifactCorrupted(IOError):
    """Stored bytes no longer hash to the id they were stored under."""


class StoreUnusable(ValueError):
    """The configured store cannot be one: a local `storage.uri` that is (or lies under) a file."""


class ArtifactStore:
    """Every run's artifacts and reports, in a local folder or on S3: nothing else reads or writes them."""

    def __init__(
        self,
        root: str,
        storage_options: dict[str, Any] | None = None,
        public_url: str | None = None,
        link_expiry_seconds: int = 86_400,
    ) -> None:
        self.fs, path = fsspec.core.url_to_fs(root, **(storage_options or {}))
        self._local = isinstance(self.fs, LocalFileSystem)
        self.root = str(local_root(path)) if self._local else path.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.link_expiry_seconds = link_expiry_seconds

    # -- content-addressed objects -------------------------------------------------------------------------

    def put_bytes(self, data: bytes, kind: str, suffix: str = "") -> ArtifactRef:
        """Store `data` under its sha256 (a no-op when it is there whole); `suffix` is the file extension."""
        digest = hashlib.sha256(data).hexdigest()
        relative = f"{OBJECTS}/{digest[:2]}/{digest}{suffix}"
        # An object already there is kept only if it is whole: a recomputed task repairs a damaged one.
        if not self._is_whole(relative, digest, len(data)):
            self._write(self._join(relative), data)
        return ArtifactRef(id=digest, uri=relative, kind=kind, size=len(data))

    def get_bytes(self, ref: ArtifactRef) -> bytes:
        """The object's bytes; ArtifactCorrupted if they no longer hash to its id."""
        data = self.fs.cat_file(self._join(self.locate(ref)))
        if hashlib.sha256(data).hexdigest() != ref.id:
            raise ArtifactCorrupted(f"{self.locate(ref)}: content does not match its id {ref.id}")
        return data

    def holds(self, ref: ArtifactRef) -> bool:
        """Whether the object is in the store with its full size (checked before a source is deleted)."""
        path = self._join(self.locate(ref))
        self.fs.invalidate_cache(path)  # s3fs caches listings: ask the store itself
        try:
            return self.fs.info(path)["size"] == ref.size
        except FileNotFoundError:
            return False

    def is_whole(self, ref: ArtifactRef) -> bool:
        """Whether the object is in the store and its bytes hash to its id (read in full, not kept)."""
        return self._is_whole(self.locate(ref), ref.id, ref.size)

    def locate(self, ref: ArtifactRef) -> str:
        """The object's path inside this store, from its id and file name.

        A reference made by an older version holds an absolute URI (`file:///old/place/objects/ab/<id>.x`):
        the object is looked up by that name here, so a moved store never reads the place it came from.
        """
        name = ref.uri.rsplit("/", 1)[-1]
        if not _is_digest(ref.id) or not name.startswith(ref.id):
            raise ValueError(f"not an object reference: {ref.uri} (id {ref.id})")
        return f"{OBJECTS}/{ref.id[:2]}/{name}"

    def objects(self) -> list[str]:
        """The path inside the store of every stored object, sorted (what `verify` reads)."""
        top = self._join(OBJECTS)
        if not self.fs.exists(top):
            return []
        prefix = f"{self.root}/"
        found = (self.fs._strip_protocol(p) for p in self.fs.find(top))
        return sorted(p.removeprefix(prefix) for p in found if not Path(p).name.startswith(".tmp-"))

    def read_bytes(self, relative: str) -> bytes:
        """A stored file's bytes by path inside the store, unchecked (objects: `get_bytes`)."""
        return self.fs.cat_file(self._join(relative))

    def exists(self, relative: str) -> bool:
        """Whether a path inside the store exists (file or folder)."""
        return bool(self.fs.exists(self._join(relative)))

    def digest(self, relative: str) -> str:
        """The sha256 of a stored file, read in chunks."""
        with self.fs.open(self._join(relative), "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    def put_frame(self, frame: pl.DataFrame, kind: str) -> ArtifactRef:
        """Store a frame as Parquet; the same frame always gives the same id."""
        buf = io.BytesIO()
        # Fixed writer options so the same frame always gives the same bytes, hence the same id.
        frame.write_parquet(buf, compression="zstd", compression_level=3, statistics=True)
        return self.put_bytes(buf.getvalue(), kind, ".parquet")

    def get_frame(self, ref: ArtifactRef) -> pl.DataFrame:
        """A frame stored by `put_frame`, its bytes checked against the id."""
        return pl.read_parquet(io.BytesIO(self.get_bytes(ref)))

    def put_json(self, obj: Any, kind: str) -> ArtifactRef:
        """Store `obj` as canonical JSON (sorted keys), so equal values share one id."""
        return self.put_bytes(canonical_json(obj), kind, ".json")

    def get_json(self, ref: ArtifactRef) -> Any:
        """A value stored by `put_json`, its bytes checked against the id."""
        return json.loads(self.get_bytes(ref))

    def put_file(self, source: Path, kind: str) -> ArtifactRef:
        """Store a local file's bytes, keeping its suffixes (`.tar.gz`) so the object opens as that format."""
        return self.put_bytes(Path(source).read_bytes(), kind, "".join(Path(source).suffixes))

    def fetch_file(self, ref: ArtifactRef, target: Path) -> Path:
        """Copy an artifact to a local file (for readers such as safetensors that want a path)."""
        target.write_bytes(self.get_bytes(ref))
        return target

    # -- named outputs ---------------------------------------------------------------------------------------

    def write_text(self, relative: str, text: str) -> str:
        """Write a human-readable output under the store root by name; returns its URI."""
        return self.write_bytes(relative, text.encode())

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Write bytes under the store root by name (atomically, replacing what is there); returns the URI."""
        path = self._join(relative)
        self._write(path, data)
        return self._uri(path)

    def write_tree(self, relative: str, directory: Path) -> str:
        """Copy a local folder (e.g. rendered HTML docs) under the store root; returns the folder's URI."""
        for file in sorted(p for p in directory.rglob("*") if p.is_file()):
            self.write_bytes(f"{relative}/{file.relative_to(directory).as_posix()}", file.read_bytes())
        return self.uri_of(relative)

    def read_text(self, relative: str) -> str:
        """A named output's text (UTF-8); FileNotFoundError if it was never written."""
        return self.fs.cat_file(self._join(relative)).decode()

    def list(self, relative: str) -> list[str]:
        """The entry names (not paths) of a folder inside the store, sorted; empty if it does not exist."""
        path = self._join(relative)
        if not self.fs.exists(path):
            return []
        return sorted(Path(p).name for p in self.fs.ls(path, detail=False))

    def uri_of(self, relative: str) -> str:
        """The full URI (`file://...`, `s3://...`) of a path inside the store, for messages and manifests."""
        return self._uri(self._join(relative))

    # -- links for people ------------------------------------------------------------------------------------

    def link(self, uri_or_relative: str) -> str:
        """A URL a browser opens for a stored file (a URI of this store, or a path inside it).

        Local store: `<public_url>/<path inside the store>`, served by `<package> serve-files`, or the
        `file://` URI when `public_url` is unset. S3: a presigned HTTPS GET that expires after
        `link_expiry_seconds`, answered with the file's content type so a report renders rather than
        downloads.
        """
        relative = self.relative(uri_or_relative)
        if not self._local:
            return self.fs.url(
                self._join(relative),
                expires=self.link_expiry_seconds,
                ResponseContentType=files.content_type(relative),
            )
        if self.public_url is None:
            return self.uri_of(relative)
        return f"{self.public_url}/{quote(relative)}"

    def relative(self, uri_or_relative: str) -> str:
        """The path inside the store of one of its URIs (a relative path is checked and returned)."""
        if "://" not in uri_or_relative:
            self._join(uri_or_relative)  # refuses absolute paths and `..`
            return uri_or_relative.strip("/")
        path = self._path(uri_or_relative)
        if self._local:
            path = str(Path(path).resolve())
        if not path.startswith(f"{self.root}/"):
            raise ValueError(f"{uri_or_relative} is not in the store {self.uri_of('')}")
        return path.removeprefix(f"{self.root}/")

    # -- coordination ----------------------------------------------------------------------------------------

    @contextmanager
    def lock(self, name: str, ttl: float = 60.0, wait: float = 600.0) -> Iterator[locks.Lease]:
        """Hold the store-wide lock `name` for the `with` block; raises `LockTimeout` after `wait` seconds.

        The holder refreshes it every ttl/3 seconds; a holder that died is replaced at once on its own host,
        after at most `ttl` seconds elsewhere. Call `check()` on the lease before publishing a result.
        """
        path = self._join(f"locks/{name}.lock")
        backend = locks.LocalBackend(path) if self._local else locks.S3Backend(self.fs, path)
        with locks.hold(backend, name, ttl, wait) as lease:
            yield lease

    # -- internals -------------------------------------------------------------------------------------------

    def _join(self, relative: str) -> str:
        parts = Path(relative).parts
        if Path(relative).is_absolute() or ".." in parts:
            raise ValueError(f"artifact path must stay inside the store: {relative!r}")
        return f"{self.root}/{relative}" if relative else self.root  # the root itself: no trailing slash

    def _uri(self, path: str) -> str:
        return Path(path).as_uri() if self._local else self.fs.unstrip_protocol(path)

    def _path(self, uri: str) -> str:
        return self.fs._strip_protocol(uri)

    def _is_whole(self, relative: str, digest: str, size: int) -> bool:
        path = self._join(relative)
        self.fs.invalidate_cache(path)  # s3fs caches listings: ask the store itself
        try:
            return self.fs.info(path)["size"] == size and self.digest(relative) == digest
        except FileNotFoundError:
            return False

    def _write(self, path: str, data: bytes) -> None:
        if not self._local:
            self.fs.pipe_file(path, data)  # one PUT: readers see the whole object or none
            return
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _is_digest(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def local_root(uri: str) -> Path:
    """A local store's root directory, made on first write; refused while it is, or lies under, a file
    (else listings come back empty and the first write fails deep inside a task)."""
    root = Path(uri.removeprefix("file://")).resolve()
    existing = next(p for p in (root, *root.parents) if p.exists())
    if not existing.is_dir():
        raise StoreUnusable(f"storage.uri {uri}: {existing} is a file, not a directory")
    return root


def open_store(cfg: StorageConfig) -> ArtifactStore:
    """The store the settings name, with S3 credentials and endpoint when given (else the default chain)."""
    options: dict[str, Any] = {}
    if cfg.uri.startswith("s3://"):
        if cfg.endpoint_url:
            options["client_kwargs"] = {"endpoint_url": cfg.endpoint_url}
        if cfg.access_key_id and cfg.secret_access_key:
            options["key"] = cfg.access_key_id.get_secret_value()
            options["secret"] = cfg.secret_access_key.get_secret_value()
    return ArtifactStore(cfg.uri, options, cfg.public_url, cfg.link_expiry_seconds)
