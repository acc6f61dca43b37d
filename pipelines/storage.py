"""Where the lake's files live: the home's `lake/` folder, or an S3-compatible bucket under a prefix.

`lake_storage(home)` picks the place from the home's lake URL (`MUREKA_ETL_LAKE_URL`): unset, the local folder;
`s3://bucket/prefix`, the objects under that prefix, reached with the standard AWS variables (AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION), which pyarrow reads itself: no credential passes through
mureka-etl. Lake paths are `Path`s locally and `PurePosixPath`s ("bucket/prefix/...") on S3; the lake reads and
writes them through one pyarrow FileSystem, and DuckDB reads them through the same one (`register`).
"""

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath
from urllib.parse import urlsplit

import duckdb
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from fsspec.implementations.arrow import ArrowFSWrapper

from pipelines.config import Home

S3_SCHEME = "s3"


class LakeStorageError(ValueError):
    """The lake URL cannot be used; the message never repeats a credential."""


class _S3Wrapper(ArrowFSWrapper):
    """The lake's pyarrow S3 filesystem as fsspec sees it, under the `s3://` protocol DuckDB matches paths by."""

    protocol = S3_SCHEME


@dataclass(frozen=True)
class LakeStorage:
    """One pyarrow FileSystem and the lake's root in it; `url` names the lake in messages (never a credential)."""

    fs: pafs.FileSystem
    root: PurePath
    url: str
    local: bool

    def uri(self, path: PurePath) -> str:
        """`path` as DuckDB reads it: the local path, or `s3://bucket/key` (`register` lets DuckDB read those)."""
        return str(path) if self.local else f"{S3_SCHEME}://{path.as_posix()}"

    @property
    def root_uri(self) -> str:
        """The lake's root as DuckDB reads it (locally with symlinks resolved, as DuckDB checks allowed folders)."""
        return str(Path(self.root).resolve()) if self.local else self.uri(self.root)

    def register(self, con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
        """Let `con` read `s3://` lake paths through this filesystem (DuckDB reads local paths itself)."""
        if not self.local:
            con.register_filesystem(_S3Wrapper(self.fs))
        return con

    def info(self, path: PurePath) -> pafs.FileInfo:
        return self.fs.get_file_info(str(path))

    def is_file(self, path: PurePath) -> bool:
        return self.info(path).type == pafs.FileType.File

    def files(self, folder: PurePath, recursive: bool = False) -> Iterator[PurePath]:
        """The files under `folder` (none when it does not exist)."""
        selector = pafs.FileSelector(str(folder), allow_not_found=True, recursive=recursive)
        for found in self.fs.get_file_info(selector):
            if found.type == pafs.FileType.File:
                yield self._path(found.path)

    def parquet_file(self, path: PurePath) -> pq.ParquetFile:
        return pq.ParquetFile(self.fs.open_input_file(str(path)))

    def read_metadata(self, path: PurePath) -> pq.FileMetaData:
        return pq.read_metadata(str(path), filesystem=self.fs)

    def read_schema(self, path: PurePath) -> pa.Schema:
        return pq.read_schema(str(path), filesystem=self.fs)

    def version(self, path: PurePath) -> str:
        """The version of a file as the warehouse records it, "mtime_ns:size" locally, "<ETag>:size" on S3 (its
        modification time has whole seconds only); FileNotFoundError when absent."""
        if not self.local:
            metadata = self.fs.open_input_file(str(path)).metadata()  # one HEAD request
            etag = metadata["ETag"].decode().strip('"')
            return f"{etag}:{int(metadata['Content-Length'])}"
        return local_version(Path(path))

    def delete(self, path: PurePath) -> None:
        """Remove a file if it exists."""
        try:
            self.fs.delete_file(str(path))
        except FileNotFoundError:
            pass

    def put(self, path: PurePath, data: pa.Buffer) -> None:
        """Store a whole object at once (remote storage only): it becomes visible when its upload completes,
        so a reader sees all of it or the previous version, never a part."""
        with self.fs.open_output_stream(str(path)) as out:
            out.write(data)

    def _path(self, text: str) -> PurePath:
        return Path(text) if self.local else PurePosixPath(text)


def local_version(path: Path) -> str:
    """A local file's version, "mtime_ns:size": what the warehouse records of a local lake file and the inbox
    sensor of an id file; FileNotFoundError when absent."""
    stat = path.stat()
    return f"{stat.st_mtime_ns}:{stat.st_size}"


def lake_storage(home: Home) -> LakeStorage:
    """The storage of `home`'s lake: its local `lake/` folder, or the bucket its lake URL names."""
    return _storage(home.lake, home.lake_url)


@functools.lru_cache(maxsize=16)
def _storage(folder: Path, url: str | None) -> LakeStorage:
    if url is None:
        return LakeStorage(pafs.LocalFileSystem(), folder, str(folder), local=True)
    parts = urlsplit(url)
    if parts.scheme != S3_SCHEME or not parts.hostname:
        raise LakeStorageError("MUREKA_ETL_LAKE_URL must look like s3://bucket/prefix")
    if parts.username or parts.password or parts.query:
        raise LakeStorageError(
            "MUREKA_ETL_LAKE_URL must hold no credentials or options: give them in AWS_ACCESS_KEY_ID,"
            " AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL and AWS_REGION"
        )
    named = f"{S3_SCHEME}://{parts.hostname}/{parts.path.strip('/')}".rstrip("/")
    try:
        fs, root = pafs.FileSystem.from_uri(named)
        bucket = fs.get_file_info(parts.hostname)
    except (OSError, pa.ArrowException) as error:
        raise LakeStorageError(f"cannot reach the lake at {named}: {error}") from None
    if bucket.type != pafs.FileType.Directory:  # a listing of a missing bucket would read as an empty lake
        raise LakeStorageError(f"the lake's bucket {parts.hostname} does not exist or cannot be seen ({named})")
    return LakeStorage(fs, PurePosixPath(root), named, local=False)
