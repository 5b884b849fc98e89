import sys

from phs_optax_training.study.cli import main

sys.exit(main())
