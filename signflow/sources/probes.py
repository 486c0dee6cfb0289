"""Record each obtained video's probe in the index, so split and crop never open the videos.

Download is the one stage that must read every video anyway (it obtains and verifies them);
reading the container metadata there as well lets ``index.json`` carry what crop plans from
(width, height, fps, frame count). In the Kubeflow pipeline the index then travels alone to
split and crop, and only extract receives the videos (docs/kubeflow.md section 6).

A probe already in the index is kept (the ``dvc`` source fetches an index that this stage
wrote); an obtained file without one is probed where it arrived. A file that cannot be probed
is not obtained after all: it loses ``file`` and its status row becomes ``corrupt``, so later
stages can trust ``file``.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from signflow import video
from signflow.index import GlossEntry, Instance, VideoProbe
from signflow.sources import VideoStatus

log = logging.getLogger(__name__)


def probe_file(path: str | Path) -> VideoProbe:
    """:func:`signflow.video.probe` as the index records it; raises :class:`signflow.video.VideoError`."""
    return VideoProbe.model_validate(video.probe(path).to_dict())


def record_probes(
    entries: list[GlossEntry], rows: list[VideoStatus], out_dir: str | Path, *, threads: int = 8
) -> tuple[list[GlossEntry], list[VideoStatus]]:
    """Give every obtained instance its probe; an unprobeable file becomes a ``corrupt`` row."""
    out_dir = Path(out_dir)
    pending = [inst for entry in entries for inst in entry.instances if inst.file and inst.probe is None]

    def one(inst: Instance) -> tuple[str, VideoProbe | video.VideoError]:
        assert inst.file is not None
        try:
            return inst.video_id, probe_file(out_dir / inst.file)
        except video.VideoError as error:
            return inst.video_id, error

    # Probing is I/O-bound (a container header per file), so a few threads overlap it.
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = dict(tqdm(pool.map(one, pending), total=len(pending), desc="probe", unit="video",
                            leave=False, disable=None))
    failed = {video_id: error for video_id, error in results.items() if isinstance(error, video.VideoError)}
    new_entries = []
    for entry in entries:
        instances = []
        for inst in entry.instances:
            result = results.get(inst.video_id)
            if isinstance(result, VideoProbe):
                inst = inst.model_copy(update={"probe": result})
            elif result is not None:
                inst = inst.model_copy(update={"file": None})
            instances.append(inst)
        new_entries.append(entry.model_copy(update={"instances": instances}))
    new_rows = []
    for row in rows:
        error = failed.get(row.video_id)
        if error is not None and row.status == "ok":
            row = VideoStatus(row.video_id, row.gloss, "corrupt", f"{error.reason}: {error.detail}", 0, row.url)
        new_rows.append(row)
    if failed:
        log.warning("%d obtained videos could not be probed and are left out (e.g. %s)", len(failed), next(iter(failed)))
    return new_entries, new_rows
