"""nbgrader configuration for the course.

solutions/ is nbgrader's *source* folder (the instructor's notebooks) and labs/
is its *release* folder (what students get). `make labs` regenerates labs/.
"""
c = get_config()  # noqa: F821  (injected by traitlets)

c.CourseDirectory.course_id = "math-for-deep-learning"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "labs"

# Student stubs raise, so an untouched exercise fails its check loudly.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError()",
}
# Grading a notebook cell by cell must not hang on an endless loop.
c.ExecutePreprocessor.timeout = 120
c.Execute.timeout = 120
