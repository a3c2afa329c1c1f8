#!/usr/bin/env python3
"""Prints the library's module graph from its `crate::` paths and checks the layering.

Each top-level module of `src/` (a file `src/x.rs` or a folder `src/x/`) belongs to one
layer. A module may use modules of its own layer or of layers below it, never one
above, and the graph may have no cycle. Exits 1 on a violation, naming the file and
line of each offending path.

    scripts/module-graph.py          # the graph, then the verdict
    scripts/module-graph.py --dot    # the graph in Graphviz dot
    scripts/module-graph.py --src D  # another source tree (the tests use this)
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

# Top to bottom. The data path reads down: a source takes a webhook or a poll, the
# pipeline turns it into an envelope, delivery makes it durable, the sinks write it.
LAYERS = [
    ["commands", "startup", "settings", "cli"],
    ["ingest", "poller", "lifecycle"],
    ["pipeline"],
    ["delivery"],
    ["sinks"],
    ["events"],
    ["vizion", "auth"],
    ["store", "telemetry", "config", "secret", "clock", "retry"],
]

ROOT = Path(__file__).resolve().parent.parent
SRC = Path(sys.argv[sys.argv.index("--src") + 1]).resolve() if "--src" in sys.argv else ROOT / "src"

COMMENT = re.compile(r"//.*$")
STRING = re.compile(r'"(?:\\.|[^"\\])*"')
# `crate::name` not preceded by `$` (macro hygiene) or an identifier character.
CRATE_PATH = re.compile(r"(?<![\w$])crate::(\{|[a-z_][a-z0-9_]*)")


def layer_of(module):
    for depth, layer in enumerate(LAYERS):
        if module in layer:
            return depth
    return None


def top_module(path):
    """The top-level module a file belongs to, or None for the crate roots."""
    rel = path.relative_to(SRC)
    if rel.parts[0] == "bin" or rel.name in ("lib.rs", "main.rs") and len(rel.parts) == 1:
        return None
    return rel.parts[0].removesuffix(".rs")


def group_names(text, start):
    """The first-level names of a `crate::{a, b::c, d::{e}}` group opening at `start`."""
    depth, name, names = 0, "", []
    for char in text[start:]:
        if char == "{":
            depth += 1
            if depth == 1:
                continue
        elif char == "}":
            depth -= 1
            if depth == 0:
                break
        if depth == 1:
            if char == ",":
                names.append(name)
                name = ""
            elif char == ":" and name.strip():
                names.append(name)
                name = "\0"  # the rest of this entry is a sub-path
            elif name != "\0" and not char.isspace():
                name += char
        elif depth > 1 and name != "\0":
            name = "\0"
    names.append(name)
    return [n for n in names if n and n != "\0" and n != "self"]


def uses(path):
    """(line number, used top-level module) for every `crate::` path in a file."""
    lines = [STRING.sub('""', COMMENT.sub("", line)) for line in path.read_text().splitlines()]
    text = "\n".join(lines)
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line) + 1)
    for match in CRATE_PATH.finditer(text):
        line = next(i for i, s in enumerate(line_starts) if s > match.start())
        if match.group(1) == "{":
            for name in group_names(text, match.start(1)):
                yield line, name
        else:
            yield line, match.group(1)


def main():
    edges = defaultdict(list)  # (from, to) -> [file:line]
    modules = set()
    for path in sorted(SRC.rglob("*.rs")):
        source = top_module(path)
        if source is None:
            continue
        modules.add(source)
        for line, target in uses(path):
            if target != source:
                edges[(source, target)].append(f"{path.relative_to(SRC.parent)}:{line}")

    problems = []
    for module in sorted(modules):
        if layer_of(module) is None:
            problems.append(f"`{module}` is in no layer: add it to LAYERS in {Path(__file__).name}")
    for (source, target), places in sorted(edges.items()):
        if target not in modules:
            continue
        s, t = layer_of(source), layer_of(target)
        if s is not None and t is not None and t < s:
            problems.append(f"upward: {source} -> {target} at " + ", ".join(places))

    graph = defaultdict(set)
    for source, target in edges:
        if target in modules:
            graph[source].add(target)
    for cycle in cycles(graph):
        problems.append("cycle among: " + ", ".join(cycle))

    if "--dot" in sys.argv:
        print("digraph modules {")
        for (source, target) in sorted(edges):
            if target in modules:
                print(f'  "{source}" -> "{target}";')
        print("}")
    else:
        for depth, layer in enumerate(LAYERS):
            for module in layer:
                if module not in modules:
                    continue
                targets = sorted(graph.get(module, ()), key=lambda m: (layer_of(m) or 0, m))
                print(f"{depth} {module:<10} -> {', '.join(targets) if targets else '(nothing)'}")
    if problems:
        print("\nmodule graph: FAILED", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(f"\nmodule graph: {len(modules)} modules, no cycle, no upward use")
    return 0


def cycles(graph):
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":
    sys.exit(main())
