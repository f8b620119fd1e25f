"""Which annotations are known to be bad: a list of ids, or the manifest ``nlkd corrupt`` wrote."""

from __future__ import annotations

from pathlib import Path

from nlkd.errors import DataError
from nlkd.noise import load_manifest

__all__ = ["known_bad_ids"]


def known_bad_ids(label_dir: Path, known_bad: str | None) -> tuple[set[str], str] | None:
    """Ids of known-bad annotations and where they came from: ``known_bad`` (one id per line, ``#``
    comments), else ``label_dir/manifest.json`` of ``nlkd corrupt`` (its corrupted masks but those the
    corruption left unchanged), else None."""
    if known_bad is not None:
        path = Path(known_bad)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DataError(f"{path}: cannot read the list of known-bad ids ({e.strerror})") from None
        ids = {ln.split("#", 1)[0].strip() for ln in text.splitlines()}
        return ids - {""}, str(path)
    manifest = load_manifest(label_dir)
    if manifest is None:
        return None
    return set(manifest["corrupted"]) - set(manifest.get("unchanged", [])), str(label_dir / "manifest.json")
