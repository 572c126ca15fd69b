#!/usr/bin/env python3
"""Find import cycles between the modules of each crate.

    scripts/import-cycles.py [--edges] [--strict] [crate-dir ...]
                                     (default: every crates/*)

Floors: for a crate listed in scripts/floors.txt, every module must be on
a floor and no module may import from a floor above its own (an upward
import); each such edge is printed and fails the run like a cycle.

For each crate (its src/lib.rs, and src/main.rs when that declares modules
of its own) the script builds the graph of modules and prints every
strongly connected component with more than one node, with the edges
inside it and where each edge comes from (file:line of the first import
that makes it, and how many imports make it). It exits with status 1 if
any crate named on the command line has a cycle, 0 otherwise. With
--edges it also prints every edge of the graph; with --strict a child's
import of an item defined in an ancestor counts too (see below).

The graph
---------
- Nodes are file modules: the crate root (`crate`), and each `foo.rs` or
  `foo/mod.rs` as `foo`, nested ones as `a::b`, found by following the
  `mod name;` declarations from the root. An inline `mod name { ... }` is
  part of the file that holds it, not a node of its own.
- An edge A -> B means code in A names an item that lives in B: a
  `use crate::...`, `use super::...`, `use self::...` or `use child::...`
  import, or such a path written in code (`crate::audit::emit(..)`). A path
  is resolved to the deepest existing module it passes through:
  `crate::a::b::Item` is an edge to `a::b` if that module exists, else to
  `a`. A path naming a module itself (`use crate::audit;`) is an edge to
  that module.
- The module tree is not an edge: a parent declaring its children
  (`mod child;`), and a child naming its ancestors — `super::Item`,
  `crate::Item` for an item defined in the parent or the crate root —
  add nothing. But an item an ancestor only imports or re-exports
  (`pub use crate::extract::AuthUser;` at the root) is followed to where
  it comes from: `crate::AuthUser` in `dbsc` is an edge `dbsc -> extract`,
  so importing through a re-export cannot hide an edge. With --strict, a
  child's import of an item defined in an ancestor counts as an edge to
  the ancestor too (a mod.rs that defines items its children use and
  also imports from those children is then a cycle).
- Not in the graph: test modules (`#[cfg(test)]`, `#[cfg(doctest)]`,
  `#[cfg(all(test, ..))]`, inline or in their own file), the `testkit`
  module (test support behind a feature; paths into it are ignored),
  comments and doc comments (so intra-doc links do not count), string
  literals, and `$crate::` paths inside `macro_rules!` bodies (they are
  resolved where the macro is expanded). `#[path]` attributes are not
  followed (a warning says so).

Only the Python 3 standard library is used.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

ROOT = "crate"
# Modules left out of the graph by name (relative to the crate root).
EXCLUDED_MODULES = {("testkit",)}

IDENT_START = re.compile(r"[A-Za-z_]")
IDENT = re.compile(r"(?:r#)?[A-Za-z_][A-Za-z0-9_]*")
KEYWORDS_NOT_MODULES = {"crate", "super", "self", "Self"}


def strip_comments_and_literals(src: str) -> str:
    """Replaces comments, string and char literals by spaces (newlines are
    kept, so line numbers stay right)."""
    out = []
    i, n = 0, len(src)

    def blank(text: str) -> str:
        return "".join("\n" if c == "\n" else " " for c in text)

    while i < n:
        c = src[i]
        nxt = src[i + 1] if i + 1 < n else ""
        if c == "/" and nxt == "/":
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(src[i:j]))
            i = j
        elif c == "/" and nxt == "*":
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(src[i:j]))
            i = j
        elif c in "rbc" and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            # Possibly a (raw/byte/C) string literal prefix.
            m = re.compile(r'(?:br|cr|r|b|c)(#*)"').match(src, i)
            if m and ("r" in m.group(0) or m.group(1) == ""):
                hashes = m.group(1)
                start = m.end()
                if "r" in m.group(0)[:2]:
                    end = src.find('"' + hashes, start)
                    end = n if end < 0 else end + 1 + len(hashes)
                else:
                    end = _string_end(src, start)
                out.append(blank(src[i:end]))
                i = end
            elif src.startswith("b'", i):
                end = _char_end(src, i + 1)
                out.append(blank(src[i:end]))
                i = end
            else:
                m = IDENT.match(src, i)
                out.append(m.group(0))
                i = m.end()
        elif c == '"':
            end = _string_end(src, i + 1)
            out.append(blank(src[i:end]))
            i = end
        elif c == "'":
            end = _char_end(src, i)
            if end == i + 1:  # a lifetime or label
                out.append(c)
                i += 1
            else:
                out.append(blank(src[i:end]))
                i = end
        elif IDENT_START.match(c):
            m = IDENT.match(src, i)
            out.append(m.group(0))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _string_end(src: str, i: int) -> int:
    """Index just past the closing quote of a string whose body starts at i."""
    n = len(src)
    while i < n:
        if src[i] == "\\":
            i += 2
        elif src[i] == '"':
            return i + 1
        else:
            i += 1
    return n


def _char_end(src: str, i: int) -> int:
    """src[i] is a quote: index past the char literal, or i + 1 for a
    lifetime."""
    n = len(src)
    if i + 1 < n and src[i + 1] == "\\":
        j = src.find("'", i + 3)
        return n if j < 0 else j + 1
    if i + 2 < n and src[i + 2] == "'":
        return i + 3
    return i + 1


TOKEN = re.compile(r"\s+|(?P<tok>::|(?:r#)?[A-Za-z_][A-Za-z0-9_]*|[0-9][A-Za-z0-9_.]*|.)", re.S)


@dataclass
class Tok:
    text: str
    line: int


def tokenize(code: str) -> list[Tok]:
    toks, line = [], 1
    for m in TOKEN.finditer(code):
        t = m.group("tok")
        if t is None:
            line += m.group(0).count("\n")
            continue
        toks.append(Tok(t, line))
    return toks


@dataclass
class Import:
    path: list[str]  # absolute segments after resolution, e.g. ["a", "b", "Item"]
    line: int


@dataclass
class FileModule:
    path: tuple[str, ...]
    file: str
    # child file modules declared in this file: (logical path, is_mod_rs dir)
    children: list[tuple[tuple[str, ...], str]] = field(default_factory=list)
    imports: list[Import] = field(default_factory=list)
    # Module-level `use` declarations into this crate: (module path, bound
    # name) -> absolute path; a child naming `super::Name` is followed
    # through them.
    uses: dict[tuple[tuple[str, ...], str], list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def parse_use_tree(
    toks: list[Tok], i: int, prefix: list[str], out: list[tuple[list[str], str | None]]
) -> int:
    """Parses one use tree starting at toks[i]; appends to out each full
    path it imports (prefix + segments) with the name it binds (None for a
    glob or `_`); returns the index after the tree."""
    segs = list(prefix)
    n = len(toks)

    def bound(default: str | None, j: int) -> tuple[str | None, int]:
        if j < n and toks[j].text == "as":
            name = toks[j + 1].text if j + 1 < n else None
            return (None if name == "_" else name), j + 2
        return default, j

    while i < n:
        t = toks[i].text
        if t == "{":
            i += 1
            while i < n and toks[i].text != "}":
                i = parse_use_tree(toks, i, segs, out)
                if i < n and toks[i].text == ",":
                    i += 1
            return i + 1
        if t == "*":
            out.append((segs + ["*"], None))
            return i + 1
        if t == "::":
            i += 1
            continue
        if t == "self" and prefix and len(segs) == len(prefix):
            # `a::{self}` names `a` itself.
            name, i = bound(segs[-1], i + 1)
            out.append((list(segs), name))
            return i
        if IDENT.fullmatch(t):
            segs.append(t)
            i += 1
            if i < n and toks[i].text == "::":
                continue
            name, i = bound(t, i)
            out.append((segs, name))
            return i
        # `,`, `}`, `;` or something unexpected: end of this tree.
        if segs != prefix:
            out.append((segs, segs[-1]))
        return i
    return i


def is_test_cfg(attr: str) -> bool:
    """Whether an attribute (its tokens joined by spaces) is a `cfg` that
    holds only in tests: `cfg(test)`, `cfg(doctest)`, `cfg(all(test, ..))`."""
    words = attr.split()
    if words[:2] != ["cfg", "("] or "not" in words or "any" in words:
        return False
    return "test" in words or "doctest" in words


def scan_file(mod: FileModule, dir_for_children: str) -> None:
    with open(mod.file, encoding="utf-8") as f:
        raw = f.read()
    if re.search(r"#\s*\[\s*path\s*=", raw):
        mod.warnings.append(f"{mod.file}: #[path] attributes are not followed")
    toks = tokenize(strip_comments_and_literals(raw))
    n = len(toks)
    # Scope stack: each entry is the inline module name for `mod x {`, or None.
    scopes: list[str | None] = []
    attrs: list[str] = []  # attribute texts seen since the last item start
    i = 0

    def cur_path() -> list[str]:
        return list(mod.path) + [s for s in scopes if s is not None]

    def skip_block(j: int) -> int:
        """toks[j] is `{`: index after its matching `}`."""
        depth = 0
        while j < n:
            if toks[j].text == "{":
                depth += 1
            elif toks[j].text == "}":
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
        return n

    def resolve(segs: list[str], base: list[str]) -> list[str] | None:
        """Absolute segments for a path written in module `base`, or None
        for a path into another crate (or a local name)."""
        if not segs:
            return None
        head = segs[0]
        if head == "crate":
            return segs[1:]
        if head in ("super", "self"):
            cur = list(base)
            k = 0
            while k < len(segs) and segs[k] in ("super", "self"):
                if segs[k] == "super":
                    if not cur:
                        return None
                    cur.pop()
                k += 1
            return cur + segs[k:]
        if tuple(base + [head]) in declared_children:
            return base + segs
        return None

    # Children are needed to resolve bare `child::Item` paths; collect the
    # `mod name;` / `mod name {` declarations first.
    declared_children: set[tuple[str, ...]] = set()
    pre_scopes: list[str | None] = []
    j = 0
    while j < n:
        t = toks[j].text
        if t == "mod" and j + 1 < n and IDENT.fullmatch(toks[j + 1].text) and j + 2 < n and toks[j + 2].text in ";{":
            declared_children.add(tuple(list(mod.path) + [s for s in pre_scopes if s] + [toks[j + 1].text]))
            if toks[j + 2].text == "{":
                pre_scopes.append(toks[j + 1].text)
                j += 3
                continue
        if t == "{":
            pre_scopes.append(None)
        elif t == "}" and pre_scopes:
            pre_scopes.pop()
        j += 1

    while i < n:
        t = toks[i].text
        if t == "#" and i + 1 < n and toks[i + 1].text in ("[", "!"):
            k = i + 1
            if toks[k].text == "!":
                k += 1
            depth, start = 0, k
            while k < n:
                if toks[k].text == "[":
                    depth += 1
                elif toks[k].text == "]":
                    depth -= 1
                    if depth == 0:
                        break
                k += 1
            attrs.append(" ".join(x.text for x in toks[start + 1 : k]))
            i = k + 1
            continue
        if t == "$" and i + 1 < n and toks[i + 1].text == "crate":
            # `$crate::...` in a macro body: resolved at the expansion site.
            i += 2
            while i + 1 < n and toks[i].text == "::" and IDENT.fullmatch(toks[i + 1].text):
                i += 2
            attrs = []
            continue
        if t == "mod" and i + 2 < n and IDENT.fullmatch(toks[i + 1].text) and toks[i + 2].text in ";{":
            name = toks[i + 1].text
            is_test = any(is_test_cfg(a) for a in attrs)
            attrs = []
            child = tuple(cur_path() + [name])
            if toks[i + 2].text == "{":
                if is_test or child in EXCLUDED_MODULES:
                    i = skip_block(i + 2)
                    continue
                scopes.append(name)
                i += 3
                continue
            if not is_test and child not in EXCLUDED_MODULES:
                inline = [s for s in scopes if s is not None]
                mod.children.append((child, os.path.join(dir_for_children, *inline, name)))
            i += 3
            continue
        if t == "use":
            # Find the end of the use declaration.
            k = i + 1
            if k < n and toks[k].text == "::":
                k += 1  # `use ::foo` is always another crate
                while k < n and toks[k].text != ";":
                    k += 1
                i = k + 1
                attrs = []
                continue
            paths: list[tuple[list[str], str | None]] = []
            k = parse_use_tree(toks, k, [], paths)
            line = toks[i].line
            base = cur_path()
            module_level = all(s is not None for s in scopes)
            for p, name in paths:
                r = resolve(p, base)
                if r is not None:
                    mod.imports.append(Import(r, line))
                    if module_level and name is not None:
                        mod.uses[(tuple(base), name)] = r
            while k < n and toks[k].text != ";":
                k += 1
            i = k + 1
            attrs = []
            continue
        if t in ("crate", "super", "self") or (
            IDENT.fullmatch(t) and t not in KEYWORDS_NOT_MODULES
        ):
            prev = toks[i - 1].text if i else ""
            if i + 1 < n and toks[i + 1].text == "::" and prev != "::" and prev != "in":
                segs = [t]
                k = i + 1
                while k + 1 < n and toks[k].text == "::" and IDENT.fullmatch(toks[k + 1].text):
                    segs.append(toks[k + 1].text)
                    k += 2
                r = resolve(segs, cur_path())
                if r is not None:
                    mod.imports.append(Import(r, toks[i].line))
                i = k
                attrs = []
                continue
        if t == "{":
            scopes.append(None)
        elif t == "}":
            if scopes:
                scopes.pop()
        if t not in ("pub", "(", ")", "crate", "super", "in"):
            attrs = []
        i += 1


@dataclass
class Crate:
    name: str
    modules: dict[tuple[str, ...], FileModule]
    edges: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Import]]
    warnings: list[str]


def load_crate(name: str, root_file: str, strict: bool) -> Crate:
    modules: dict[tuple[str, ...], FileModule] = {}
    warnings: list[str] = []
    queue = [((), root_file, os.path.dirname(root_file))]
    while queue:
        path, file, child_dir = queue.pop()
        mod = FileModule(path, file)
        modules[path] = mod
        scan_file(mod, child_dir)
        warnings += mod.warnings
        for child, stem in mod.children:
            as_file, as_dir = stem + ".rs", os.path.join(stem, "mod.rs")
            if os.path.isfile(as_file):
                queue.append((child, as_file, stem))
            elif os.path.isfile(as_dir):
                queue.append((child, as_dir, stem))
            else:
                warnings.append(f"{file}: no file for module {'::'.join(child)}")
    uses: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for mod in modules.values():
        uses.update(mod.uses)

    def home(segs: list[str]) -> tuple[str, ...]:
        for k in range(len(segs), 0, -1):
            if tuple(segs[:k]) in modules:
                return tuple(segs[:k])
        return ()

    edges: dict[tuple[tuple[str, ...], tuple[str, ...]], list[Import]] = {}
    for mod in modules.values():
        for imp in mod.imports:
            segs = imp.path
            target = home(segs)
            # An item named through an ancestor: the tree, unless the
            # ancestor only imports (or re-exports) it from elsewhere —
            # then the edge goes to where it comes from, so a re-export
            # cannot hide a dependency.
            for _ in range(16):
                if mod.path[: len(target)] != target or len(segs) == len(target):
                    break
                via = uses.get((tuple(segs[: len(target)]), segs[len(target)]))
                if via is None:
                    break
                segs = via + segs[len(target) + 1 :]
                target = home(segs)
            if any(tuple(segs[: len(x)]) == x for x in EXCLUDED_MODULES):
                continue
            if target == mod.path:
                continue
            if mod.path[: len(target)] == target and (not strict or len(segs) == len(target)):
                continue  # an ancestor: the module tree
            edges.setdefault((mod.path, target), []).append(imp)
    return Crate(name, modules, edges, warnings)


def sccs(nodes: list, succ: dict) -> list[list]:
    """Tarjan's algorithm, iterative."""
    index: dict = {}
    low: dict = {}
    on_stack: set = set()
    stack: list = []
    result: list[list] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(succ.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            advanced = False
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(succ.get(w, ()))))
                    advanced = True
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            if advanced:
                continue
            work.pop()
            if work:
                u = work[-1][0]
                low[u] = min(low[u], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                result.append(comp)
    return result


def show(path: tuple[str, ...]) -> str:
    return "::".join(path) if path else ROOT


def report(crate: Crate, repo: str, all_edges: bool) -> int:
    succ: dict = {}
    for a, b in crate.edges:
        succ.setdefault(a, []).append(b)
    for v in succ.values():
        v.sort()
    comps = [sorted(c) for c in sccs(sorted(crate.modules), succ) if len(c) > 1]
    comps.sort(key=lambda c: (-len(c), c))
    for w in crate.warnings:
        print(f"warning: {os.path.relpath(w, repo) if os.path.exists(w) else w}", file=sys.stderr)
    nodes = sum(len(c) for c in comps)
    if all_edges:
        for (a, b), imps in sorted(crate.edges.items()):
            file = os.path.relpath(crate.modules[a].file, repo)
            print(f"edge {show(a)} -> {show(b)}  {file}:{imps[0].line} x{len(imps)}")
    print(f"{crate.name}: {len(crate.modules)} modules, {len(comps)} cycle(s), {nodes} module(s) in cycles")
    for idx, comp in enumerate(comps, 1):
        members = set(comp)
        print(f"  cycle {idx}: {len(comp)} modules: {', '.join(show(c) for c in comp)}")
        for (a, b), imps in sorted(crate.edges.items()):
            if a in members and b in members:
                first = imps[0]
                file = os.path.relpath(crate.modules[a].file, repo)
                more = f" (+{len(imps) - 1} more)" if len(imps) > 1 else ""
                print(f"    {show(a)} -> {show(b)}  {file}:{first.line} {'::'.join(first.path) or ROOT}{more}")
    return len(comps)


def load_floors(repo: str) -> dict[str, list[tuple[int, str, list[tuple[str, ...]]]]]:
    """scripts/floors.txt: crate dir -> [(level, floor name, modules)]."""
    path = os.path.join(repo, "scripts", "floors.txt")
    floors: dict = {}
    current = None
    if not os.path.exists(path):
        return floors
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("[") and line.endswith("]"):
                current = floors.setdefault(line[1:-1].strip().rstrip("/"), [])
                continue
            head, _, mods = line.partition(":")
            level, _, name = head.partition(" ")
            paths = [() if m == ROOT else tuple(m.split("::")) for m in mods.split()]
            current.append((int(level), name.strip(), paths))
    return floors


def floor_of(path: tuple[str, ...], floors) -> tuple[int, str] | None:
    """The floor of the module `path`: its own entry or its nearest
    listed ancestor's."""
    best = None
    for level, name, paths in floors:
        for p in paths:
            if path[: len(p)] == p and (best is None or len(p) > best[0]):
                best = (len(p), level, name)
    return None if best is None else (best[1], best[2])


def check_floors(crate: Crate, repo: str, floors) -> int:
    """Prints modules on no floor and upward imports; returns how many."""
    bad = 0
    for path in sorted(crate.modules):
        if floor_of(path, floors) is None:
            print(f"  {show(path)}: on no floor (add it to scripts/floors.txt)")
            bad += 1
    for (a, b), imps in sorted(crate.edges.items()):
        fa, fb = floor_of(a, floors), floor_of(b, floors)
        if fa and fb and fb[0] < fa[0]:
            file = os.path.relpath(crate.modules[a].file, repo)
            print(
                f"  upward import {show(a)} ({fa[1]}) -> {show(b)} ({fb[1]})  "
                f"{file}:{imps[0].line} {'::'.join(imps[0].path) or ROOT}"
            )
            bad += 1
    print(f"{crate.name}: floors {'kept' if not bad else f'broken in {bad} place(s)'}")
    return bad


def main(argv: list[str]) -> int:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if len(argv) > 1 and argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0
    args = argv[1:]
    all_edges = "--edges" in args
    strict = "--strict" in args
    args = [a for a in args if a not in ("--edges", "--strict")]
    unknown = [a for a in args if a.startswith("-")]
    if unknown:
        print(f"unknown option {unknown[0]}; see --help", file=sys.stderr)
        return 2
    dirs = args or sorted(
        os.path.join(repo, "crates", d)
        for d in os.listdir(os.path.join(repo, "crates"))
        if os.path.isdir(os.path.join(repo, "crates", d, "src"))
    )
    floors = load_floors(repo)
    cycles = 0
    for d in dirs:
        src = os.path.join(d, "src")
        if not os.path.isdir(src):
            print(f"{d}: no src directory", file=sys.stderr)
            return 2
        name = os.path.relpath(os.path.abspath(d), repo)
        roots = [f for f in ("lib.rs", "main.rs") if os.path.isfile(os.path.join(src, f))]
        if not roots:
            print(f"{d}: neither src/lib.rs nor src/main.rs", file=sys.stderr)
            return 2
        for r in roots:
            label = name if len(roots) == 1 else f"{name} ({r})"
            crate = load_crate(label, os.path.join(src, r), strict)
            if r == "main.rs" and len(roots) > 1 and len(crate.modules) == 1:
                continue  # a thin binary over the library
            cycles += report(crate, repo, all_edges)
            crate_floors = floors.get(name)
            if crate_floors and r == "lib.rs":
                cycles += check_floors(crate, repo, crate_floors)
    if cycles:
        print(f"{cycles} import cycle(s) or floor violation(s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
