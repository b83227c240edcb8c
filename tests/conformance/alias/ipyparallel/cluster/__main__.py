"""`python -m ipyparallel.cluster` is taskhub's."""
import sys

from taskhub.cluster.app import main

sys.exit(main())
