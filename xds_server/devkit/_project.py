"""A filter project on disk: its ``filter.yaml`` manifest and the sources it builds from."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._errors import ProjectError

__all__ = ["LANGUAGES", "MANIFEST", "Project", "load_project"]

MANIFEST = "filter.yaml"
LANGUAGES = ("assemblyscript", "c")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# What a rebuild depends on, per language (globs relative to the project root).
_SOURCES = {
    "assemblyscript": ("assembly/**/*.ts", "package.json", "package-lock.json", MANIFEST),
    "c": ("src/**/*.c", "src/**/*.h", "include/**/*.h", MANIFEST),
}


@dataclass(frozen=True, slots=True)
class Project:
    """A loaded project. ``configuration`` is the plugin configuration that ``dev`` gives a
    filter it creates; ``root_id`` the root context id the module registers ("" = any)."""

    root: Path
    name: str
    language: str
    root_id: str
    configuration: str

    @property
    def default_output(self) -> Path:
        """``build/filter.wasm`` in the project."""
        return self.root / "build" / "filter.wasm"

    def sources(self) -> Iterator[Path]:
        """Every file a rebuild depends on (for watching)."""
        for pattern in _SOURCES[self.language]:
            yield from (p for p in self.root.glob(pattern) if p.is_file())


def load_project(root: Path) -> Project:
    """Read ``root/filter.yaml``. Raises :class:`ProjectError` naming the file and field."""
    path = root / MANIFEST
    try:
        doc: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProjectError(f"{root}: not a filter project (no {MANIFEST}); create one with "
                           f"`xds-server init {root} --language assemblyscript|c`") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProjectError(f"{path}: cannot read: {exc}") from None
    if not isinstance(doc, dict):
        raise ProjectError(f"{path}: must be a mapping with name, language, root_id")
    name, language = doc.get("name"), doc.get("language")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ProjectError(f"{path}: name: must be lowercase letters, digits, '-' or '_' (got {name!r})")
    if language not in LANGUAGES:
        raise ProjectError(f"{path}: language: must be one of {', '.join(LANGUAGES)} (got {language!r})")
    root_id = doc.get("root_id") or ""
    configuration = doc.get("configuration") or ""
    if not isinstance(root_id, str):
        raise ProjectError(f"{path}: root_id: must be a string (got {root_id!r})")
    if not isinstance(configuration, str):
        raise ProjectError(f"{path}: configuration: must be a string (got {configuration!r})")
    return Project(root=root.resolve(), name=name, language=str(language), root_id=root_id,
                   configuration=configuration)
