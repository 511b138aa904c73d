"""The type stub umcl/_umcl.pyi names what the module has, no more and no less."""

import ast
import inspect
from pathlib import Path

import umcl
from umcl import _umcl

STUB = Path(umcl.__file__).with_name("_umcl.pyi")


def stub_names():
    tree = ast.parse(STUB.read_text())
    top, members = set(), {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            top.add(node.name)
            members[node.name] = {
                n.name if isinstance(n, ast.FunctionDef) else n.target.id
                for n in node.body
                if isinstance(n, ast.FunctionDef) or (isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name))
            }
        elif isinstance(node, ast.FunctionDef):
            top.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            top.add(node.target.id)
    return top, members


def test_the_stub_names_every_public_item_and_member():
    top, members = stub_names()
    public = {n for n in dir(_umcl) if not n.startswith("_")} | {"__version__"}
    assert top - {"_Path", "_Report", "_Labels"} == public
    for name, names in members.items():
        cls = getattr(_umcl, name)
        if issubclass(cls, Exception):
            continue
        have = {
            n for n, _ in inspect.getmembers(cls)
            if not n.startswith("_") or n in {"__init__", "__len__", "__iter__", "__next__"}
        }
        have = {n for n in have if n in cls.__dict__ or n == "__init__"}
        assert names - {"__init__"} == have - {"__init__"}, name


def test_every_public_item_has_a_docstring():
    for name in dir(_umcl):
        item = getattr(_umcl, name)
        if name.startswith("_") or not callable(item):
            continue
        assert (item.__doc__ or "").strip(), name
        if inspect.isclass(item) and not issubclass(item, Exception):
            for member, value in vars(item).items():
                if not member.startswith("_"):
                    assert (value.__doc__ or "").strip(), f"{name}.{member}"
