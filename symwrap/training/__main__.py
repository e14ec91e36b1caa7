"""``python -m symwrap.training`` / ``torchrun --nproc_per_node=N -m symwrap.training``: see
:mod:`symwrap.training.synthetic`."""

import os
import sys

from .synthetic import main

code = main()
sys.stdout.flush()
sys.stderr.flush()
# Leave without the interpreter's teardown: with gloo, a rank's background threads can still be torn down after
# the job is done and abort the process ("terminate called without an active exception"), failing a finished run.
os._exit(code)
