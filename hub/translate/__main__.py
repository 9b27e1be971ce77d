"""`python -m hub.translate FILE --to xapi|caliper` (the same command as `rthub translate`)."""

import sys

from hub.translate.offline import main

sys.exit(main())
