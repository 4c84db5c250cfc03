"""A router folder damaged by hand or by a tool: a CheckpointError naming it, never a traceback."""

from __future__ import annotations

import json

import pytest

from lmroute.exceptions import CheckpointError
from lmroute.registry import load_router
from lmroute.routers.length import LengthRouter


@pytest.mark.parametrize("metadata", [[1, 2], "trained on arena", 3])
def test_metadata_that_is_not_an_object_is_a_checkpoint_error(tmp_path, metadata):
    """It was given to dict(): TypeError or ValueError tracebacks."""
    folder = LengthRouter().save(tmp_path / "r")
    manifest = json.loads((folder / "config.json").read_text())
    manifest["metadata"] = metadata
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"config\.json: 'metadata' must be an object"):
        load_router(folder)
