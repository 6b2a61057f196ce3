"""Points from CSV text: a header row of column names, numeric columns, and an optional `label` column."""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Iterator

import numpy as np

from models.data.arrays import ArrayDataset
from models.errors import Invalid
from models.uploads.labels import remap
from models.uploads.limits import FILE, UploadLimits, first_bad, reason, too_large


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _rows(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        raise Invalid(f"the csv cannot be parsed ({reason(exc)})", field=FILE) from exc


def parse_csv(content: bytes, limits: UploadLimits) -> ArrayDataset:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Invalid(
            f"the csv is not UTF-8 text (byte 0x{content[exc.start]:02x} at offset {exc.start}); save it as UTF-8",
            field=FILE,
        ) from exc
    if "\x00" in text:
        raise Invalid("the csv holds NUL characters; it is not a text file", field=FILE)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = _rows(reader)
    header = next((r for r in rows if r), None)
    if header is None:
        raise Invalid("the csv is empty: it needs a header row of column names and data rows", field=FILE)
    names = [c.strip() for c in header]
    if all(_is_number(n) for n in names):
        raise Invalid("the csv's first row holds numbers; it must be a header row of column names", field=FILE)
    for i, n in enumerate(names):
        if not n:
            raise Invalid(f"column {i + 1} of the header has no name", field=FILE)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise Invalid(f"the header names column {dup!r} twice", field=FILE)
    label_cols = [i for i, n in enumerate(names) if n.lower() == "label"]
    if len(label_cols) > 1:
        raise Invalid("the header has more than one label column", field=FILE)
    label_col = label_cols[0] if label_cols else None
    num_cols = [i for i in range(len(names)) if i != label_col]
    if not num_cols:
        raise Invalid("the csv has no numeric columns besides label", field=FILE)
    if len(num_cols) > limits.max_point_dims:
        raise too_large(f"the csv has {len(num_cols)} numeric columns", limits, "max_point_dims")

    width = len(names)
    values = array("d")
    lines = array("q")
    labels: list[str] = []
    all_numeric = label_col is None
    for row in rows:
        if not row:
            continue  # blank line
        line = reader.line_num
        if len(row) != width:
            raise Invalid(f"line {line} has {len(row)} cells; the header has {width}", field=("file", f"line {line}"))
        if len(lines) >= limits.max_points:
            raise too_large(f"the csv has more than {limits.max_points} data rows", limits, "max_points")
        try:
            values.extend(map(float, row if all_numeric else (row[i] for i in num_cols)))
        except ValueError:
            for i in num_cols:
                if not _is_number(row[i]):
                    raise Invalid(
                        f"line {line}, column {names[i]!r}: {row[i]!r} is not a number",
                        field=("file", f"line {line}", names[i]),
                    ) from None
            raise
        if label_col is not None:
            label = row[label_col].strip()
            if not label:
                raise Invalid(f"line {line} has an empty label", field=("file", f"line {line}", names[label_col]))
            labels.append(label)
        lines.append(line)
    if not lines:
        raise Invalid("the csv has a header but no data rows", field=FILE)
    x64 = np.frombuffer(values, dtype=np.float64).reshape(len(lines), len(num_cols))
    with np.errstate(over="ignore"):
        x = x64.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        r, c = first_bad(bad)
        line, col = int(lines[r]), names[num_cols[c]]
        cell = x64[r, c]
        why = "is NaN or infinite" if not np.isfinite(cell) else "is too large for float32"
        raise Invalid(f"line {line}, column {col!r}: the value {why}", field=("file", f"line {line}", col))
    if label_col is None:
        return ArrayDataset(x=x, y=None, kind="points")
    y, classes = remap(labels)
    return ArrayDataset(x=x, y=y, kind="points", classes=classes)
