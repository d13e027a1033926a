"""Ray Train / Tune checkpoint folders in the results store."""
from __future__ import annotations

from typing import Any

__all__ = ["delete_checkpoint_dirs"]


def delete_checkpoint_dirs(result: Any, keep: frozenset[str] = frozenset()) -> list[str]:
    """Delete the ``checkpoint_*`` folders of a Ray Train / Tune result's run folder
    (``result.path`` on ``result.filesystem``, a pyarrow filesystem), except those named
    in ``keep``. Returns the deleted folder names; a listing or deletion error is raised
    as OSError after the folders already deleted."""
    import pyarrow.fs as pafs

    fs, path = getattr(result, "filesystem", None), getattr(result, "path", None)
    if fs is None or not path:
        return []
    dropped = []
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if (info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")
                and info.base_name not in keep):
            fs.delete_dir(info.path)
            dropped.append(info.base_name)
    return dropped
