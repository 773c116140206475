import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from grpo_env import plugins


@pytest.fixture
def fresh_plugins():
    """Plugin state rebuilt from entry points before and after the test."""
    plugins.reset()
    yield plugins
    plugins.reset()


@pytest.fixture
def make_dist(tmp_path, monkeypatch, fresh_plugins):
    """Install a small distribution the way pip lays it out (module + dist-info with entry points)
    on a fresh sys.path entry, so discovery goes through real importlib.metadata entry points."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))

    def make(dist: str, entry: str, module: str, source: str, version: str = "1.0") -> None:
        (site / f"{module}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[grpo_env]\n{entry} = {module}\n")
        importlib.invalidate_caches()

    yield make
    for name in list(sys.modules):
        if name.startswith("tp_"):
            del sys.modules[name]
