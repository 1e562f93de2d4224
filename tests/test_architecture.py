"""The shape of engine/: imports follow the data flow one way, with no cycle.

The layers below are the flow of DESIGN.md, from the leaves (errors, schemas) up to the entry points. A
module may import modules of its own layer or below, never above; imports inside functions count too.
"""
import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

LAYERS = [
    {"errors", "keys", "public", "registry", "fanout", "templates", "sandbox", "aio", "plots", "store",
     "prices", "responses", "usage_log", "endpoint_lists", "stats", "secret_shapes"},  # leaves
    {"models", "records"},
    {"config"},  # the typed schemas
    {"cache", "inflight", "budget", "providers"},  # the response cache, money, the openai clients, the embedded server
    {"requests"},  # one request: template -> cache -> provider -> cost
    {"session", "evaluation"},  # the owner of resources; one config over data
    {"testing", "tuning", "tasks"},
    {"tracking", "serving", "promotion"},  # MLflow
    {"completion", "seed_create", "runner", "cli"},  # the seed API facade, the experiment runner
    {"tune", "test", "promote", "__init__"},  # entry points
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ENGINE.parent).with_suffix("").parts)


def layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else "__init__"
    for i, layer in enumerate(LAYERS):
        if part in layer:
            return i
    raise AssertionError(f"{module} is in no layer of {__file__}: add it where it belongs in the flow")


def imports(path: Path) -> set[str]:
    """The engine modules `path` imports (absolute names), anywhere in the file."""
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)[:-9]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [f"{target}.{a.name}" for a in node.names] if not node.module else [target]
            out.update(n for n in names if n.startswith("engine"))
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("engine"))
    return out


def graph() -> dict[str, set[str]]:
    files = {module_name(p).removesuffix(".__init__"): p for p in ENGINE.rglob("*.py")}
    edges = {}
    for name, path in files.items():
        targets = set()
        for target in imports(path):
            while target not in files and "." in target:  # `from .x import Name` names Name, not a module
                target = target.rsplit(".", 1)[0]
            if target in files and target != name:
                targets.add(target)
        edges[name] = targets
    return edges


def test_no_module_imports_one_above_it_in_the_flow():
    wrong = [f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
             for a, targets in graph().items() for b in targets
             if b != "engine" and layer_of(b) > layer_of(a)]
    assert not wrong, "\n".join(wrong)


def test_the_import_graph_has_no_cycle():
    edges = graph()
    state, stack, cycles = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_only_the_facade_resolver_reaches_the_default_session():
    users = [p for p in ENGINE.rglob("*.py") if "_default_session()" in p.read_text()]
    assert [p.name for p in users] == ["session.py"]
