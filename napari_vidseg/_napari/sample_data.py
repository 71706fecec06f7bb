"""npe2 sample data: the bundled clip, opened lazily like any video."""
from __future__ import annotations


def sample_clip():
    from ..sample import sample_clip_path
    from .reader import read_video

    data, meta, kind = read_video(sample_clip_path())[0]
    meta["name"] = "sample clip"
    return [(data, meta, kind)]
