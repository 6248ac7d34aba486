"""A torch.distributed.checkpoint reader that unpickles only DCP's own metadata classes.

DCP writes its `.metadata` with pickle and reads it back with an unrestricted `pickle.load`, and loads
non-tensor items with `torch.load(weights_only=False)`: either runs code from a crafted folder. This reader
resolves only the globals DCP's metadata uses; mpx saves tensors only, so no bytes item is ever read.
"""

from __future__ import annotations

import io
import pathlib
import pickle
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint import filesystem as dcp_filesystem
from torch.distributed.checkpoint import metadata as dcp_metadata

from mpx.errors import CheckpointError

_METADATA_CLASSES = {
    name
    for name, value in vars(dcp_metadata).items()
    if isinstance(value, type) and value.__module__ == dcp_metadata.__name__
}
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(dcp_metadata.__name__, name): getattr(dcp_metadata, name) for name in _METADATA_CLASSES},
    (dcp_filesystem.__name__, "_StorageInfo"): dcp_filesystem._StorageInfo,
    ("torch", "Size"): torch.Size,
    ("torch.serialization", "_get_layout"): torch.serialization._get_layout,
    ("pathlib", "PosixPath"): pathlib.PosixPath,
    ("pathlib", "WindowsPath"): pathlib.PureWindowsPath,
    ("collections", "OrderedDict"): __import__("collections").OrderedDict,
}


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a checkpoint's metadata")


def read_metadata(data: bytes, source: object) -> Any:
    """Unpickle DCP metadata allowing only its own classes; anything else is a CheckpointError."""
    try:
        metadata = _MetadataUnpickler(io.BytesIO(data)).load()
    except Exception as error:
        raise CheckpointError(
            f"{source}: the checkpoint metadata holds something other than DCP metadata ({error}); "
            "if you trust the folder, pass trusted=True"
        ) from None
    if not isinstance(metadata, dcp_metadata.Metadata):
        raise CheckpointError(f"{source}: .metadata is not torch.distributed.checkpoint metadata")
    return metadata


class SafeFileSystemReader(FileSystemReader):
    """FileSystemReader whose read_metadata() refuses every pickled global but DCP's metadata classes."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            metadata = read_metadata(stream.read(), path)
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = dcp_metadata.StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def tensor_entries(metadata: Any) -> dict[str, Any]:
    """Key -> TensorStorageMetadata (global size, dtype) of every tensor item of a checkpoint."""
    return {
        key: entry
        for key, entry in metadata.state_dict_metadata.items()
        if isinstance(entry, dcp_metadata.TensorStorageMetadata)
    }
