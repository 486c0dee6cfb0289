"""Sharded .npy storage: streaming writes, shard rollover, memory-mapped reads, atomic folder."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from signflow.shards import ShardReader, ShardWriter


def test_round_trip_across_shards(tmp_path: Path) -> None:
    rows = [np.full((2, 3), i, dtype=np.uint8) for i in range(5)]
    with ShardWriter(tmp_path / "s", {"x": ((2, 3), "uint8")}, shard_bytes=12, metadata={"kind": "test"}) as writer:
        for i, row in enumerate(rows):
            writer.add({"x": row}, video_id=f"v{i}", label=i % 2)
    reader = ShardReader(tmp_path / "s")
    assert len(reader) == 5 and len(reader.shards) == 3 and reader.metadata == {"kind": "test"}
    for i in range(5):
        np.testing.assert_array_equal(reader.read(i), rows[i])
    assert reader.items[3]["video_id"] == "v3" and reader.items[3]["shard"] == 1
    assert np.load(tmp_path / "s" / "shard-00002.x.npy").shape == (1, 2, 3)  # plain .npy, true row count
    clone = pickle.loads(pickle.dumps(reader))  # DataLoader workers
    np.testing.assert_array_equal(clone.read(4), rows[4])


def test_failed_write_leaves_no_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="row shape"):
        with ShardWriter(tmp_path / "s", {"x": ((2,), "float32")}) as writer:
            writer.add({"x": np.zeros(2)})
            writer.add({"x": np.zeros(3)})
    assert list(tmp_path.iterdir()) == []


def test_reader_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="extract stage"):
        ShardReader(tmp_path)
    (tmp_path / "index.json").write_text(json.dumps({"format_version": 99}))
    with pytest.raises(ValueError, match="unsupported shard format"):
        ShardReader(tmp_path)
