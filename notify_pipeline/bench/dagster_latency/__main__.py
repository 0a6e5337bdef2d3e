"""`python -m notify_pipeline.bench.dagster_latency`: see the package's docstring."""

import sys

from notify_pipeline.bench.dagster_latency.main import main

sys.exit(main())
