"""The library's import graph: each module a node, each import of another library
module an arrow: imports inside functions, `udamobile.deferred` ones and the
modules a registry's `DECLARATIONS` lines name ("module.OBJECT", imported by its
package's `__init__`: the stages') included.

    python tests/import_graph.py [repo]   # modules, levels, arrows; a circle if any

A circle of imports that run when a module loads leaves a module half-initialized
when another is imported first; a deferred import runs when first used, after
every module has loaded, so a circle through one does not fail (the distill
stage's work-directory helpers import the config, which reads the stage
declarations). `import_graph(deferred=False)` leaves deferred arrows out.

A module's level is 0 when it imports no library module, else one more than the
highest level it imports; in a graph without a circle every arrow points down.
"""
import ast
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("udamobile", "data_pipelines", "export")


def library_modules(repo=REPO):
    """{module name: path} of every module of the library's packages."""
    modules = {}
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(repo, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, repo)[:-3].replace(os.sep, ".")
                    modules[dotted.removesuffix(".__init__")] = path
    return modules


def _imported_names(tree, module, is_package, modules, deferred=True):
    """Dotted names `tree` imports, relative ones resolved; `deferred("a.b")` too
    (with `deferred`), and the modules of a `DECLARATIONS` registry.

    `from package import submodule` imports the submodule: its package's
    `__init__` runs first whatever imports it, so counting that as an arrow to
    the package would make a package that re-exports its submodules a circle.
    """
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield submodule if submodule in modules else base
        elif (deferred and isinstance(node, ast.Call)
              and getattr(node.func, "id", None) == "deferred"):
            yield from (arg.value for arg in node.args if isinstance(arg, ast.Constant))
        elif (isinstance(node, ast.Assign) and node in tree.body
              and [getattr(t, "id", None) for t in node.targets] == ["DECLARATIONS"]):
            yield from (f"{package}.{item.value.rsplit('.', 1)[0]}"
                        for item in node.value.elts if isinstance(item, ast.Constant))


def import_graph(repo=REPO, deferred=True):
    """{module: set of library modules it imports} (`deferred`: with deferred imports)."""
    modules = library_modules(repo)
    graph = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read())
        names = _imported_names(tree, module, path.endswith("__init__.py"), modules, deferred)
        graph[module] = {name for name in names if name in modules and name != module}
    return graph


def circle(graph):
    """A list of modules that import each other round a circle, or None."""
    state = {}

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def levels(graph):
    """{module: level} (module docstring); only for a graph without a circle."""
    found = {}

    def level(module):
        if module not in found:
            found[module] = 1 + max((level(t) for t in graph[module]), default=-1)
        return found[module]

    for module in graph:
        level(module)
    return found


if __name__ == "__main__":
    graph = import_graph(sys.argv[1] if len(sys.argv) > 1 else REPO, deferred=False)
    arrows = sum(len(targets) for targets in graph.values())
    loop = circle(graph)
    if loop:
        print(f"{len(graph)} modules, {arrows} imports; a circle: {' -> '.join(loop)}")
        sys.exit(1)
    print(f"{len(graph)} modules on {max(levels(graph).values()) + 1} levels, {arrows} imports, "
          "no circle")
