import sys

from fms_jobs.collector.cli import main

sys.exit(main())
