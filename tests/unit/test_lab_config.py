"""The JupyterLab settings `make lab` passes: they must name plugins and settings that exist.

A renamed nbgrader plugin or JupyterLab setting would otherwise be ignored without a word
and students would see the instructor panels or the news pop-up again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from coursetools.paths import ROOT

CONFIG = ROOT / "jupyter"
SHARE = Path(sys.prefix) / "share" / "jupyter"


def _json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _plugin_ids_of(package: str) -> str:
    """The built JavaScript of a federated extension, where its plugin ids are written out."""
    static = SHARE / "labextensions" / package / "static"
    if not static.is_dir():
        pytest.skip(f"{package} is not installed in this environment")
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in static.glob("*.js"))


def test_student_mode_disables_nbgrader_instructor_plugins_that_exist_and_keeps_validate():
    disabled = _json(CONFIG / "student" / "labconfig" / "page_config.json")["disabledExtensions"]
    code = _plugin_ids_of("@jupyter/nbgrader")
    for plugin in disabled:
        assert f'"{plugin}"' in code, f"{plugin} is not a plugin of the installed nbgrader"
    assert {"@jupyter/nbgrader:create-assignment", "@jupyter/nbgrader:formgrader"} <= set(disabled)
    assert '"@jupyter/nbgrader:validate-assignment"' in code
    assert "@jupyter/nbgrader:validate-assignment" not in disabled
    server = _json(CONFIG / "student" / "jupyter_server_config.json")["ServerApp"]["jpserver_extensions"]
    assert server["nbgrader.server_extensions.validate_assignment"] is True
    assert server["nbgrader.server_extensions.formgrader"] is False


@pytest.mark.parametrize("mode", ["student", "instructor"])
def test_setting_overrides_name_real_settings(mode):
    schemas = SHARE / "lab" / "schemas"
    overrides = _json(CONFIG / mode / "labconfig" / "default_setting_overrides.json")
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        schema = _json(schemas / package / f"{name}.json")
        assert set(values) <= set(schema["properties"]), (plugin, set(values) - set(schema["properties"]))


def test_instructor_mode_disables_nothing():
    assert not (CONFIG / "instructor" / "labconfig" / "page_config.json").exists()
    assert not (CONFIG / "instructor" / "jupyter_server_config.json").exists()
