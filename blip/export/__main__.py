"""`python -m blip.export --caption DIR --match DIR --answer DIR --out DIR`."""
import sys

from blip.export.cli import main

sys.exit(main())
