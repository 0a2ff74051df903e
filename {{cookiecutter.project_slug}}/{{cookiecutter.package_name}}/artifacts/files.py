"""A local artifact store, served read-only over HTTP, so the links in the Prefect UI open in a browser.

Browsers refuse `file://` links from a web page. `<package> serve-files` runs `file_server` on loopback and
link artifacts point at `storage.public_url` + the path inside the store (see `ArtifactStore.link`). Only
GET and HEAD are answered, only for files under the store root: a path with `..`, or one that resolves
(through a symlink) outside the root, is refused. S3 stores need no server: their links are presigned.
"""

from __future__ import annotations

import posixpath
from functools import partial
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# What the store holds, as a browser should show it (Markdown and Mermaid as text rather than a download).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".mmd": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css",
    ".js": "text/javascript",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".parquet": "application/vnd.apache.parquet",
    ".safetensors": "application/octet-stream",
}
DEFAULT_TYPE = "application/octet-stream"


def content_type(name: str) -> str:
    """The Content-Type a stored file is served (or presigned) with."""
    return CONTENT_TYPES.get(Path(name).suffix.lower(), DEFAULT_TYPE)


class StoreFilesHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of files under `directory`; no listings, no writes, nothing outside the root."""

    server_version = "artifact-store"
    extensions_map = {**CONTENT_TYPES, "": DEFAULT_TYPE}

    def send_head(self) -> Any:
        """Refuse paths that leave the store before the standard handler opens the file."""
        path = unquote(urlsplit(self.path).path)
        if ".." in path.split("/") or "\\" in path or "\x00" in path:
            self.send_error(HTTPStatus.FORBIDDEN, "path leaves the store")
            return None
        root = Path(self.directory).resolve()
        target = (root / posixpath.normpath(path).lstrip("/")).resolve()
        if not target.is_relative_to(root):  # a symlink pointing out of the store
            self.send_error(HTTPStatus.FORBIDDEN, "path leaves the store")
            return None
        if target.is_dir():
            # A folder with an index (GX Data Docs) opens as that page; the store is not browsable otherwise.
            if not (target / "index.html").is_file():
                self.send_error(HTTPStatus.NOT_FOUND, "no index.html in this folder")
                return None
            if not path.endswith("/"):  # so the page's relative links resolve inside the folder
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", path + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
        return super().send_head()

    def list_directory(self, path: Any) -> None:
        """Never list a folder: the store's layout is not for browsing."""
        self.send_error(HTTPStatus.NOT_FOUND, "no listings")
        return None

    def guess_type(self, path: Any) -> str:
        """The store's own types, so Markdown and Mermaid open as text rather than download."""
        return content_type(str(path))


def file_server(root: Path, host: str = "127.0.0.1", port: int = 4201) -> ThreadingHTTPServer:
    """An HTTP server for the files under `root` (not started: call `serve_forever`, `shutdown` to stop).

    Port 0 picks a free one (`server.server_address[1]`). The store may not exist yet: until the first run
    writes it, every request is a 404.
    """
    handler = partial(StoreFilesHandler, directory=str(Path(root).resolve()))
    return ThreadingHTTPServer((host, port), handler)
