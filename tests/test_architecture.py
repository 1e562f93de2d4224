"""The shape of engine/: packages by role, imports that follow the data flow one way, no cycle.

The layers below go from the leaves (core: errors, schemas) up to the entry points. A module may import
modules of its own layer or below, never above; imports inside functions count too. An entry names a
package (every module in it) or a module; the longest entry that matches a module places it.
"""
import ast
from pathlib import Path

ENGINE = Path(__file__).resolve().parent.parent / "engine"

LAYERS = [
    {"core.errors", "core.loop", "core.stats", "core.prices", "core.numbers"},  # leaves
    {"core.secret_shapes", "core.templates"},
    {"core.digests", "core.redaction"},  # request digests (cache keys); what is written never holds a key
    {"core.models"},  # the model catalog (conf/model/*.yaml + genai-prices)
    {"core.records", "core.config", "core"},  # trial records; the typed schemas
    {"requests.fanout", "requests.inflight", "requests.providers.diagnosis", "requests.providers.answers",
     "requests.providers.supervisor", "requests.providers.limiter", "requests.providers.pacer"},
    {"requests.cache", "requests.budget", "requests.providers.endpoint", "requests.providers.retry",
     "requests.providers.embedded"},  # the response cache, money, endpoints, retries, the embedded server
    {"requests.providers.client", "requests.providers"},  # the openai clients
    {"requests.requester", "requests"},  # one request: template -> cache -> provider -> cost
    {"session", "evaluate"},  # the owner of resources; one config over data
    {"tasks"},  # task registry, metrics, the sandbox for model-written code
    {"tuning"},  # the search
    {"mlflow"},  # tracking, plots, store, registry/promotion, serving
    {"compat", "runner", "cli", "show_config"},  # the seed API facade, the experiment runner, the command line
    {"tune", "test", "promote", "serving", "__init__"},  # entry points (serving: old artifacts' loader)
]


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ENGINE.parent).with_suffix("").parts)


def layer_of(module: str) -> int:
    parts = module.split(".")[1:] or ["__init__"]
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        for i, layer in enumerate(LAYERS):
            if name in layer:
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
