"""Shared fixtures: fake vendor distributions found through real entry-point discovery."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import mpx

FAKE_PLUGINS = Path(__file__).parent / "fake_plugins"


@pytest.fixture
def install_plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """install_plugins("good", "broken", ...): put tests/fake_plugins/<name> on sys.path, then rediscover.

    Afterwards sys.path, the plugin modules and the registry are as before.
    """
    monkeypatch.delenv("MPX_DISABLE_PLUGINS", raising=False)
    added: list[str] = []
    before = set(sys.modules)

    def install(*names: str) -> None:
        for name in names:
            folder = str(FAKE_PLUGINS / name)
            assert Path(folder).is_dir(), f"no fake plugin {name!r} in {FAKE_PLUGINS}"
            sys.path.insert(0, folder)
            added.append(folder)
        importlib.invalidate_caches()
        mpx.reload_plugins()

    yield install
    for folder in added:
        sys.path.remove(folder)
    for module in set(sys.modules) - before:
        if getattr(sys.modules[module], "__file__", None) and str(FAKE_PLUGINS) in sys.modules[module].__file__:
            del sys.modules[module]
    importlib.invalidate_caches()
    monkeypatch.undo()
    mpx.reload_plugins()
