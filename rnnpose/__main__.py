import sys

from rnnpose.cli import main

sys.exit(main())
