"""Grade a class: isolated, parallel, checked by trusted code (``make grade``).

Student code runs in a sandbox process (:mod:`.sandbox_main`) that only ever
returns *data* (JSON plus numpy arrays, never pickles). The grade cells, taken
from the instructor's notebook, run in the trusted grader process against
proxies of the student's functions (:mod:`.remote`), so nothing a submission
does to numpy, torch or the checker inside its own process changes a score.
The verdicts are then written through nbgrader's autograde and gradebook.
"""
