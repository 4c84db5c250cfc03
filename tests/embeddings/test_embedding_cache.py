"""The content-hash embedding cache, with a fake inner embedder that counts what it embeds."""

import hashlib
import json
import logging
import os

import numpy as np
import pytest

from lmroute.embeddings import cache as cache_module
from lmroute.embeddings import get_embedder
from lmroute.embeddings.base import Embedder, normalize
from lmroute.embeddings.cache import CachedEmbedder, safe_name
from lmroute.exceptions import ConfigError, LmrouteError


class CountingEmbedder(Embedder):
    """Deterministic vectors from a text's hash (salted by name); records every batch it gets."""

    dim = 8

    def __init__(self, name="fake"):
        self.name = name
        self.batches = []

    def embed(self, texts):
        texts = list(texts)
        self.batches.append(texts)
        data = [f"{self.name}|{t}".encode("utf-8", "surrogatepass") for t in texts]
        digests = [hashlib.sha256(d).digest() for d in data]
        rows = [np.frombuffer(digest, dtype=np.int32) for digest in digests]
        return normalize(np.array(rows, dtype=np.float64).reshape(len(texts), self.dim))


TEXTS = ["alpha", "beta", "gamma", "", "Grüße 👋", "beta"]


def shard_files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_second_call_embeds_nothing(cache_dir):
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    first = cached.embed(TEXTS)
    assert inner.batches == [["alpha", "beta", "gamma", "", "Grüße 👋"]]  # one batch, duplicates once
    np.testing.assert_array_equal(first, inner.embed(TEXTS))
    inner.batches.clear()
    np.testing.assert_array_equal(cached.embed(TEXTS), first)
    assert inner.batches == []
    # a new instance (another process) reads the same entries from disk
    again = CachedEmbedder(inner)
    np.testing.assert_array_equal(again.embed(list(reversed(TEXTS))), first[::-1])
    assert inner.batches == []
    assert cached.path.parent == cache_dir / "embeddings"


def test_only_misses_are_embedded_in_one_batch(cache_dir):
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    cached.embed(["a", "b"])
    out = cached.embed(["b", "c", "a", "d", "c"])
    assert inner.batches[-1] == ["c", "d"]
    np.testing.assert_array_equal(out, CountingEmbedder().embed(["b", "c", "a", "d", "c"]))


def test_empty_input(cache_dir):
    inner = CountingEmbedder()
    out = CachedEmbedder(inner).embed([])
    assert out.shape == (0, 8) and inner.batches == []


def test_different_embedders_never_share_entries(cache_dir, tmp_path):
    a, b = CountingEmbedder("a:b"), CountingEmbedder("a_b")
    va = CachedEmbedder(a).embed(TEXTS)
    vb = CachedEmbedder(b).embed(TEXTS)
    assert len(b.batches) == 1 and not np.allclose(va, vb)
    assert safe_name("a:b") != safe_name("a_b")
    assert CachedEmbedder(a).path != CachedEmbedder(b).path
    # even forced into one folder, keys and indexes keep them apart
    shared = tmp_path / "shared"
    CachedEmbedder(a, directory=shared).embed(TEXTS)
    np.testing.assert_array_equal(CachedEmbedder(b, directory=shared).embed(TEXTS), vb)
    assert len(b.batches) == 2


def test_embedders_sharing_one_folder_keep_each_others_entries(tmp_path, caplog):
    # a folder given as cache_dir to several embedders: each took the others' shards for damaged
    # ones, deleted them with a warning, and so re-embedded every text each time
    a, b = CountingEmbedder("a"), CountingEmbedder("b")
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.cache"):
        for _ in range(2):
            va = CachedEmbedder(a, directory=tmp_path).embed(TEXTS)
            vb = CachedEmbedder(b, directory=tmp_path).embed(TEXTS)
    assert len(a.batches) == len(b.batches) == 1
    np.testing.assert_array_equal(va, CountingEmbedder("a").embed(TEXTS))
    np.testing.assert_array_equal(vb, CountingEmbedder("b").embed(TEXTS))
    assert len(list(tmp_path.glob("*.json"))) == 2 and "damaged" not in caplog.text


def test_a_shard_of_another_size_is_left_alone(cache_dir, caplog):
    # one named alike that states another size (an OpenAI-compatible model's dim) is not damaged:
    # deleted as such, it cost a mistyped dim every vector paid for under the right one
    class Shorter(CountingEmbedder):
        dim = 4

        def embed(self, texts):
            self.batches.append(list(texts))
            return normalize(CountingEmbedder(self.name).embed(texts)[:, :4])

    inner, other = CountingEmbedder(), Shorter()
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.cache"):
        for _ in range(2):
            CachedEmbedder(inner).embed(TEXTS)
            CachedEmbedder(other).embed(TEXTS)
    assert len(inner.batches) == len(other.batches) == 1 and "damaged" not in caplog.text


def test_lone_surrogates_are_cached(cache_dir):
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    cached.embed(["bad \ud800 text"])
    cached.embed(["bad \ud800 text"])
    assert len(inner.batches) == 1


@pytest.mark.parametrize(
    "damage",
    [
        "truncate_npy",
        "flip_npy_byte",
        "garbage_json",
        "json_without_format",
        "json_with_wrong_count",
        "missing_npy",
    ],
)
def test_damaged_shards_are_ignored_and_embedded_again(cache_dir, caplog, damage):
    inner = CountingEmbedder()
    expected = CachedEmbedder(inner).embed(TEXTS)
    folder = CachedEmbedder(inner).path
    (npy,) = folder.glob("*.npy")
    index_file = npy.with_suffix(".json")
    index = json.loads(index_file.read_text())
    if damage == "truncate_npy":
        npy.write_bytes(npy.read_bytes()[:100])
    elif damage == "flip_npy_byte":
        data = bytearray(npy.read_bytes())
        data[-3] ^= 0xFF
        npy.write_bytes(bytes(data))
    elif damage == "garbage_json":
        index_file.write_text('{"format": 1, "keys": [')
    elif damage == "json_without_format":
        index_file.write_text(json.dumps({k: v for k, v in index.items() if k != "format"}))
    elif damage == "json_with_wrong_count":
        index_file.write_text(json.dumps({**index, "keys": index["keys"][:-1]}))
    else:
        npy.unlink()
    inner.batches.clear()
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.cache"):
        out = CachedEmbedder(inner).embed(TEXTS)
    np.testing.assert_array_equal(out, expected)
    assert len(inner.batches) == 1
    if damage != "missing_npy":
        assert "damaged shard" in caplog.text
    # the damaged shard is gone and the cache works again
    inner.batches.clear()
    CachedEmbedder(inner).embed(TEXTS)
    assert inner.batches == []


def test_an_array_file_that_cannot_be_read_is_embedded_again(cache_dir, monkeypatch, caplog):
    # a bad disk sector (EIO), or a file another user wrote with umask 077 (EACCES): the OSError
    # escaped embed(), although a damaged cache costs only re-embedding
    import errno
    from pathlib import Path

    inner = CountingEmbedder()
    expected = CachedEmbedder(inner).embed(TEXTS)
    read_bytes = Path.read_bytes

    def failing(path):
        if path.suffix == ".npy":
            raise OSError(errno.EIO, "Input/output error", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", failing)
    inner.batches.clear()
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.cache"):
        np.testing.assert_array_equal(CachedEmbedder(inner).embed(TEXTS), expected)
    assert len(inner.batches) == 1 and "Input/output error" in caplog.text


def test_orphan_array_and_temporary_files_are_ignored(cache_dir):
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    cached.path.mkdir(parents=True)
    np.save(cached.path / "orphan.npy", np.ones((2, 8), dtype=np.float32))  # index never written
    (cached.path / ".abc.json.tmp123").write_text("{")
    cached.embed(["x"])
    assert inner.batches == [["x"]]


def test_small_shards_are_merged(cache_dir, monkeypatch):
    monkeypatch.setattr(cache_module, "_MERGE_AT", 4)
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    texts = [f"prompt {i}" for i in range(10)]
    for text in texts:
        cached.embed([text])
    files = shard_files(cached.path)
    assert len(files) < 2 * 4 and not [f for f in files if f.startswith(".")]
    inner.batches.clear()
    fresh = CachedEmbedder(inner)
    np.testing.assert_array_equal(fresh.embed(texts), CountingEmbedder().embed(texts))
    assert inner.batches == []


def test_entries_written_by_another_instance_are_seen(cache_dir):
    inner = CountingEmbedder()
    one, two = CachedEmbedder(inner), CachedEmbedder(inner)
    one.embed(["warm"])
    two.embed(["warm", "other"])
    assert inner.batches == [["warm"], ["other"]]


def test_wrong_shape_from_inner_is_an_error(cache_dir):
    class Broken(CountingEmbedder):
        def embed(self, texts):
            return np.zeros((1, self.dim), dtype=np.float32)

    with pytest.raises(LmrouteError, match=r"returned shape \(1, 8\) for 2 texts"):
        CachedEmbedder(Broken()).embed(["a", "b"])


def test_unwritable_cache_still_embeds(cache_dir, caplog):
    cache_dir.mkdir()
    (cache_dir / "embeddings").write_text("a file where a folder should be")
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.cache"):
        out = cached.embed(["a"])
        cached.embed(["b"])  # warned once, not once a batch of a long run
    np.testing.assert_array_equal(out, CountingEmbedder().embed(["a"]))
    assert [r.getMessage().startswith("embedding cache: could not write") for r in caplog.records] == [True]


def test_a_full_disk_leaves_no_array_without_its_index(cache_dir, monkeypatch, caplog):
    # the array fit and took the disk's last space, the small index did not: the array stayed,
    # unused and never deleted, so the disk stayed full after the run
    import errno

    write_atomic = cache_module.write_atomic

    def full(path, data):
        if path.suffix == ".json":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write_atomic(path, data)

    monkeypatch.setattr(cache_module, "write_atomic", full)
    inner = CountingEmbedder()
    cached = CachedEmbedder(inner)
    with caplog.at_level(logging.WARNING, logger="lmroute.embeddings.cache"):
        np.testing.assert_array_equal(cached.embed(TEXTS), CountingEmbedder().embed(TEXTS))
    assert "No space left on device" in caplog.text and shard_files(cached.path) == []


def test_shards_merged_or_deleted_by_another_instance(cache_dir, monkeypatch):
    monkeypatch.setattr(cache_module, "_MERGE_AT", 3)
    inner = CountingEmbedder()
    writer, reader = CachedEmbedder(inner), CachedEmbedder(inner)
    writer.embed(["a"])
    writer.embed(["b"])
    reader.embed(["a", "b"])
    writer.embed(["c"])  # third small shard: all merged into one, the old files deleted
    assert len(list(writer.path.glob("*.json"))) == 1
    inner.batches.clear()
    np.testing.assert_array_equal(reader.embed(["a", "b", "c"]), CountingEmbedder().embed(["a", "b", "c"]))
    assert inner.batches == []
    # a shard indexed but not yet loaded whose files disappear: its texts are embedded again
    late = CachedEmbedder(inner)
    late._scan()
    for path in writer.path.iterdir():
        path.unlink()
    np.testing.assert_array_equal(late.embed(["a", "d"]), CountingEmbedder().embed(["a", "d"]))
    assert inner.batches == [["a", "d"]]


def test_concurrent_merges_lose_no_entry(cache_dir, monkeypatch):
    # Two processes embedded the same text at once, so it was in two shards; each process's view
    # held it in a different one. Each merged away the shard it did not look in, carrying only the
    # rows it looked up there, and counted on the other shard, which the other process deleted.
    monkeypatch.setattr(cache_module, "_SMALL_SHARD", 3)
    monkeypatch.setattr(cache_module, "_MERGE_AT", 2)
    c = CachedEmbedder(CountingEmbedder())

    class Meanwhile(CountingEmbedder):
        def embed(self, texts):
            if not self.batches:  # while d embeds, c embeds "k" too
                c.embed(["k", "x1", "x2"])
            return super().embed(texts)

    d = CachedEmbedder(Meanwhile())
    d.embed(["k", "y1", "y2"])  # "k" is in two shards: c's and d's
    d.embed(["y1"])  # d reads the index of c's shard, and so looks for "k" there
    c.embed(["c1"])  # c reads d's shard (looks for "k" there) and merges
    d.embed(["d1"])  # d merges
    inner = CountingEmbedder()
    texts = ["k", "x1", "x2", "y1", "y2", "c1", "d1"]
    np.testing.assert_array_equal(CachedEmbedder(inner).embed(texts), CountingEmbedder().embed(texts))
    assert inner.batches == []


def test_a_shard_whose_texts_are_all_in_another_is_merged_too(cache_dir, monkeypatch):
    # it was left out of every merge (no text was looked up there), and stayed on disk for good
    monkeypatch.setattr(cache_module, "_MERGE_AT", 3)
    c = CachedEmbedder(CountingEmbedder())

    class Meanwhile(CountingEmbedder):
        def embed(self, texts):
            if not self.batches:
                c.embed(["k"])
            return super().embed(texts)

    CachedEmbedder(Meanwhile()).embed(["k"])  # "k" in two shards
    for text in ["a", "b", "c"]:
        c.embed([text])
    (index,) = c.path.glob("*.json")
    assert sorted(json.loads(index.read_text())["keys"]) == sorted(c.key(t) for t in ["k", "a", "b", "c"])


def test_max_bytes_deletes_the_oldest_shards_of_this_embedder_only(tmp_path):
    # the cache grew without bound: a long-lived user of it could fill the disk
    folder = tmp_path / "shared"
    CachedEmbedder(CountingEmbedder("other"), directory=folder).embed(["o"])
    probe = CachedEmbedder(CountingEmbedder(), directory=tmp_path / "probe")
    probe.embed(["t0"])
    shard_bytes = sum(p.stat().st_size for p in probe.path.iterdir())  # one text's shard
    cached = CachedEmbedder(CountingEmbedder(), directory=folder, max_bytes=shard_bytes * 5 // 2)
    written = set(folder.glob("*.json"))
    for i, text in enumerate(["t0", "t1", "t2", "t3"]):
        cached.embed([text])
        (new,) = set(folder.glob("*.json")) - written
        os.utime(new, (1_000_000 + i, 1_000_000 + i))  # file times may be too coarse to order them
        written.add(new)
    assert len(list(folder.glob("*.json"))) == 3  # t2's, t3's and the other embedder's
    inner = CountingEmbedder()
    texts = ["t0", "t1", "t2", "t3"]
    np.testing.assert_array_equal(CachedEmbedder(inner, directory=folder).embed(texts), inner.embed(texts))
    assert inner.batches[0] == ["t0", "t1"]
    other = CountingEmbedder("other")
    CachedEmbedder(other, directory=folder).embed(["o"])
    assert other.batches == []


def test_max_bytes_is_passed_by_get_embedder_and_checked():
    embedder = get_embedder("openai:m?dim=4", cache_max_bytes=10**9)
    assert isinstance(embedder, CachedEmbedder) and embedder.max_bytes == 10**9
    with pytest.raises(ConfigError, match="max_bytes must be at least 1"):
        get_embedder("openai:m?dim=4", cache_max_bytes=0)
