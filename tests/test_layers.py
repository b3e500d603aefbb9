"""The package's layers, checked from the imports as written (parsed, nothing imported): arrows point down.

FLOORS is the one statement of the layer order (ARCHITECTURE.md explains it). A unit is a folder of the
package, `signals.py`, the package's other top-level modules (`base`), or the entry points (the scripts at
the top of the repository with `godot_rl_cli/cli/`). A unit imports its own modules and units on lower
floors only; units on one floor know nothing of each other (SB3 and RLlib are independent backends).
Every import counts, a function's deferred one too. A new folder must be placed here before it is used.
"""

import ast
from pathlib import Path, PurePosixPath
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.fast

PACKAGE = "godot_rl_cli"
FLOORS: Tuple[Tuple[str, ...], ...] = (  # top to bottom
    ("entry points",),  # top-level scripts and godot_rl_cli/cli/: parse the flags, call the package
    ("play", "search", "demos"),  # playback, hyperparameter search, demonstrations: they drive a trainer
    ("sb3", "rllib"),  # the two training backends
    ("onnx",),  # export of a loaded model or policy (the trainers export best.onnx through it)
    ("signals",),  # SIGINT/SIGTERM handling, which stops the games
    ("game",),  # one Godot game: settings, process, wire protocol, spaces
    ("base",),  # algorithms, errors, metrics, manifest, ...: no ML library at import time
)
FLOOR_OF = {unit: number for number, units in enumerate(FLOORS) for unit in units}


def unit_of(path: PurePosixPath) -> str:
    """The unit a source file (relative to the repository) belongs to."""
    if path.parts[0] != PACKAGE:
        return "entry points"
    if len(path.parts) == 2:
        return "signals" if path.name == "signals.py" else "base"
    return "entry points" if path.parts[1] == "cli" else path.parts[1]


def source_files(root: Path) -> List[PurePosixPath]:
    """The top-level scripts and every module of the package."""
    scripts = sorted(root.glob("*.py"))
    modules = sorted((root / PACKAGE).rglob("*.py"))
    return [PurePosixPath(path.relative_to(root).as_posix()) for path in scripts + modules]


def module_file(root: Path, dotted: str) -> Optional[PurePosixPath]:
    """The file of a module or package of the tree, or None when it is not one."""
    base = PurePosixPath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if (root / candidate).is_file():
            return candidate
    return None


def imported_names(path: PurePosixPath, tree: ast.AST) -> Iterator[Tuple[str, List[str], int]]:
    """(dotted module, names taken from it, line) of every import in the file, relative ones resolved."""
    package = list(path.parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [alias.name for alias in node.names], node.lineno


def internal_imports(root: Path) -> Dict[PurePosixPath, Set[Tuple[PurePosixPath, int]]]:
    """Each file's imports of the package's own modules: {file: {(imported file, line)}}. `from X import
    name` imports the submodule X.name when there is one, else X."""
    found: Dict[PurePosixPath, Set[Tuple[PurePosixPath, int]]] = {}
    for path in source_files(root):
        tree = ast.parse((root / path).read_text(), filename=str(path))
        targets: Set[Tuple[PurePosixPath, int]] = set()
        for module, names, line in imported_names(path, tree):
            if module.split(".")[0] != PACKAGE:
                continue
            submodules = [module_file(root, f"{module}.{name}") for name in names]
            if not names or None in submodules:
                submodules.append(module_file(root, module))
            targets.update((target, line) for target in submodules if target not in (None, path))
        found[path] = targets
    return found


def layer_violations(root: Path) -> List[str]:
    """One line per import that does not point down, or per file on no floor."""
    problems = []
    for path, targets in internal_imports(root).items():
        unit = unit_of(path)
        if unit not in FLOOR_OF:
            problems.append(f"{path}: unit {unit!r} is on no floor (place it in FLOORS)")
            continue
        for target, line in sorted(targets):
            other = unit_of(target)
            if other == unit or FLOOR_OF.get(other, -1) > FLOOR_OF[unit]:
                continue
            problems.append(f"{path}:{line} ({unit}) imports {target} ({other}): not on a lower floor")
    return problems


def import_circles(root: Path) -> List[List[PurePosixPath]]:
    """Files that import each other in a loop (a deferred import included)."""
    graph = {path: {target for target, _ in targets} for path, targets in internal_imports(root).items()}
    circles, state = [], {}  # state: 1 on the current path, 2 done

    def visit(path: PurePosixPath, trail: List[PurePosixPath]) -> None:
        state[path] = 1
        for target in sorted(graph.get(path, ())):
            if state.get(target) == 1:
                circles.append(trail[trail.index(target) :] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[path] = 2

    for path in sorted(graph):
        if path not in state:
            visit(path, [path])
    return circles


def test_every_import_points_down():
    assert layer_violations(REPO_ROOT) == []


def test_no_module_imports_itself_back():
    assert import_circles(REPO_ROOT) == []


def test_every_internal_import_names_a_module_of_the_package():
    """A deferred import of a module that no longer exists would only fail when its function runs."""
    missing = [
        f"{path}:{line} {module}"
        for path in source_files(REPO_ROOT)
        for module, _, line in imported_names(path, ast.parse((REPO_ROOT / path).read_text()))
        if module.split(".")[0] == PACKAGE and module_file(REPO_ROOT, module) is None
    ]
    assert missing == []


def _tree(root: Path, files: Dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checks_find_an_upward_import_a_peer_import_a_circle_and_an_unplaced_folder(tmp_path):
    root = _tree(
        tmp_path,
        {
            "script.py": "from godot_rl_cli.sb3 import vec_env\n",
            f"{PACKAGE}/__init__.py": "",
            f"{PACKAGE}/errors.py": "def helper():\n    from godot_rl_cli.game import process\n",
            f"{PACKAGE}/game/__init__.py": "",
            f"{PACKAGE}/game/process.py": "from godot_rl_cli import errors\nfrom . import spaces\n",
            f"{PACKAGE}/game/spaces.py": "import godot_rl_cli.game.process\n",
            f"{PACKAGE}/sb3/__init__.py": "",
            f"{PACKAGE}/sb3/vec_env.py": "from godot_rl_cli.rllib.env import X\n",
            f"{PACKAGE}/rllib/__init__.py": "",
            f"{PACKAGE}/rllib/env.py": "from godot_rl_cli.game import process\n",
            f"{PACKAGE}/gadgets/__init__.py": "",
        },
    )
    problems = layer_violations(root)
    assert problems == [
        f"{PACKAGE}/errors.py:2 (base) imports {PACKAGE}/game/process.py (game): not on a lower floor",
        f"{PACKAGE}/gadgets/__init__.py: unit 'gadgets' is on no floor (place it in FLOORS)",
        f"{PACKAGE}/sb3/vec_env.py:1 (sb3) imports {PACKAGE}/rllib/env.py (rllib): not on a lower floor",
    ]
    circles = {tuple(str(path) for path in circle) for circle in import_circles(root)}
    assert (
        f"{PACKAGE}/errors.py",
        f"{PACKAGE}/game/process.py",
        f"{PACKAGE}/errors.py",
    ) in circles
    assert any(f"{PACKAGE}/game/spaces.py" in circle for circle in circles)
