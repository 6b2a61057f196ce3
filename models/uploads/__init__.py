"""Parsing and validating uploaded files: datasets (.npz, .csv, .zip of images) and images for reconstructions.

Everything here treats the upload as hostile: the type comes from the content (magic bytes) and must agree with
the extension; .npz members are decoded by hand from their .npy headers (never unpickled, shapes checked before
any array is allocated); zip headers are checked (entry count, names, symlinks, encryption, compression ratio,
total size) before anything is decompressed, and sizes are enforced again while reading; image sizes are checked
from their headers before pixels are decoded.

Every error carries `field=("file",)` or `("file", <entry or array name>, ...)` and, for limits, `limit=` plus a
message naming the setting that raises it (`UploadLimits.names`).

Choices worth knowing:
- Labels: `y` (npz), the `label` column (csv) or the class folders (zip) give `classes` sorted (numerically when
  every label is an integer, else as strings) and `y` remapped to 0..K-1. A single class is allowed (K >= 1).
- zip layout: when every image sits under one and the same top-level folder (what zipping a directory gives),
  that folder is stripped first; so a zip needs two or more class folders to be labeled.
- Images decode to uint8; all grayscale -> (N, H, W), any color -> every image RGB (N, H, W, 3). Alpha is dropped;
  16-bit grayscale is scaled to 8 bits; palette images whose colors are all gray count as grayscale.
- Decoded pixels count against `max_uncompressed_bytes` too, so small compressed images cannot expand without bound.
- npz integer images (other than uint8) are accepted when their values are within 0..255; bool arrays are refused.
- npz archives get the same zip header checks as zip uploads (entries, names, ratio, total size).

Modules: `parse` (the entry points and type detection), `limits`, `zips`, `npy`, `csv_table`, `images`, `labels`.
"""

from models.uploads.limits import UploadLimits
from models.uploads.parse import parse_images, parse_upload

__all__ = ["UploadLimits", "parse_images", "parse_upload"]
