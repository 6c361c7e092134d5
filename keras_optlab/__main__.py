"""`python -m keras_optlab ...` is the `optlab` command."""

import sys

from keras_optlab.lab.cli import main

sys.exit(main())
