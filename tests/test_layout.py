"""The package's shape: data flows one way (CLI -> render -> engine/motion/music/media ->
foundation) and no module imports itself back through another."""

import ast

from conftest import ROOT

PACKAGE = ROOT / "renderer"
FOUNDATION = {"errors", "presets", "fence", "outputs", "progress", "background", "curves",
              "expressions", "builtin", "drivable", "keyframes", "schedules", "controls"}
# what each part may import besides itself and the foundation
ALLOWED = {"foundation": set(), "media": set(), "engine": {"media"},
           "motion": {"engine", "media"}, "music": {"media"},
           "render": {"engine", "media", "motion", "music"},
           "live": {"engine", "media", "motion", "music"},
           "controller": {"engine", "media", "motion", "music", "render"},
           "jobs": set(),
           "cli": {"controller", "media", "engine", "motion", "music", "render", "live", "jobs"},
           "api": {"media", "engine"}}


def part_of(module: str) -> str:
    name = module.split(".")[1] if module.count(".") else ""
    if module == "renderer":
        return "api"
    return "foundation" if name in FOUNDATION else name


def imports() -> dict[str, set[str]]:
    """module -> the renderer modules it imports (at any level, lazy imports included)."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                base = node.module
                if base.startswith("renderer"):
                    folder = ROOT / base.replace(".", "/")
                    for alias in node.names:  # a submodule, or a name from the module itself
                        found.add(f"{base}.{alias.name}" if (folder / f"{alias.name}.py").exists()
                                  else base)
            elif isinstance(node, ast.ImportFrom) and node.level:
                found.add(f"relative import in {module}")
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("renderer"))
        graph[module] = found
    return graph


def test_imports_flow_one_way():
    wrong = []
    for module, targets in imports().items():
        mine = part_of(module)
        for target in targets:
            theirs = part_of(target)
            if theirs not in (mine, "foundation") and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_circles():
    graph = {m: {t for t in ts if t in imports_cache} for m, ts in imports_cache.items()}
    circles = []

    def visit(node, path):
        for nxt in graph[node]:
            if nxt in path:
                circles.append(" -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in done:
                visit(nxt, path + [nxt])
        done.add(node)

    done: set[str] = set()
    for module in graph:
        if module not in done:
            visit(module, [module])
    assert not circles, circles


def test_every_module_says_what_it_owns():
    missing = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
               if p.name != "__main__.py" and ast.get_docstring(ast.parse(p.read_text())) is None]
    assert not missing, missing


imports_cache = imports()
