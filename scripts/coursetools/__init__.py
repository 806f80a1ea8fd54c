"""Course tooling: regenerate the student labs, render solutions for review, grade, release."""

import sys

# jsonschema, which nbformat validates every notebook with, imports rfc3987_syntax for its "iri"
# format check, and that module builds a parser grammar when imported: 0.8 s of CPU in every process
# that reads a notebook (make grade's own and each of its workers). Neither nbformat nor nbgrader
# checks formats, so the course's tools load jsonschema without it (its "iri" check is then absent).
if "jsonschema" not in sys.modules:
    sys.modules.setdefault("rfc3987_syntax", None)
