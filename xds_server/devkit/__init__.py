"""Build side of the lifecycle: filter project templates, compilers, pre-flight checks.

``init_project`` writes a project from a template shipped in this package
(``templates/<language>``); ``build_project`` compiles it with the language's toolchain
(AssemblyScript via npm, C via clang/lld for wasm32) and checks the module as Envoy would
load it (:func:`check_module`). Errors derive from :class:`DevkitError`. This package
imports only ``xds_server.wasm`` (validation); the CLI deploys what it builds.
"""

from ._build import BuildResult, build_project, check_file
from ._check import ModuleReport, check_module, host_imports
from ._errors import CompileError, DevkitError, ModuleRejected, ProjectError, ToolchainMissing
from ._project import LANGUAGES, MANIFEST, Project, load_project
from ._templates import init_project

__all__ = [
    "LANGUAGES",
    "MANIFEST",
    "BuildResult",
    "CompileError",
    "DevkitError",
    "ModuleRejected",
    "ModuleReport",
    "Project",
    "ProjectError",
    "ToolchainMissing",
    "build_project",
    "check_file",
    "check_module",
    "host_imports",
    "init_project",
    "load_project",
]
