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
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from airflow_provider_cfimages.emulator.timestamps import format_uploaded

_T = TypeVar("_T")

#: the variants every image of a seeded account has (Cloudflare lists all of an account's
#: variants on every image)
DEFAULT_VARIANTS: tuple[str, ...] = ("public", "thumbnail")
#: the creators a seeded inventory draws from
CREATORS: tuple[str, ...] = ("user-1024", "user-2048", "importer", "cms-sync", "tenant-acme")
#: seeded uploads fall in [2021-01-01, 2025-01-01)
SEED_START_MS = 1_609_459_200_000
SEED_END_MS = 1_735_689_600_000
MAX_METADATA_BYTES = 1024
_ACCOUNT_ID = re.compile(r"^[0-9a-f]{32}$")

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
_CUSTOM_ID_ROOTS: tuple[str, ...] = ("products", "avatars", "blog/posts")
_ENTITY_TYPES: tuple[str, ...] = ("product", "article", "user")
_WIDTHS: tuple[int, ...] = (640, 1024, 1920, 3024, 4032)
_HEIGHTS: tuple[int, ...] = (480, 768, 1080, 3024)
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


def cloudflare_uuid(bits: int) -> str:
    """An image id shaped like the ones Cloudflare assigns, from 128 random bits.

    They are UUID-formatted with a version-4 nibble and, in every id seen in Cloudflare's
    docs, a last byte of ``00`` (e.g. ``107b9558-dd06-4bbd-5fef-9c2c16bb7900``).
    """
    raw = f"{bits:032x}"
    return f"{raw[:8]}-{raw[8:12]}-4{raw[13:16]}-{raw[16:20]}-{raw[20:30]}00"


class _Dice:
    """Deterministic draws from one :class:`random.Random`.

    ``choice``/``randrange`` cost a few hundred nanoseconds each in pure Python; a million
    images need tens of millions of draws, so everything is derived from ``random()``.
    """

    __slots__ = ("bits", "random")

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.random = rng.random
        self.bits = rng.getrandbits

    def pick(self, items: tuple[_T, ...]) -> _T:
        return items[int(self.random() * len(items))]

    def below(self, bound: int) -> int:
        return int(self.random() * bound)


def _image_id(dice: _Dice, serial: int) -> str:
    roll = dice.random()
    if roll < 0.03:
        # Custom ids may hold sub-paths; the serial keeps them unique.
        return f"{dice.pick(_CUSTOM_ID_ROOTS)}/{serial}/{dice.pick(_VIEWS)}"
    if roll < 0.15:
        return f"{dice.bits(128):032x}"
    return cloudflare_uuid(dice.bits(128))


def _filename(dice: _Dice) -> str:
    roll = dice.random()
    if roll < 0.001:
        return dice.pick(_NEWLINE_FILENAMES)
    if roll < 0.03:
        return dice.pick(_AWKWARD_FILENAMES)
    ext = dice.pick(_EXTENSIONS)
    if roll < 0.30:
        return f"IMG_{dice.below(10_000):04d}.{ext}"
    if roll < 0.40:
        return f"DSC{dice.below(100_000):05d}.JPG"
    if roll < 0.65:
        return f"product-{1 + dice.below(200_000)}-{dice.pick(_VIEWS)}.{ext}"
    if roll < 0.80:
        words = " ".join([dice.pick(_WORDS) for _ in range(1 + dice.below(3))])
        suffix = f" ({1 + dice.below(8)})" if dice.random() < 0.3 else ""
        return f"{words}{suffix}.{ext}"
    if roll < 0.90:
        month, day = 1 + dice.below(12), 1 + dice.below(28)
        return f"Screenshot 2023-{month:02d}-{day:02d} at 10.22.31.png"
    return f"{dice.bits(64):016x}.{ext}"


def _metadata(dice: _Dice, serial: int) -> dict[str, Any] | None:
    roll = dice.random()
    if roll < 0.30:
        return None
    if roll < 0.65:
        if dice.random() < 0.5:
            return {"sku": f"SKU-{serial:07d}"}
        return {"source": dice.pick(_SOURCES), "entity_id": serial}
    meta: dict[str, Any] = {
        "source": dice.pick(_SOURCES),
        "entity": {"type": dice.pick(_ENTITY_TYPES), "id": serial},
        "tags": [tag for tag in _TAGS if dice.random() < 0.2],
        "alt": f"{dice.pick(_WORDS)} {dice.pick(_WORDS)} photo",
        "width": dice.pick(_WIDTHS),
        "height": dice.pick(_HEIGHTS),
        "approved": dice.random() < 0.8,
        "score": round(dice.random() * 5, 2),
    }
    if roll < 0.90:
        return meta
    # Large metadata: a description that takes the object close to, never over, 1024 bytes.
    meta["description"] = _LOREM[: 200 + dice.below(800)]
    while len(msgspec.json.encode(meta)) > MAX_METADATA_BYTES:
        meta["description"] = meta["description"][:-40]
    return meta


def generate_inventory(
    count: int,
    seed: int = 0,
    *,
    account_hash: str,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(uploaded epoch ms, image)`` for ``count`` realistic images.

    Deterministic for a given ``seed``; images come in ascending ``uploaded`` order (ties
    in no particular id order).

    :param count: how many images.
    :param seed: the seed of the generator; the same seed gives the same inventory.
    :param account_hash: the delivery hash used in the variant URLs.
    :param variants: the account's variant names.
    """
    dice = _Dice(seed)
    draw = dice.random
    span = SEED_END_MS - SEED_START_MS
    times = sorted([SEED_START_MS + int(draw() * span) for _ in range(count)])
    for i in range(1, count):
        # Bulk uploads land in the same millisecond: exact ties exercise the id tiebreak.
        if draw() < 0.02:
            times[i] = times[i - 1]
    for serial, uploaded_ms in enumerate(times):
        # Unique by construction: custom ids hold the serial, the others 120+ random bits.
        image_id = _image_id(dice, serial)
        image: dict[str, Any] = {"id": image_id, "filename": _filename(dice)}
        meta = _metadata(dice, serial)
        if meta is not None:
            image["meta"] = meta
        image["uploaded"] = format_uploaded(uploaded_ms)
        image["requireSignedURLs"] = draw() < 0.05
        image["variants"] = [
            f"https://imagedelivery.net/{account_hash}/{image_id}/{name}" for name in variants
        ]
        if draw() < 0.30:
            image["creator"] = dice.pick(CREATORS)
        yield uploaded_ms, image


def generate_images(
    count: int,
    seed: int = 0,
    *,
    account_hash: str,
    variants: tuple[str, ...] = DEFAULT_VARIANTS,
) -> Iterator[dict[str, Any]]:
    """Yield ``count`` realistic images (see :func:`generate_inventory`)."""
    for _uploaded_ms, image in generate_inventory(
        count, seed, account_hash=account_hash, variants=variants
    ):
        yield image


class SeedFileError(ValueError):
    """A seed file that cannot be read as images; the message names the file and line."""


def read_seed_file(path: str | Path) -> list[dict[str, Any]]:
    """Read images from a JSON or JSON Lines file.

    Accepted forms: a JSON list of images; an object with ``images`` or
    ``result.images`` (a saved API response); or one image object per line. Every image
    needs an ``id`` and an RFC 3339 ``uploaded``; all other keys are kept as written.

    :raises SeedFileError: when the file is not one of those forms (or names accounts: see
        :func:`read_seed_inventories`).
    """
    inventories = read_seed_inventories(path)
    if None not in inventories:
        raise SeedFileError(f"{path}: the file names accounts; read it with read_seed_inventories")
    return inventories[None]


def read_seed_inventories(path: str | Path) -> dict[str | None, list[dict[str, Any]]]:
    """Read the inventories of a seed file: one account's, or those of the accounts it names.

    Besides the forms of :func:`read_seed_file` (returned under the key ``None``: the
    emulator's first account), an object ``{"accounts": {"<32-hex id>": [images], ...}}``
    names each account and its images, in the order given.

    :raises SeedFileError: when the file is not one of those forms.
    """
    path = Path(path)
    raw = path.read_bytes()
    try:
        document: Any = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        images = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                images.append(msgspec.json.decode(line))
            except msgspec.DecodeError as exc:
                raise SeedFileError(f"{path}:{number}: not a JSON object: {exc}") from exc
        return {None: _checked_images(path, images)}
    if isinstance(document, dict) and "accounts" in document:
        accounts = document["accounts"]
        if not isinstance(accounts, dict) or not accounts:
            raise SeedFileError(f"{path}: 'accounts' must map account ids to lists of images")
        inventories: dict[str | None, list[dict[str, Any]]] = {}
        for account_id, images in accounts.items():
            if not isinstance(account_id, str) or not _ACCOUNT_ID.match(account_id):
                raise SeedFileError(f"{path}: account id {account_id!r} is not 32 lowercase hex")
            if not isinstance(images, list):
                raise SeedFileError(f"{path}: account {account_id}: expected a list of images")
            inventories[account_id] = _checked_images(path, images, f"account {account_id}: ")
        return inventories
    if isinstance(document, dict):
        if isinstance(document.get("result"), dict):
            document = document["result"]
        document = document.get("images")
    if not isinstance(document, list):
        raise SeedFileError(
            f"{path}: expected a JSON list of images, an object with 'images' or 'accounts', "
            "or JSON Lines"
        )
    return {None: _checked_images(path, document)}


def _checked_images(path: Path, images: list[Any], where: str = "") -> list[dict[str, Any]]:
    for number, image in enumerate(images, start=1):
        if not isinstance(image, dict) or not isinstance(image.get("id"), str):
            raise SeedFileError(
                f"{path}: {where}image #{number} is not an object with a string 'id'"
            )
        if not isinstance(image.get("uploaded"), str):
            raise SeedFileError(f"{path}: {where}image #{number} has no RFC 3339 'uploaded' string")
    return images
