import sys

from civicmesh.cli import main

sys.exit(main())
