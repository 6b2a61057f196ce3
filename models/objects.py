"""The object layer under the artifact store: named byte strings (keys such as `models/<id>/manifest.json`), kept in
a local directory or in S3-compatible object storage. `models/store.py` and `models/registry.py` are written once on
top of it, so that the two backends cannot drift.

What the layer promises, on both backends:

- `put` replaces an object whole: a reader sees the old bytes or the new ones, never a torn object.
- `put_new` creates an object only when none is there (If-None-Match: *): of two writers, exactly one wins. Models,
  datasets and name registries appear by such a create-only write of their manifest, made last.
- `get_versioned` answers the bytes with their ETag, and `put_if` writes only while that ETag is still current
  (If-Match: <etag>), a compare-and-swap: a read-modify-write that lost the race writes nothing, and reads again.
- `lock` is an exclusive lock held across processes and machines (a flock here, a lease object on S3); only the two
  locks that are not read-modify-writes use it (a dataset against its deletion, a classifier trained once).

Local directory (`LocalObjects`): a key is a path under the root, so an existing store reads as before. `put` writes a
temporary file, fsyncs it and renames it into place; `put_new` links the temporary file to the key (`link(2)` fails
when the name exists); `put_if` compares and writes under a flock on `.lock` beside the object (the lock files of
earlier versions: `trainings/<id>/.lock`, `names/<name>/.lock`), its ETag being a hash of the content.

S3 (`S3Objects`) uses boto3: AWS's own, well-kept SDK, whose botocore sends PutObject's conditional writes
(`IfNoneMatch`, `IfMatch`; botocore >= 1.36 for the checksum settings below) and reads the standard AWS environment
and credential chain; it installs from this project's package indexes (obstore does too, but is a younger wrapper
with nothing boto3 lacks here). The endpoint needs conditional writes: AWS S3 (If-None-Match since August 2024,
If-Match since November 2024), MinIO (both since 2024), and moto (the tests) have them. Endpoint, region and
credentials come from `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`), `AWS_REGION`/`AWS_DEFAULT_REGION`,
`AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or any other source of boto3's credential chain).

`ReadCache` keeps local copies of objects that never change under their key (model weights, dataset arrays), bounded
in bytes, least recently used first out.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

Lock = contextlib.AbstractContextManager[None]

log = logging.getLogger("genserve.store")

STALE_TMP_AGE_S = 3600
S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?\Z")
_BAD_KEY = re.compile(r"(?:\A|/)\.{1,2}(?:/|\Z)|\A/|//|\x00")
T = TypeVar("T")


class ObjectStoreError(OSError):
    """The object storage failed to answer (network, permissions, a missing bucket): an OSError, like a disk's."""


@dataclass(frozen=True)
class Entry:
    """A listed object: its key and a version token that changes whenever the object does (S3: the ETag)."""

    key: str
    version: str


def check_key(key: str) -> str:
    """Keys are relative, slash-separated, without empty, `.` or `..` segments: never outside the store."""
    if not key or _BAD_KEY.search(key):
        raise ValueError(f"not a valid object key: {key!r}")
    return key


def cas_pause(attempt: int) -> None:
    """A jittered, growing pause before a compare-and-swap that lost the race reads again (no lock-step retries)."""
    time.sleep(random.uniform(0, min(0.25, 0.002 * 2**attempt)))


def content_etag(data: bytes) -> str:
    """The ETag of the local backend: a hash of the content (S3 answers the MD5 of a single-part object)."""
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


class Objects(ABC):
    """Named byte strings; see the module's docstring for what each operation promises."""

    location: str  # where, for logs: a directory or s3://bucket/prefix

    @abstractmethod
    def put(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def put_new(self, key: str, data: bytes) -> bool:
        """Create the object; False (and nothing written) when it exists."""

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""

    @abstractmethod
    def get_versioned(self, key: str) -> tuple[bytes, str]:
        """(bytes, ETag); FileNotFoundError when there is none."""

    @abstractmethod
    def put_if(self, key: str, data: bytes, etag: str) -> bool:
        """Replace the object only while its ETag is `etag`; False (nothing written) when it changed or is gone."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str, leaf: str | None = None) -> list[Entry]:
        """The objects under `prefix` (which ends with '/'); with `leaf`, only `<prefix><one segment>/<leaf>`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object (nothing when it is not there)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Remove every object under `prefix` (which ends with '/')."""

    @abstractmethod
    def lock(self, key: str, *, create: bool = True, best_effort: bool = False) -> Lock:
        """An exclusive lock named `key`, across processes and machines. `create=False`: FileNotFoundError when the
        local backend has nothing at `key` to lock (the lock is the object itself); `best_effort`: go on unlocked
        where the storage offers no locks."""

    def local_path(self, key: str) -> Path | None:
        """The file that holds the object, for backends that keep files (readers may map it); None otherwise."""
        return None

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The objects that exist among `keys` (missing ones left out)."""
        out = {}
        for key in keys:
            with contextlib.suppress(FileNotFoundError):
                out[key] = self.get(key)
        return out


# --- the local directory ------------------------------------------------------------------------------------------

# Lock files this process holds open. A flock belongs to the open file, which a fork() shares with the child: a work
# horse forked while another thread held a lock would hold it for as long as it lives. The child closes its copies at
# once, so the lock stays the parent's alone.
_HELD_LOCK_FDS: set[int] = set()


def _close_inherited_lock_fds() -> None:
    for fd in list(_HELD_LOCK_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCK_FDS.clear()


os.register_at_fork(after_in_child=_close_inherited_lock_fds)


@contextlib.contextmanager
def flocked(fd: int, best_effort: bool = False) -> Iterator[None]:
    """Hold an exclusive flock on an open descriptor (closed, and the lock released, on exit); a child forked
    meanwhile does not keep it (`_HELD_LOCK_FDS`). `best_effort`: go on unlocked where the file system refuses."""
    _HELD_LOCK_FDS.add(fd)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            if not best_effort:
                raise
        yield
    finally:
        _HELD_LOCK_FDS.discard(fd)
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_temp(path: Path, data: bytes, make_parents: bool = True) -> str:
    """`data` in a fsynced temporary file beside `path` (its name starts with a dot: never listed)."""
    if make_parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_bytes(path: Path, data: bytes, make_parents: bool = True) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    tmp = _write_temp(path, data, make_parents)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _version(st: os.stat_result) -> str:
    """A local file's version: every write renames a new file into place, so its inode changes with its content."""
    return f"{st.st_mtime_ns}:{st.st_size}:{st.st_ino}"


class LocalObjects(Objects):
    """Objects as files under one directory (a shared file system serves many machines: NFS, EFS, CephFS)."""

    def __init__(self, root: Path | str, folders: tuple[str, ...] = ()) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self._prefix = os.path.join(self.root, "")  # a str: exists() runs on every sample request
        for sub in (*folders, "tmp", "trash"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._sweep()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def _sweep(self) -> None:
        """Remove what a crashed writer left in tmp/ (after an hour) and trash/."""
        now = time.time()
        for sub in ("tmp", "trash"):
            for entry in (self.root / sub).iterdir():
                with contextlib.suppress(OSError):
                    if sub == "trash" or now - entry.stat().st_mtime > STALE_TMP_AGE_S:
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def put(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)

    def put_new(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        tmp = _write_temp(path, data)
        try:
            os.link(tmp, path)  # atomic, and refuses an existing name
        except FileExistsError:
            return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        _fsync_dir(path.parent)
        return True

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        data = self.get(key)
        return data, content_etag(data)

    def put_if(self, key: str, data: bytes, etag: str) -> bool:
        path = self._path(key)
        try:
            fd = os.open(path.parent / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:
            return False  # its directory is gone: so is the object
        with flocked(fd):
            try:
                current = path.read_bytes()
            except FileNotFoundError:
                return False
            if content_etag(current) != etag:
                return False
            try:
                atomic_write_bytes(path, data, make_parents=False)  # never brings back a deleted record's directory
            except FileNotFoundError:
                return False
            return True

    def exists(self, key: str) -> bool:
        return os.path.exists(self._prefix + check_key(key))

    def list(self, prefix: str, leaf: str | None = None) -> list[Entry]:
        base = self._path(prefix.rstrip("/"))
        out = []
        if leaf is not None:  # one directory scan and a stat each
            try:
                with os.scandir(base) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                            st = os.stat(os.path.join(entry.path, leaf))
                            out.append(Entry(f"{prefix}{entry.name}/{leaf}", _version(st)))
            except FileNotFoundError:
                pass
            return out
        for directory, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = os.path.relpath(directory, self.root)
            for name in files:
                if name.startswith("."):  # lock files, temporary files
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(os.path.join(directory, name))
                    out.append(Entry(f"{rel}/{name}", _version(st)))
        return out

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> None:
        """Rename the directory into trash/ (it is gone at once), then delete its files."""
        path = self._path(prefix.rstrip("/"))
        trash = self.root / "trash" / f"{path.name}-{secrets.token_hex(4)}"
        try:
            os.rename(path, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def lock(self, key: str, *, create: bool = True, best_effort: bool = False) -> Lock:
        path = self._path(key)
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        else:
            fd = os.open(path, os.O_RDONLY)  # a directory too: the lock leaves no file behind
        return flocked(fd, best_effort)

    def local_path(self, key: str) -> Path:
        return self._path(key)


# --- S3-compatible object storage ---------------------------------------------------------------------------------

LEASE_TTL_S = 30.0
LOCKS_PREFIX = "locks/"  # S3 lease objects; the local backend locks files instead
GET_MANY_THREADS = 16
WRITE_ID = "genserve-write-id"  # object metadata: which conditional write put the object there


_SESSION: tuple[int, Any] | None = None
_SESSION_LOCK = threading.Lock()


def _new_session_lock() -> None:
    global _SESSION_LOCK
    _SESSION_LOCK = threading.Lock()  # a fork while another thread held it would leave the child's copy held


os.register_at_fork(after_in_child=_new_session_lock)


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket/prefix`; the prefix is '' or ends with '/'."""
    match = S3_URL.match(url)
    if match is None:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    prefix = (match.group(2) or "").strip("/")
    if prefix:
        check_key(prefix)
    return match.group(1), f"{prefix}/" if prefix else ""


def _code(exc: Exception) -> tuple[str, int]:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")), int(
        response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    )


class S3Objects(Objects):
    """Objects in a bucket, under a prefix. One boto3 client per process (clients are thread-safe, not fork-safe: a
    forked work horse makes its own)."""

    def __init__(self, url: str) -> None:
        self.bucket, self.prefix = parse_s3_url(url)
        self.location = f"s3://{self.bucket}/{self.prefix}"
        self._client_of: tuple[int, Any] | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> Any:
        held = self._client_of
        if held is not None and held[0] == os.getpid():
            return held[1]
        with self._client_lock:
            held = self._client_of
            if held is None or held[0] != os.getpid():
                held = (os.getpid(), self._new_client())
                self._client_of = held
            return held[1]

    @staticmethod
    def preload() -> None:
        """Import everything an S3 client needs, by making one (no request is sent). A process that forks (the RQ
        worker) calls this in its main thread before it starts any other: a fork while another thread is in the
        middle of importing boto3 or botocore leaves the child waiting for that module's import lock forever."""
        S3Objects._new_client()

    @staticmethod
    def _new_client() -> Any:
        import boto3
        from botocore.config import Config

        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
        config = Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=GET_MANY_THREADS * 2,
            # Path-style addressing where an endpoint is named (MinIO, Ceph, moto: no per-bucket DNS names).
            s3={"addressing_style": "path"} if endpoint else {},
            # Checksums only where S3 requires them: S3-compatible stores do not all accept the trailing CRCs that
            # botocore >= 1.36 sends by default.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        global _SESSION
        with _SESSION_LOCK:  # sessions are not thread-safe; one per process (its loaded service models are reused)
            if _SESSION is None or _SESSION[0] != os.getpid():
                _SESSION = (os.getpid(), boto3.session.Session())
            return _SESSION[1].client("s3", endpoint_url=endpoint, region_name=region, config=config)

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _call(self, method: str, **kwargs: Any) -> Any:
        """One S3 call; a missing object is FileNotFoundError, other failures ObjectStoreError (an OSError)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client, method)(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            code, status = _code(exc)
            if code in ("NoSuchKey", "NotFound", "404") or (status == 404 and code != "NoSuchBucket"):
                raise FileNotFoundError(kwargs.get("Key", "")) from None
            if status in (409, 412) and ("IfMatch" in kwargs or "IfNoneMatch" in kwargs):
                raise _Conflict(status) from None
            raise ObjectStoreError(f"{self.location}: {method} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise ObjectStoreError(f"{self.location}: {method} failed: {exc}") from exc

    def _put(self, key: str, data: bytes, **condition: str) -> str | None:
        """A conditional PutObject; its new ETag, or None when the condition did not hold.

        Each write carries a random id in its metadata. A write whose first attempt went through but whose answer
        was lost is retried by botocore and then refused (412) by its own first attempt: finding our id on the
        object tells that case from a genuine conflict. (Equal bytes would not: another writer may have written
        the same record.)"""
        write_id = secrets.token_hex(8)
        for attempt in range(8):
            try:
                response = self._call(
                    "put_object", Key=self._k(key), Body=data, Metadata={WRITE_ID: write_id}, **condition
                )
                return str(response["ETag"])
            except _Conflict as exc:
                if exc.status == 412:
                    break
                cas_pause(attempt)  # 409: raced another conditional write of the key; S3 asks for a retry
            except FileNotFoundError:  # If-Match on a missing object
                return None
        try:
            head = self._call("head_object", Key=self._k(key))
        except FileNotFoundError:
            return None
        return str(head["ETag"]) if head.get("Metadata", {}).get(WRITE_ID) == write_id else None

    def put(self, key: str, data: bytes) -> None:
        self._call("put_object", Key=self._k(key), Body=data)

    def put_new(self, key: str, data: bytes) -> bool:
        return self._put(key, data, IfNoneMatch="*") is not None

    def get(self, key: str) -> bytes:
        return self.get_versioned(key)[0]

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        response = self._call("get_object", Key=self._k(key))
        with contextlib.closing(response["Body"]) as body:
            return body.read(), str(response["ETag"])

    def put_if(self, key: str, data: bytes, etag: str) -> bool:
        return self._put(key, data, IfMatch=etag) is not None

    def exists(self, key: str) -> bool:
        try:
            self._call("head_object", Key=self._k(key))
        except FileNotFoundError:
            return False
        return True

    def _list(self, prefix: str) -> Iterator[tuple[str, str]]:
        """(key, ETag) under a prefix, the store's own prefix taken off."""
        token: str | None = None
        while True:
            page = self._call(
                "list_objects_v2", Prefix=self._k(prefix), **({"ContinuationToken": token} if token else {})
            )
            for item in page.get("Contents", []):
                yield str(item["Key"])[len(self.prefix) :], str(item["ETag"])
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def list(self, prefix: str, leaf: str | None = None) -> list[Entry]:
        out = []
        for key, etag in self._list(prefix):
            rest = key[len(prefix) :]
            if leaf is not None:
                head, _, tail = rest.partition("/")
                if not head or tail != leaf:
                    continue
            out.append(Entry(key, etag))
        return out

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        def one(key: str) -> tuple[str, bytes | None]:
            try:
                return key, self.get(key)
            except FileNotFoundError:
                return key, None

        if len(keys) <= 1:
            return super().get_many(keys)
        with ThreadPoolExecutor(max_workers=min(GET_MANY_THREADS, len(keys))) as pool:
            return {k: v for k, v in pool.map(one, keys) if v is not None}

    def delete(self, key: str) -> None:
        self._call("delete_object", Key=self._k(key))

    def delete_prefix(self, prefix: str) -> None:
        keys = [key for key, _ in self._list(prefix)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            response = self._call(
                "delete_objects", Delete={"Objects": [{"Key": self._k(k)} for k in chunk], "Quiet": True}
            )
            if response.get("Errors"):
                raise ObjectStoreError(f"{self.location}: could not delete {response['Errors'][:3]}")

    def lock(self, key: str, *, create: bool = True, best_effort: bool = False) -> Lock:
        return _Lease(self, LOCKS_PREFIX + check_key(key), LEASE_TTL_S)


class _Conflict(Exception):
    """A conditional write refused (412), or one that raced another conditional write to the key (409)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Lease:
    """An exclusive lock on S3: a lease object created only when absent (If-None-Match), renewed by a thread every
    third of its time to live by a compare-and-swap on its ETag, taken over by a compare-and-swap once it has expired
    (its holder died), removed on release. The expiry is the holder's clock: machines need clocks within seconds."""

    def __init__(self, objects: S3Objects, key: str, ttl_s: float) -> None:
        self.objects, self.key, self.ttl_s = objects, key, ttl_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
        self.etag: str | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "expires": time.time() + self.ttl_s}).encode()

    def _try(self) -> bool:
        self.etag = self.objects._put(self.key, self._body(), IfNoneMatch="*")
        if self.etag is not None:
            return True
        try:
            raw, etag = self.objects.get_versioned(self.key)
        except FileNotFoundError:
            return False  # released meanwhile: try again at once
        try:
            expires = float(json.loads(raw)["expires"])
        except (ValueError, KeyError, TypeError):
            expires = 0.0  # unreadable: treat as expired
        if expires > time.time():
            return False
        log.warning("lock %s: taking over an expired lease (%s)", self.key, raw[:200])
        self.etag = self.objects._put(self.key, self._body(), IfMatch=etag)
        return self.etag is not None

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            assert self.etag is not None
            etag = self.objects._put(self.key, self._body(), IfMatch=self.etag)
            if etag is None:
                log.warning("lock %s: lease lost (another holder took it over)", self.key)
                return
            self.etag = etag

    def __enter__(self) -> None:
        attempt = 0
        while not self._try():
            attempt += 1
            time.sleep(min(1.0, 0.02 * 2 ** min(attempt, 6)) * random.uniform(0.5, 1.0))
        self._renewer = threading.Thread(target=self._renew, name=f"lease {self.key}", daemon=True)
        self._renewer.start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        with contextlib.suppress(FileNotFoundError, ObjectStoreError):
            _, etag = self.objects.get_versioned(self.key)
            if etag == self.etag:
                self.objects.delete(self.key)


# --- the read-through cache ----------------------------------------------------------------------------------------


class ReadCache:
    """Local copies of immutable objects (model weights, dataset arrays: their bytes never change under their key),
    in one directory that the processes of a machine share, bounded in bytes: beyond `max_bytes`, the least recently
    used copies go first (a hit touches its file). A copy never goes stale; `discard` removes it when its object is
    deleted. Each store's copies are named by a hash of its location and the key."""

    def __init__(self, directory: Path | str, max_bytes: int, namespace: str) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.namespace = namespace
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(f"{self.namespace}\0{key}".encode()).hexdigest()[:40]
        return self.directory / f"{digest}{Path(key).suffix}"

    def use(self, key: str, fetch: Callable[[], bytes], reader: Callable[[Path], T]) -> T:
        """`reader` applied to the local copy of `key`, fetched first when there is none. A copy that another process
        evicts between its lookup and its reading is fetched again."""
        path = self._path(key)
        for _ in range(3):
            try:
                os.utime(path)  # a hit: most recently used
            except FileNotFoundError:
                atomic_write_bytes(path, fetch())
                self._evict(keep=path)
            try:
                return reader(path)
            except FileNotFoundError:
                continue
        return reader(path)

    def discard(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def _evict(self, keep: Path) -> None:
        files = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.path == str(keep):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    files.append((st.st_mtime_ns, st.st_size, entry.path))
        with contextlib.suppress(FileNotFoundError):
            total = sum(size for _, size, _ in files) + keep.stat().st_size
            for _, size, path in sorted(files):
                if total <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                total -= size
