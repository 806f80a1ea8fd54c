"""Course tooling: regenerate the student labs, render solutions for review."""
