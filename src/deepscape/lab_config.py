"""A lab's Config without importing the lab.

A lab module imports torch, and often accelerate, transformers or timm: seconds before the first
line of the lesson runs. Its Config needs none of them, only the standard library and
`deepscape.config`. So `deepscape show` and the CLI's early check of `key=value` overrides read
the Config class from the lab's source: the light imports, the definitions the class uses and
the class itself, run in a namespace of their own. A Config that needs more (a value from a heavy
module) comes from importing the lab as usual: slower, never wrong. A test keeps every lab on the
fast path and checks that both paths give the same options.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

from deepscape import landscape

# Modules a Config may use that import nothing heavy. `from __future__ import annotations` is
# left out on purpose: the class's annotations are then evaluated as it is built, so reading its
# field types later needs no module in sys.modules to resolve them in.
LIGHT_MODULES = ("dataclasses", "typing", "deepscape.config")


def config_class(lab: landscape.Lab) -> type:
    """The lab's Config class, from its source when it can be, else from importing the lab."""
    if not lab.available:
        return lab.module().Config  # raises LabNotAvailable, which says what to do instead
    spec = importlib.util.find_spec(lab.module_name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"{lab.id}: no module {lab.module_name}")
    try:
        return read_config(Path(spec.origin), lab.module_name)
    except NameError:  # the Config uses a name from a heavy module
        return lab.module().Config


def module_constants(lab: landscape.Lab, *names: str) -> dict[str, object]:
    """The literal values of `names` assigned at the top of the lab's module (those it has),
    read from its source in one pass: what its card says without importing it."""
    spec = importlib.util.find_spec(lab.module_name)
    if spec is None or spec.origin is None:
        return {}
    found = {}
    for node in ast.parse(Path(spec.origin).read_text()).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id in names:
                    found[target.id] = ast.literal_eval(node.value)
    return found


def read_config(path: Path, module_name: str) -> type:
    """The class `Config` defined in the module at `path`, built from the light imports and the
    module-level definitions it needs (raises NameError when it needs anything else)."""
    body = ast.parse(path.read_text(), str(path)).body
    config = next(
        (node for node in body if isinstance(node, ast.ClassDef) and node.name == "Config"), None
    )
    if config is None:
        raise NameError(f"{module_name} defines no class Config")
    kept = [node for node in body if _is_light_import(node)]
    definitions = [node for node in body[: body.index(config)] if _defined(node)]
    needed, chosen = _used(config), set()
    for node in reversed(definitions):  # a definition may use the ones above it
        if _defined(node) & needed:
            chosen.add(id(node))
            needed |= _used(node)
    kept += [node for node in definitions if id(node) in chosen]
    kept.append(config)
    namespace: dict = {"__name__": module_name}
    code = compile(ast.Module(kept, type_ignores=[]), str(path), "exec", dont_inherit=True)
    exec(code, namespace)
    return namespace["Config"]


def _is_light_import(node: ast.stmt) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and node.module in LIGHT_MODULES
    return isinstance(node, ast.Import) and all(a.name in LIGHT_MODULES for a in node.names)


def _defined(node: ast.stmt) -> set[str]:
    """The module-level names a statement binds (an assignment, a class or a function)."""
    if isinstance(node, ast.ClassDef | ast.FunctionDef):
        return {node.name}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


def _used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
