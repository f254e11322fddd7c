"""Clip datasets as litdata shards: written once by ``motionlab-data shard``, read by ``data=clips_stream`` from a
local folder or an object-storage URL (``s3://``, ``gs://``, ``azure://``; chunks are fetched into a local cache).

Layout of a shard folder (litdata's writer: chunk files and ``index.json``), one item per image:

- item 0: ``meta`` holds the manifest (JSON: format version, the source layout, and per clip its identity, first
  item, frame count, whether it has a portrait and ground-truth keypoints);
- per clip, in the order of :func:`motionlab.data.datasets.discover_clips`: its portrait (when the layout has one),
  then its frames in order. ``image`` is the decoded RGB image PNG-encoded, so a reader gets the exact pixels the
  folder reader decodes; ``keypoints`` is the frame's (or the portrait's) ground truth, (0, 2) when there is none.

Every item has all fields (litdata stores one format per dataset). Reading is by index (random access, cached
chunks), so a shard dataset serves the very samples of the folder it was written from, in the order the folder
reader's sampler draws them; DDP splits it with Lightning's distributed sampler like any map-style dataset.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from motionlab.data.datasets import ClipRecord, FolderClips, discover_clips
from motionlab.data.video_io import ClipError, _rgb8, open_clip
from motionlab.utils.errors import InputError, disk_error
from motionlab.utils.io import atomic_dir

log = logging.getLogger(__name__)
FORMAT = "motionlab-clips/1"
NO_KEYPOINTS = np.zeros((0, 2), dtype=np.float32)
# a URL scheme litdata streams from; anything else is a local folder
REMOTE_SCHEMES = ("s3://", "gs://", "azure://", "hf://")
# the serializers of the chunks motionlab writes (image bytes, keypoints, manifest text): a chunk declaring any other
# (litdata's "pickle" above all, which runs code on read) is refused before a byte of it is decoded
SERIALIZERS = ("bytes", "numpy", "str")
CHUNK_NAME = re.compile(r"^chunk-\d+-\d+\.bin$")


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _item(image: np.ndarray | None, keypoints: np.ndarray | None = None, meta: str = "") -> dict:
    return {"image": _png(image) if image is not None else b"", "keypoints": NO_KEYPOINTS if keypoints is None else keypoints.astype(np.float32),
            "meta": meta}


def _clip_items(entry: tuple[int, dict | ClipRecord]) -> Iterator[dict]:
    """The items of one entry: the manifest item for entry -1, else one clip's portrait and frame items."""
    index, payload = entry
    if index < 0:
        yield _item(None, meta=json.dumps(payload))
        return
    record, folder = payload, FolderClips()
    clip = folder.open_clip(record)
    driver_points, portrait_points = folder.ground_truth(record) if record.keypoints is not None else (None, None)
    if record.portrait is not None:
        yield _item(folder.read_portrait(record), portrait_points)
    for t in range(len(clip)):
        yield _item(clip.get([t])[0], driver_points[t] if driver_points is not None else None)


def write_clip_shards(root: str | os.PathLike, output: str | os.PathLike, layout: str = "auto", chunk_bytes: str = "64MB") -> dict:
    """Write the clips under ``root`` as litdata shards in the folder ``output``; returns the manifest.

    The shards are written beside ``output`` and moved into place when complete: an existing ``output`` is replaced
    whole, never half-overwritten, and only when it is a shard folder (``index.json`` and chunk files, nothing else);
    an ``output`` that is, holds or lies inside ``root`` is refused.
    """
    output = Path(output)
    _check_shard_output(Path(root), output)
    layout, records = discover_clips(root, layout)
    clips, first = [], 1
    for record in records:
        frames = len(open_clip(record.clip))
        has_portrait = record.portrait is not None
        clips.append({"identity": record.identity, "first_item": first, "frames": frames, "portrait": has_portrait,
                      "keypoints": record.keypoints is not None})
        first += frames + has_portrait
    manifest = {"format": FORMAT, "layout": layout, "source": str(Path(root).resolve()), "items": first, "clips": clips}
    # litdata's writer in this process (not its optimize() workers, which wait on each other forever when one dies,
    # e.g. on a full disk), into a folder swapped in whole (a kill leaves the previous shards or the new ones)
    from litdata.streaming.writer import BinaryWriter

    with atomic_dir(output, replaces=_is_shard_folder) as scratch:
        try:
            writer = BinaryWriter(str(scratch), chunk_bytes=chunk_bytes)
            index = 0
            for entry in [(-1, manifest), *enumerate(records)]:
                for item in _clip_items(entry):
                    writer[index] = item
                    index += 1
            writer.done()
            writer.merge()
        except OSError as error:
            disk = disk_error(error)
            if disk is not None:
                raise OSError(disk.errno, f"{os.strerror(disk.errno)} while writing the shards; nothing was written", str(output)) from error
            raise
        written = json.loads((scratch / "index.json").read_text())
        count = sum(chunk["chunk_size"] for chunk in written["chunks"])
        if count != first:
            raise RuntimeError(f"litdata wrote {count} items for {first} expected; the shards were not kept")
    log.info("wrote %d clips (%d items) from %s as shards in %s", len(clips), first, root, output)
    return manifest


def check_shard_index(index_file: Path, location: str) -> int:
    """Check a shard folder's ``index.json`` before litdata reads any chunk: only motionlab's serializers, no
    compression or encryption, chunk files named as litdata names them, and (for a local folder) each chunk file as
    large as the index says. Returns the number of items it declares; a :class:`~motionlab.utils.errors.InputError`
    names the folder, the chunk and what is wrong."""
    what = f"data.shards: {location}"
    try:
        index = json.loads(index_file.read_text())
        config, chunks = index["config"], index["chunks"]
        formats = list(config["data_format"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{what}: index.json is not a litdata index ({type(error).__name__}: {error}); rewrite the shards with "
                         "motionlab-data shard") from error
    names = [chunk.get("filename") if isinstance(chunk, dict) else None for chunk in chunks]
    foreign = [name for name in formats if name not in SERIALIZERS]
    if foreign:
        raise InputError(f"{what}: its chunks ({', '.join(map(str, names[:3]))}{', ...' if len(names) > 3 else ''}) declare the serializer "
                         f"{foreign[0]!r}; motionlab reads only chunks of {', '.join(SERIALIZERS)} (a pickled chunk could run code), "
                         "so these shards were not written by motionlab-data shard")
    for key in ("compression", "encryption"):
        if config.get(key) is not None:
            raise InputError(f"{what}: index.json declares {key} {config[key]!r}, which motionlab's shards never use; rewrite them")
    total = 0
    for chunk, name in zip(chunks, names):
        size = chunk.get("chunk_size") if isinstance(chunk, dict) else None
        if not isinstance(name, str) or not CHUNK_NAME.match(name) or not isinstance(size, int) or size < 0:
            raise InputError(f"{what}: index.json lists a chunk {chunk!r} that is not a litdata chunk (a chunk-N-M.bin file and its "
                             "item count); rewrite the shards")
        if not location.startswith(REMOTE_SCHEMES):
            path = index_file.parent / name
            declared = chunk.get("chunk_bytes")
            if not path.is_file():
                raise InputError(f"{what}: chunk {name} listed in index.json is missing; the shards are incomplete, rewrite them")
            on_disk = path.stat().st_size
            if not isinstance(declared, int) or on_disk < declared:
                raise InputError(f"{what}: chunk {name} is {on_disk} bytes, index.json says {declared}; the shards are "
                                 "damaged, rewrite them")
            with open(path, "rb") as file:  # a chunk starts with its item count (uint32, little-endian)
                stored = int.from_bytes(file.read(4), "little")
            if stored != size:
                raise InputError(f"{what}: chunk {name} holds {stored} items, index.json says {size}; the shards are damaged, rewrite them")
        total += size
    return total


def _check_shard_output(root: Path, output: Path) -> None:
    """Refuse an ``out=`` that would replace the source clips or a folder of anything but shards."""
    source, target = root.resolve(), output.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise InputError(f"out={output}: the shard folder may not be, hold or lie inside root={root} (replacing it would delete the clips); "
                         "choose a folder beside it")
    if output.exists() and not _is_shard_folder(output):
        foreign = [p.name for p in output.iterdir() if p.name != "index.json" and not CHUNK_NAME.match(p.name)] if output.is_dir() else [output.name]
        raise InputError(f"out={output} exists and is not a shard folder this command wrote (it holds {', '.join(sorted(foreign)[:3]) or 'no index.json'}); "
                         "give a new folder, or remove it yourself")


def _is_shard_folder(folder: Path) -> bool:
    """A folder of litdata chunk files and their ``index.json``, nothing else (what this writer writes)."""
    return (folder.is_dir() and (folder / "index.json").is_file()
            and all(p.name == "index.json" or CHUNK_NAME.match(p.name) for p in folder.iterdir()))


class ShardClip:
    """One clip of a shard dataset, read like :class:`motionlab.data.video_io.FrameFolderClip`."""

    def __init__(self, shards: "ShardClips", first_item: int, frames: int):
        self.shards, self.first_item, self.frames = shards, first_item, frames

    def __len__(self) -> int:
        return self.frames

    def get(self, indices) -> np.ndarray:
        """(N, H, W, 3) uint8 frames at ``indices``."""
        return np.stack([self.shards.image(self.first_item + int(i)) for i in indices])


class ShardClips:
    """The store of a shard dataset (the interface of :class:`motionlab.data.datasets.FolderClips`): records name
    their clips as ``<shards>#<clip index>``.

    Args:
        shards: the shard folder, or an object-storage URL of one.
        cache_dir: where remote chunks are cached (litdata's default when ``None``).
        max_cache_size: the most the chunk cache may hold (e.g. ``"50GB"``).
    """

    def __init__(self, shards: str, cache_dir: str | None = None, max_cache_size: str = "50GB"):
        import litdata

        self.location = str(shards)
        remote = self.location.startswith(REMOTE_SCHEMES)
        if not remote:
            if not (Path(self.location) / "index.json").is_file():
                raise InputError(f"data.shards: {self.location} is not a shard folder (no index.json); write one with "
                                 "`motionlab-data shard root=<clips> out=<folder>`")
            items = check_shard_index(Path(self.location) / "index.json", self.location)
        # batch_decode=False: random access decodes the one item asked for, not a window of items around it (100x
        # faster for shuffled reads here)
        self.dataset = litdata.StreamingDataset(self.location, cache_dir=cache_dir, max_cache_size=max_cache_size, batch_decode=False)
        if remote:  # litdata has fetched the index into its cache; nothing of a chunk has been read yet
            fetched = Path(self.dataset.input_dir.path or "") / "index.json"
            if not fetched.is_file():
                raise InputError(f"data.shards: the index of {self.location} could not be checked (not found in the cache at {fetched}); "
                                 "motionlab reads no chunk whose serializers it has not checked")
            items = check_shard_index(fetched, self.location)
        meta = self.dataset[0]["meta"]
        self.manifest = json.loads(meta) if meta else {}
        if self.manifest.get("format") != FORMAT:
            raise InputError(f"data.shards: {self.location} holds no {FORMAT} manifest (item 0); rewrite it with motionlab-data shard")
        if self.manifest.get("items") != items or not isinstance(self.manifest.get("clips"), list):
            raise InputError(f"data.shards: {self.location}'s manifest counts {self.manifest.get('items')} items, its index {items}; "
                             "the shards are damaged, rewrite them")
        self.clips = self.manifest["clips"]
        for clip in self.clips:
            first, frames = (clip.get("first_item"), clip.get("frames")) if isinstance(clip, dict) else (None, None)
            if (not isinstance(first, int) or not isinstance(frames, int) or first < 1 or frames < 1
                    or first + frames + bool(clip.get("portrait")) > items):
                raise InputError(f"data.shards: {self.location}'s manifest lists a clip {str(clip)[:120]} outside its {items} items; "
                                 "rewrite the shards")

    def records(self) -> list[ClipRecord]:
        """One record per clip, named ``<shards>#<index>`` (its portrait and ground truth marked the same way)."""
        records = []
        for index, clip in enumerate(self.clips):
            name = Path(f"{self.location}#{index}")
            records.append(ClipRecord(clip["identity"], name, name if clip["portrait"] else None, name if clip["keypoints"] else None))
        return records

    def _clip_entry(self, record: ClipRecord) -> dict:
        return self.clips[int(str(record.clip).rsplit("#", 1)[1])]

    def item(self, index: int) -> dict:
        return self.dataset[index]

    def image(self, index: int) -> np.ndarray:
        data = self.item(index)["image"]
        if not data:
            raise ClipError(f"shard item {index} of {self.location} holds no image; the shards are damaged, rewrite them")
        with Image.open(io.BytesIO(data)) as image:
            return _rgb8(image)

    def open_clip(self, record: ClipRecord) -> ShardClip:
        entry = self._clip_entry(record)
        return ShardClip(self, entry["first_item"] + entry["portrait"], entry["frames"])

    def read_portrait(self, record: ClipRecord) -> np.ndarray:
        return self.image(self._clip_entry(record)["first_item"])

    def ground_truth(self, record: ClipRecord) -> tuple[np.ndarray, np.ndarray | None]:
        entry = self._clip_entry(record)
        start = entry["first_item"] + entry["portrait"]
        driver = np.stack([np.asarray(self.item(start + t)["keypoints"]) for t in range(entry["frames"])])
        portrait = np.asarray(self.item(entry["first_item"])["keypoints"]) if entry["portrait"] else None
        return driver, portrait if portrait is not None and len(portrait) else None

    def face_labels(self, record: ClipRecord, stored_size: tuple[int, int]) -> None:
        """Shards do not carry face labels (``data.face_labels`` names the clip)."""
        return None

