"""Models loaded once per process: a cohort worker reads, verifies and opens a model folder
for its first case and reuses it for the next ones.

An entry is keyed by the folder, the runtime and the device, and by the name, size and
modification time of every file in the folder: a model that changes on disk is read (and its
SHA-256 verified) again. At most :data:`MAX_MODELS` models are kept (the oldest is dropped).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Callable, Hashable, Tuple

#: Models kept per process.
MAX_MODELS = 2


class ModelCache:
    """Loaded models by (runtime, folder, device, file stamps); see the module docstring."""

    def __init__(self, max_models: int = MAX_MODELS) -> None:
        self.max_models = max_models
        self._models: "OrderedDict[Hashable, object]" = OrderedDict()

    @staticmethod
    def _stamp(folder: Path) -> Tuple:
        return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file())

    def get(self, runtime: str, folder, device: str, load: Callable[[], object]):
        """The model ``load()`` gives for this folder, loading it only when not kept already."""
        folder = Path(folder).resolve()
        key = (runtime, str(folder), device, self._stamp(folder))
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        model = load()
        self._models[key] = model
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)
        return model


#: The process's cache, used by :func:`.inference.segment_with_model` for named models.
PROCESS_MODELS = ModelCache()
