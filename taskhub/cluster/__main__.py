"""`python -m taskhub.cluster` is `ipcluster`."""
import sys

from .app import main

sys.exit(main())
