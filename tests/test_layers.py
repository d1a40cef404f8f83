"""The layer rules of the README's architecture picture, checked on every import statement.

    doors        ldm_med.cli, ldm_med.batch, napari_plugin      (call the public API)
    public API   ldm_med (lazy names), ldm_med.api
    engines      ldm_med.pipelines  |  ldm_med.train            (peers: neither imports the other)
    shared       ldm_med.inpainting, ldm_med.generation         (what both engines need)
    core         io, data, masks, metrics, config, nets, diffusion, checkpoint, options
    base         volume, errors, utils, progress, lazy

A module imports only from its own layer or the layers below it; doors may not reach into the
reconstruction and generation internals (inpainting, generation, nets, diffusion, pipelines.reconstruct,
pipelines.generate).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

LAYERS = {
    "base": ("volume", "errors", "utils", "progress", "lazy"),
    "core": ("io", "data", "masks", "metrics", "config", "nets", "diffusion", "checkpoint", "options",
             "models"),
    "shared": ("inpainting", "generation"),
    "engines": ("pipelines", "train"),
    "api": ("", "api"),
    "doors": ("cli", "batch", "__main__", "napari_plugin"),
}
RANK = {part: rank for rank, parts in enumerate(LAYERS.values()) for part in parts}
PEERS = {("pipelines", "train"), ("train", "pipelines")}
DOOR_FORBIDDEN = ("ldm_med.inpainting", "ldm_med.generation", "ldm_med.nets", "ldm_med.diffusion",
                  "ldm_med.pipelines.reconstruct", "ldm_med.pipelines.generate")
ENTRY_POINTS = {"ldm_med.train.__main__"}  # `python -m ldm_med.train` is a door onto the CLI


def part_of(module: str) -> str:
    """``ldm_med.io.nifti`` -> ``io``; ``ldm_med`` -> ``""``; ``napari_plugin._widget`` -> napari_plugin."""
    pieces = module.split(".")
    if pieces[0] == "napari_plugin":
        return "napari_plugin"
    return pieces[1] if len(pieces) > 1 else ""


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(tree: ast.AST) -> list[tuple[str, int, set[str]]]:
    """``(imported module, line, names)`` for every project import, with ``from ldm_med import x``
    read as ``ldm_med.x`` when ``x`` is a submodule (and as ``ldm_med`` for an API name)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno, set()) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (ROOT / Path(*sub.split("."))).is_dir()
                found.append((sub if is_module else node.module, node.lineno, {alias.name}))
    return [f for f in found if f[0].split(".")[0] in ("ldm_med", "napari_plugin")]


def violations(here: str, source: str) -> list[str]:
    """What module ``here`` (source text ``source``) imports against the rules."""
    if here in ENTRY_POINTS:
        return []
    mine = part_of(here)
    bad = []
    for target, line, names in imports(ast.parse(source)):
        theirs = part_of(target)
        if target == "ldm_med":  # the public API; below it only the version may be read
            if RANK[mine] < RANK[""] and names - {"__version__"}:
                bad.append(f"{here}:{line}: {here} ({mine}) imports the public API {sorted(names)}")
        elif (mine, theirs) in PEERS or RANK[theirs] > RANK[mine]:
            bad.append(f"{here}:{line}: {here} ({mine}) imports {target} ({theirs})")
        elif RANK[mine] == RANK["cli"] and target.startswith(DOOR_FORBIDDEN):
            bad.append(f"{here}:{line}: door {here} reaches into {target}")
    return bad


def source_files() -> list[Path]:
    return sorted(list((ROOT / "ldm_med").rglob("*.py")) + list((ROOT / "napari_plugin").rglob("*.py")))


def test_every_package_has_a_layer():
    parts = {part_of(module_name(p)) for p in source_files()}
    assert parts <= set(RANK), f"give these a layer in tests/test_layers.py: {parts - set(RANK)}"


def test_imports_follow_the_layers():
    bad = [v for path in source_files() for v in violations(module_name(path), path.read_text())]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("here, source, message", [
    ("ldm_med.train.probe", "from ldm_med.pipelines.reconstruct import reconstruct\n",
     "imports ldm_med.pipelines.reconstruct (pipelines)"),
    ("ldm_med.inpainting.probe", "import ldm_med.cli\n", "imports ldm_med.cli (cli)"),
    ("ldm_med.io.probe", "from ldm_med import reconstruct\n", "imports the public API"),
    ("ldm_med.cli.probe", "from ldm_med.inpainting.models import load_refiner\n", "reaches into"),
])
def test_the_check_catches_a_wrong_import(here, source, message):
    assert any(message in v for v in violations(here, source))
