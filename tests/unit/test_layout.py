"""payhub/ (application) and gen/payhub/ (generated) must import side by side as one PEP 420
namespace package. A stray __init__.py in a directory that exists on both sides makes one of
them disappear (`import payhub.trade.v1` or `import payhub.trade.service` fails)."""

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP, GEN, CMD = ROOT / "payhub", ROOT / "gen" / "payhub", ROOT / "cmd" / "payhub"


def test_no_init_in_shared_namespace_directories() -> None:
    assert not (APP / "__init__.py").exists()
    shared = [d.name for d in GEN.iterdir() if d.is_dir() and (APP / d.name).exists()]
    offenders = [name for name in shared if (APP / name / "__init__.py").exists()]
    assert offenders == [], f"remove __init__.py from payhub/{offenders} (namespace packages)"
    assert list(GEN.rglob("__init__.py")) == []


@pytest.mark.parametrize("proto", sorted(p.relative_to(GEN.parent) for p in GEN.rglob("*_pb2.py")))
def test_generated_module_imports_beside_application(proto: Path) -> None:
    module = ".".join(proto.with_suffix("").parts)
    importlib.import_module(module)
    importlib.import_module("payhub.kernel.config")
    app_dirs = [d.name for d in APP.iterdir() if (d / "component.py").exists()]
    for name in app_dirs:
        importlib.import_module(f"payhub.{name}.component")


def test_command_line_lives_in_cmd_and_cmd_stays_the_stdlib_module() -> None:
    import cmd
    import sysconfig

    import payhub.cli.main

    assert Path(payhub.cli.main.__file__).resolve().is_relative_to(CMD)
    assert not (APP / "cli").exists()
    assert not (ROOT / "cmd" / "__init__.py").exists() and not (CMD / "__init__.py").exists()
    assert Path(cmd.__file__).resolve().parent == Path(sysconfig.get_paths()["stdlib"]).resolve()
