"""`python -m ipyparallel.engine` is taskhub's."""
import sys

from taskhub.engine.app import main

sys.exit(main())
