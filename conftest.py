"""Repository-wide pytest hooks.

`make test` runs pytest-xdist with ``--dist loadgroup``. nbval turns every cell
of a notebook into its own test item, and those items must share one kernel,
so each notebook's items are pinned to one worker as an xdist group.
"""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.xdist_group(name=f"nbval:{item.path}"))
        elif item.path.name == "test_autograde.py" and hasattr(item, "callspec"):
            # One autograded course per lab: its tests share that worker's module fixture.
            item.add_marker(pytest.mark.xdist_group(name=f"autograde:{item.callspec.params.get('graded')}"))
