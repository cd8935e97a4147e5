"""Every function in kdtool/ by length and by branch count, longest first (issue #29 part 4).

    .venv/bin/python bench/function_sizes.py [--top N] [--sort lines|branches] [PATH ...]

**Lines**: from the ``def`` line to the function's last line, comments and blank lines included, the
docstring and decorators not (a docstring is documentation, a command's the text of its ``--help``).

**Branches**: the places where control can take another way, counted in the function's own body (a nested
``def`` or ``class`` is measured on its own, a ``lambda`` counts for its function): each ``if``/``elif``
statement and conditional expression, ``for`` and ``while`` loop (``async`` ones too), ``try`` statement and
each of its ``except`` clauses, ``with`` statement, each ``and``/``or`` beyond a boolean expression's first
operand, each ``if`` of a comprehension and each ``case`` of a ``match``.

The limits are the issue's: a function over ``LINE_LIMIT`` lines or ``BRANCH_LIMIT`` branches is reported
(``tests/test_function_sizes.py`` holds the functions allowed over them, and why).
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import dataclass
from pathlib import Path

LINE_LIMIT = 60
BRANCH_LIMIT = 15
ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
SCOPES = (*FUNCTIONS, ast.ClassDef)
# nodes that count one branch each (BoolOp and comprehension ifs are counted by their parts)
BRANCHING = (ast.If, ast.IfExp, ast.For, ast.AsyncFor, ast.While, ast.Try, ast.ExceptHandler, ast.With, ast.AsyncWith)
if hasattr(ast, "TryStar"):  # Python 3.11+: try ... except* ...
    BRANCHING = (*BRANCHING, ast.TryStar)
if hasattr(ast, "match_case"):  # Python 3.10+
    BRANCHING = (*BRANCHING, ast.match_case)


@dataclass(frozen=True)
class Size:
    """One function's size: ``name`` is ``path:Class.function`` (nested functions as ``outer.inner``)."""

    name: str
    lines: int
    branches: int

    @property
    def over(self) -> bool:
        """Whether it is over either limit."""
        return self.lines > LINE_LIMIT or self.branches > BRANCH_LIMIT


def branches(function: ast.AST) -> int:
    """The branch count of ``function``'s own body (see the module docstring), nested scopes left out."""
    count, todo = 0, list(ast.iter_child_nodes(function))
    while todo:
        node = todo.pop()
        if isinstance(node, SCOPES):
            continue
        if isinstance(node, BRANCHING):
            count += 1
        elif isinstance(node, ast.BoolOp):
            count += len(node.values) - 1
        elif isinstance(node, ast.comprehension):
            count += len(node.ifs)
        todo.extend(ast.iter_child_nodes(node))
    return count


def docstring_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """How many lines ``function``'s docstring takes (0 without one)."""
    first = function.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


def module_sizes(path: Path, label: str) -> list[Size]:
    """The size of every function and method in the Python file ``path``, named ``label:qualified.name``."""
    found: list[Size] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, SCOPES):
                qualified = f"{prefix}{child.name}"
                if isinstance(child, FUNCTIONS):
                    lines = child.end_lineno - child.lineno + 1 - docstring_lines(child)
                    found.append(Size(f"{label}:{qualified}", lines, branches(child)))
                visit(child, qualified + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), "")
    return found


def sizes(package: Path = ROOT / "kdtool") -> list[Size]:
    """The size of every function under ``package``, named by their path relative to the repository root."""
    found: list[Size] = []
    for path in sorted(package.rglob("*.py")):
        found += module_sizes(path, path.relative_to(package.parent).as_posix())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="packages to measure (default: kdtool/)")
    parser.add_argument("--top", type=int, default=10, help="how many functions to list (the over-limit ones always)")
    parser.add_argument("--sort", choices=("lines", "branches"), default="lines", help="order of the list")
    args = parser.parse_args()
    found = [size for path in args.paths or [ROOT / "kdtool"] for size in sizes(path.resolve())]
    found.sort(key=lambda size: (getattr(size, args.sort), size.lines + size.branches), reverse=True)
    over = [size for size in found if size.over]
    print(f"{len(found)} functions; {len(over)} over {LINE_LIMIT} lines or {BRANCH_LIMIT} branches")
    print(f"{'lines':>5} {'branches':>8}  function")
    for size in found[: max(args.top, len(over))]:
        print(f"{size.lines:5d} {size.branches:8d}  {size.name}{'  (over)' if size.over else ''}")


if __name__ == "__main__":
    main()
