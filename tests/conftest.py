"""Shared pytest setup: make tests/fixtures importable as `fixtures`."""

import sys
from pathlib import Path

# tests/ itself is not a package; the fixtures package sits beside the tests.
sys.path.insert(0, str(Path(__file__).parent))
