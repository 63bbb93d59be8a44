"""``init``: a new filter project from a template shipped in this package."""

from __future__ import annotations

from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from ._errors import ProjectError
from ._project import LANGUAGES, NAME_RE, Project, load_project

__all__ = ["init_project"]


def _placeholders(name: str) -> dict[str, str]:
    return {
        "__NAME__": name,
        "__ROOT_ID__": name,
        "__HEADER__": f"x-{name}",
        "__METRIC__": f"{name.replace('-', '_')}_requests",
    }


def _copy(src: Traversable, dst: Path, values: dict[str, str]) -> None:
    for item in src.iterdir():
        target = dst / item.name
        if item.is_dir():
            if item.name == "__pycache__":
                continue
            target.mkdir()
            _copy(item, target, values)
            continue
        text = item.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace(key, value)
        target.write_text(text, encoding="utf-8")


def init_project(root: Path, language: str, name: str | None = None) -> Project:
    """Create a project in ``root`` (absent or empty) from the ``language`` template.

    ``name`` (default: the directory's name) becomes the root id, the response header
    ``x-NAME`` and the counter ``NAME_requests``. Raises :class:`ProjectError`.
    """
    if language not in LANGUAGES:
        raise ProjectError(f"--language must be one of {', '.join(LANGUAGES)} (got {language!r})")
    name = name if name is not None else root.resolve().name.lower()
    if not NAME_RE.match(name):
        raise ProjectError(f"project name {name!r} must be lowercase letters, digits, '-' or '_' "
                           "(start with a letter or digit); pass --name")
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise ProjectError(f"{root}: exists and is not an empty directory")
    root.mkdir(parents=True, exist_ok=True)
    template = resources.files("xds_server.devkit") / "templates" / language
    _copy(template, root, _placeholders(name))
    return load_project(root)
