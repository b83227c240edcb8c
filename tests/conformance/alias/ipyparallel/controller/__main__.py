"""`python -m ipyparallel.controller` is taskhub's."""
import sys

from taskhub.controller.app import main

sys.exit(main())
