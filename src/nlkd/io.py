"""File I/O that never leaves half-written files behind, and image/mask reading with clear errors."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError, features

from nlkd.errors import DataError


def _readable_image_extensions() -> tuple[str, ...]:
    """The image file suffixes :func:`read_image` decodes here (WebP only when Pillow was built with it)."""
    return (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp") + ((".webp",) if features.check("webp") else ())


#: Image files every command reads (training and validation splits, ``nlkd predict``, ``nlkd import``):
#: one list, so a file one command reads is never skipped by another. Masks are always PNG.
IMAGE_EXTENSIONS: tuple[str, ...] = _readable_image_extensions()

__all__ = [
    "IMAGE_EXTENSIONS",
    "atomic_folder",
    "atomic_write_bytes",
    "atomic_write_text",
    "checkpoint_bytes",
    "file_digest",
    "new_file_mode",
    "read_image",
    "read_mask",
    "read_pixels",
    "save_checkpoint",
    "write_mask",
    "write_rgb",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``.

    A crash or a full disk during the write leaves any previous file at ``path`` untouched. The file gets
    the permissions a plain ``open(path, "w")`` would give: those of the file it replaces, else
    ``0o666`` minus the umask (``tempfile.mkstemp`` alone would make every output 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # name the file, e.g. for a full disk
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def new_file_mode(path: Path) -> int:
    """Permission bits for a (re)written ``path``: the existing file's, else ``0o666 & ~umask``."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux /proc); else set and reset."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 text (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


@contextmanager
def atomic_folder(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Fill a folder that appears at ``path`` whole or not at all.

    Yields a new temporary folder beside ``path``; when the ``with`` block ends without an exception the
    folder replaces ``path`` (a previous folder there is moved aside first, then deleted), otherwise it is
    deleted and ``path`` stays as it was. Only the two renames separate the old folder from the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = None
        if path.exists() or path.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def checkpoint_bytes(obj: Any) -> bytes:
    """``torch.save`` to memory (serialise once, write as often as needed)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to memory, then an atomic write: a checkpoint is either whole or absent."""
    atomic_write_bytes(path, checkpoint_bytes(obj))


# What PIL raises for a file that is not a readable image (a decompression bomb is not an OSError).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def file_digest(path: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the SHA-256 of a file's bytes (read in 1 MiB chunks): what a cache keyed
    on the file (a teacher checkpoint) compares."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def read_pixels(
    path: str | os.PathLike[str], what: str = "image", convert: str | None = None, shown: object = None
) -> tuple[str, np.ndarray]:
    """``(PIL mode, pixels)`` of an image file, converted to mode ``convert`` when given; a missing,
    unreadable or truncated file is a :class:`DataError` naming ``shown`` (default ``path``) and ``what``
    it is (``"image"``, ``"mask"``)."""
    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert(convert) if convert else im
            return im.mode, np.asarray(im)
    except FileNotFoundError:
        raise DataError(f"{shown or path}: {what} file not found") from None
    except _DECODE_ERRORS as e:
        raise DataError(f"{shown or path}: unreadable or truncated {what} ({e})") from None


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an RGB image as ``uint8`` array of shape (H, W, 3); raise :class:`DataError` if unreadable."""
    return read_pixels(path, "image", convert="RGB")[1]


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a class-index mask as an integer array of shape (H, W).

    Raises :class:`DataError` if the file is unreadable or holds colour (RGB) rather than indices.
    """
    mode, arr = read_pixels(path, "mask")
    if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        raise DataError(f"{path}: mask is {mode} colour; expected a single-channel class-index PNG (mode L or P)")
    if arr.ndim != 2:
        raise DataError(f"{path}: mask has shape {arr.shape}; expected (H, W)")
    if arr.dtype.kind not in "biu":
        raise DataError(f"{path}: mask holds {arr.dtype} values; expected integer class indices (mode L, P)")
    return arr


def write_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Atomically write an (H, W) class-index mask (values 0..255) as an 8-bit PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise ValueError(f"mask values must lie in 0..255, got {mask.min()}..{mask.max()}")
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8), mode="L").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def write_rgb(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Atomically write an (H, W, 3) uint8 image as PNG."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    buf = io.BytesIO()
    Image.fromarray(image.astype(np.uint8), mode="RGB").save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
