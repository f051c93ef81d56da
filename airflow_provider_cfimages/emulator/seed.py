"""Deterministic, realistic image inventories, and reading inventories from files.

:func:`generate_images` makes the same inventory for the same ``(count, seed, account_hash)``
on every run and every machine (it only uses :class:`random.Random`). The inventory is
shaped to trip up naive clients the way real ones do:

- ids: mostly UUIDs as Cloudflare assigns them, some 32-hex ids, ~3% custom path-like ids;
- filenames with spaces, commas, quotes and non-ASCII characters, and (about 1 in 1000)
  a newline;
- ``meta`` absent (no metadata) or objects from a few bytes up to the 1024-byte limit;
- ``uploaded`` spread over four years, with ~2% exact ties so that ordering depends on the
  ``(uploaded, id)`` tiebreak;
- ~5% ``requireSignedURLs``; ~30% with a ``creator`` from a small set.

:func:`read_seed_file` reads a JSON list (or an API-style ``{"result": {"images": [...]}}``)
or JSON Lines file; images from a file are kept exactly as written.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from airflow_provider_cfimages.emulator.timestamps import format_uploaded

#: the variants every image of a seeded account has (Cloudflare lists all of an account's
#: variants on every image)
DEFAULT_VARIANTS: tuple[str, ...] = ("public", "thumbnail")
#: the creators a seeded inventory draws from
CREATORS: tuple[str, ...] = ("user-1024", "user-2048", "importer", "cms-sync", "tenant-acme")
#: seeded uploads fall in [2021-01-01, 2025-01-01)
SEED_START_MS = 1_609_459_200_000
SEED_END_MS = 1_735_689_600_000
MAX_METADATA_BYTES = 1024

# Filenames that break CSV writers, shell scripts and naive parsers; real inventories have them.
_AWKWARD_FILENAMES: tuple[str, ...] = (
    'café, "menu".jpg',
    "résumé photo.png",
    "スクリーンショット 2023-05-01.png",
    "naïve façade (1).jpeg",
    "o'brien, party.gif",
    "comma,separated,name.webp",
    "Ünïcödé 名前.png",
    "emoji 🎉 launch.jpg",
    'quote"in"name.png',
    "semi;colon.jpg",
    "back\\slash.png",
    "  leading spaces.jpg",
    "tab\there.png",
)
_NEWLINE_FILENAMES: tuple[str, ...] = ("line one\nline two.jpg", "trailing newline.png\n")
_EXTENSIONS: tuple[str, ...] = ("jpg", "jpg", "jpg", "png", "png", "webp", "gif", "JPG", "jpeg")
_VIEWS: tuple[str, ...] = ("front", "back", "side", "detail", "hero", "thumb", "lifestyle")
_WORDS: tuple[str, ...] = (
    "summer",
    "banner",
    "team",
    "office",
    "launch",
    "final",
    "draft",
    "logo",
    "header",
    "product",
    "campaign",
    "winter",
    "portrait",
    "landscape",
)
_TAGS: tuple[str, ...] = ("catalog", "homepage", "archive", "campaign", "ugc", "press", "hidden")
_SOURCES: tuple[str, ...] = ("cms", "shopify", "import-2022", "mobile-app", "dam")
_LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. Duis aute irure "
    "dolor in reprehenderit in voluptate velit esse cillum dolore eu fugiat nulla pariatur. "
    "Excepteur sint occaecat cupidatat non proident, sunt in culpa qui officia deserunt "
    "mollit anim id est laborum. Çà et là, «guillemets» — ünïcödé ✓. "
) * 3


def account_hash_for(account_id: str) -> str:
    """The delivery hash of an account (the path segment of imagedelivery.net URLs).

    Real hashes are 22 URL-safe base64 characters; this one is derived from the account id
    so that variant URLs are stable for a given account.
    """
    digest = hashlib.sha256(f"account-hash:{account_id}".encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def variant_urls(account_hash: str, image_id: str, variants: tuple[str, ...]) -> list[str]:
    """The delivery URLs of an image, one per account variant."""
    return [f"https://imagedelivery.net/{account_hash}/{image_id}/{name}" for name in variants]


def _uuid(rng: random.Random) -> str:
    raw = f"{rng.getrandbits(128):032x}"
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"


def _image_id(rng: random.Random, serial: int) -> str:
    roll = rng.random()
    if roll < 0.03:
        # Custom ids may hold sub-paths; the serial keeps them unique.
        return f"{rng.choice(('products', 'avatars', 'blog/posts'))}/{serial}/{rng.choice(_VIEWS)}"
    if roll < 0.15:
        return f"{rng.getrandbits(128):032x}"
    return _uuid(rng)


def _filename(rng: random.Random) -> str:
    roll = rng.random()
    ext = rng.choice(_EXTENSIONS)
    if roll < 0.001:
        return rng.choice(_NEWLINE_FILENAMES)
    if roll < 0.03:
        return rng.choice(_AWKWARD_FILENAMES)
    if roll < 0.30:
        return f"IMG_{rng.randrange(10_000):04d}.{ext}"
    if roll < 0.40:
        return f"DSC{rng.randrange(100_000):05d}.JPG"
    if roll < 0.65:
        return f"product-{rng.randrange(1, 200_000)}-{rng.choice(_VIEWS)}.{ext}"
    if roll < 0.80:
        words = " ".join(rng.choice(_WORDS) for _ in range(rng.randrange(1, 4)))
        suffix = f" ({rng.randrange(1, 9)})" if rng.random() < 0.3 else ""
        return f"{words}{suffix}.{ext}"
    if roll < 0.90:
        return f"Screenshot 2023-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d} at 10.22.31.png"
    return f"{rng.getrandbits(64):016x}.{ext}"


def _metadata(rng: random.Random, serial: int) -> dict[str, Any] | None:
    roll = rng.random()
    if roll < 0.30:
        return None
    if roll < 0.65:
        if rng.random() < 0.5:
            return {"sku": f"SKU-{serial:07d}"}
        return {"source": rng.choice(_SOURCES), "entity_id": serial}
    meta: dict[str, Any] = {
        "source": rng.choice(_SOURCES),
        "entity": {"type": rng.choice(("product", "article", "user")), "id": serial},
        "tags": rng.sample(_TAGS, rng.randrange(0, 4)),
        "alt": f"{rng.choice(_WORDS)} {rng.choice(_WORDS)} photo",
        "width": rng.choice((640, 1024, 1920, 3024, 4032)),
        "height": rng.choice((480, 768, 1080, 3024)),
        "approved": rng.random() < 0.8,
        "score": round(rng.random() * 5, 2),
    }
    if roll < 0.90:
        return meta
    # Large metadata: a description that takes the object close to, never over, 1024 bytes.
    meta["description"] = _LOREM[: rng.randrange(200, 1000)]
    while len(msgspec.json.encode(meta)) > MAX_METADATA_BYTES:
        meta["description"] = meta["description"][:-40]
    return meta


def generate_images(
    count: int,
    seed: int = 0,
    *,
    account_hash: str,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` realistic images, deterministically for a given ``seed``.

    Images come in ascending ``uploaded`` order (ties in no particular id order).

    :param count: how many images.
    :param seed: the seed of the generator; the same seed gives the same inventory.
    :param account_hash: the delivery hash used in the variant URLs.
    :param variants: the account's variant names.
    """
    rng = random.Random(seed)
    times = sorted(rng.randrange(SEED_START_MS, SEED_END_MS) for _ in range(count))
    for i in range(1, count):
        # Bulk uploads land in the same millisecond: exact ties exercise the id tiebreak.
        if rng.random() < 0.02:
            times[i] = times[i - 1]
    used_ids: set[str] = set()
    for serial, uploaded_ms in enumerate(times):
        image_id = _image_id(rng, serial)
        while image_id in used_ids:  # a 128-bit collision will not happen; custom ids might
            image_id = _uuid(rng)
        used_ids.add(image_id)
        image: dict[str, Any] = {"id": image_id, "filename": _filename(rng)}
        meta = _metadata(rng, serial)
        if meta is not None:
            image["meta"] = meta
        image["uploaded"] = format_uploaded(uploaded_ms)
        image["requireSignedURLs"] = rng.random() < 0.05
        image["variants"] = variant_urls(account_hash, image_id, variants)
        if rng.random() < 0.30:
            image["creator"] = rng.choice(CREATORS)
        yield image


class SeedFileError(ValueError):
    """A seed file that cannot be read as images; the message names the file and line."""


def read_seed_file(path: str | Path) -> list[dict[str, Any]]:
    """Read images from a JSON or JSON Lines file.

    Accepted forms: a JSON list of images; an object with ``images`` or
    ``result.images`` (a saved API response); or one image object per line. Every image
    needs an ``id`` and an RFC 3339 ``uploaded``; all other keys are kept as written.

    :raises SeedFileError: when the file is not one of those forms.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        document: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        document = None
        images = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                images.append(msgspec.json.decode(line))
            except msgspec.DecodeError as exc:
                raise SeedFileError(f"{path}:{number}: not a JSON object: {exc}") from exc
    else:
        if isinstance(document, dict):
            if isinstance(document.get("result"), dict):
                document = document["result"]
            document = document.get("images")
        if not isinstance(document, list):
            raise SeedFileError(
                f"{path}: expected a JSON list of images, an object with 'images', or JSON Lines"
            )
        images = document
    for number, image in enumerate(images, start=1):
        if not isinstance(image, dict) or not isinstance(image.get("id"), str):
            raise SeedFileError(f"{path}: image #{number} is not an object with a string 'id'")
        if not isinstance(image.get("uploaded"), str):
            raise SeedFileError(f"{path}: image #{number} has no RFC 3339 'uploaded' string")
    return images
