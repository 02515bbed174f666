"""import_from_string: the object, or one line saying what is wrong."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tricorn.importer import ImportFromStringError, import_from_string


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in list(sys.modules):
        if name.startswith("h1imp_"):
            del sys.modules[name]


def test_valid_strings() -> None:
    import os.path

    assert import_from_string("os.path:join") is os.path.join
    assert import_from_string("tests.test_importer:Holder.inner") is Holder.inner


def test_objects_pass_through() -> None:
    obj = object()
    assert import_from_string(obj) is obj


@pytest.mark.parametrize(
    ("import_str", "message"),
    [
        ("os", 'Import string "os" must be in format "<module>:<attribute>".'),
        (":app", 'Import string ":app" must be in format "<module>:<attribute>".'),
        ("os:", 'Import string "os:" must be in format "<module>:<attribute>".'),
        ("h1imp_missing:app", 'Could not import module "h1imp_missing".'),
        ("h1imp_missing.sub:app", 'Could not import module "h1imp_missing.sub".'),
        ("os:nope", 'Attribute "nope" not found in module "os".'),
        ("os:path.nope", 'Attribute "path.nope" not found in module "os".'),
    ],
)
def test_errors(import_str: str, message: str) -> None:
    with pytest.raises(ImportFromStringError) as info:
        import_from_string(import_str)
    assert str(info.value) == message


def test_module_importing_a_missing_dependency(package: Path) -> None:
    (package / "h1imp_dep.py").write_text("import h1imp_not_installed\napp = 1\n")
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("h1imp_dep:app")
    assert str(info.value) == (
        'Importing module "h1imp_dep" failed: No module named "h1imp_not_installed".'
    )


def test_module_raising_while_importing(package: Path) -> None:
    (package / "h1imp_boom.py").write_text("x = 1\nraise RuntimeError('kaput')\n")
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("h1imp_boom:app")
    message = str(info.value)
    assert message.startswith('Importing module "h1imp_boom" raised RuntimeError: kaput (')
    assert "h1imp_boom.py, line 2)" in message
    assert "\n" not in message


def test_module_with_syntax_error(package: Path) -> None:
    (package / "h1imp_syntax.py").write_text("def broken(:\n")
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("h1imp_syntax:app")
    assert str(info.value).startswith('Importing module "h1imp_syntax" raised SyntaxError:')
    assert "h1imp_syntax.py, line 1" in str(info.value)


class Holder:
    @staticmethod
    def inner() -> None:
        pass
