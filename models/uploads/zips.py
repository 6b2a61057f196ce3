"""Zip containers (zip uploads and .npz archives), opened as hostile input: every header is checked (entry count,
names, symbolic links, encryption, compression method and ratio, total size) before anything is decompressed, and
sizes are enforced again while entries are read, since headers can lie."""

from __future__ import annotations

import io
import re
import stat
import struct
import zipfile
import zlib

from models.errors import Invalid
from models.uploads.limits import FILE, UploadLimits, entry_field, reason, too_large

ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


READ_CHUNK = 1024 * 1024


EOCD_MAGIC = b"PK\x05\x06"


ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    struct.error,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)


def _declared_entries(content: bytes) -> int | None:
    """The entry count in the end-of-central-directory record (None when absent or zip64)."""
    idx = content.rfind(EOCD_MAGIC, max(0, len(content) - (22 + 65535)))
    if idx < 0 or idx + 22 > len(content):
        return None
    (total,) = struct.unpack_from("<H", content, idx + 10)
    return None if total == 0xFFFF else int(total)


def _unsafe_name(name: str) -> str | None:
    if "\x00" in name:
        return "contains a NUL byte"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in name.split("/"):
        return "contains '..'"
    return None


def open_zip(content: bytes, limits: UploadLimits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]:
    """Open an archive and check every header before anything is decompressed."""
    declared = _declared_entries(content)
    if declared is not None and declared > limits.max_zip_entries:
        raise too_large(f"the zip holds {declared} entries", limits, "max_zip_entries")
    try:
        zf = zipfile.ZipFile(io.BytesIO(content))
        infos = zf.infolist()
    except ZIP_ERRORS as exc:
        raise Invalid(f"the file is not a readable zip archive ({reason(exc)})", field=FILE) from exc
    try:
        if len(infos) > limits.max_zip_entries:
            raise too_large(f"the zip holds {len(infos)} entries", limits, "max_zip_entries")
        total = 0
        for info in infos:
            name = info.orig_filename
            field = entry_field(name)
            unsafe = _unsafe_name(name)
            if unsafe:
                raise Invalid(f"zip entry {name!r} {unsafe}; entry names must be relative paths", field=field)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise Invalid(f"zip entry {name!r} is a symbolic link; links are not allowed", field=field)
            if info.flag_bits & 0x1:
                raise Invalid(f"zip entry {name!r} is encrypted; upload an archive without a password", field=field)
            if info.compress_type not in ZIP_METHODS:
                raise Invalid(
                    f"zip entry {name!r} uses compression method {info.compress_type}; genserve reads "
                    f"stored and deflate entries",
                    field=field,
                )
            if info.file_size > 0:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > limits.max_zip_ratio:
                    raise too_large(
                        f"zip entry {name!r} expands {ratio:.0f}x ({info.compress_size} -> {info.file_size} bytes)",
                        limits,
                        "max_zip_ratio",
                        field,
                    )
            total += info.file_size
        if total > limits.max_uncompressed_bytes:
            raise too_large(f"the zip's entries hold {total} bytes uncompressed", limits, "max_uncompressed_bytes")
    except BaseException:
        zf.close()
        raise
    return zf, infos


def ignored(info: zipfile.ZipInfo) -> bool:
    """Directories, macOS metadata (__MACOSX/, ._*) and dot-files."""
    parts = [p for p in info.filename.split("/") if p]
    return info.is_dir() or not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts)


def looks_like_npz(infos: list[zipfile.ZipInfo]) -> bool | None:
    """True: only .npy members; False: other files too; None: nothing to tell (empty archive)."""
    names = [i.filename for i in infos if not ignored(i)]
    if not names:
        return None
    return all(n.endswith(".npy") for n in names)


def read_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """An entry's bytes, read in chunks and cut off when they run past the declared size (headers can lie)."""
    out = bytearray()
    try:
        with zf.open(info) as f:
            while chunk := f.read(READ_CHUNK):
                out += chunk
                if len(out) > info.file_size:
                    raise Invalid(
                        f"zip entry {info.filename!r} holds more than the {info.file_size} bytes its header declares",
                        field=entry_field(info.filename),
                        limit=info.file_size,
                    )
    except ZIP_ERRORS as exc:
        raise Invalid(
            f"zip entry {info.filename!r} cannot be read ({reason(exc)})", field=entry_field(info.filename)
        ) from exc
    return bytes(out)
