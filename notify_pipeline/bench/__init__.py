"""`notify-pipeline bench`: how fast the send path is on this machine, measured end to end.

Four measurements on one scratch database, against the emulator in its own process (pinned to one
core, the sender to the other): the full send path with limits off at 0 and 50 ms API latency;
whether a configured rate limit holds; enqueue-to-accepted latency at a steady load; and the
ceiling a raw-SQL claim-and-mark loop reaches on the same database. The result is JSON, with each
of the spec's targets (SPEC.md section 6) checked.

Three benchmarks beside the command run on their own, as `python -m notify_pipeline.bench.NAME`:
`dagster_latency` (enqueue to receipt through the real Dagster deployment, with a kill -9 of the
send run), `transport_compare` (the client's HTTP transports) and `emulator_throughput` (the
emulator's requests per second on one core).
"""

from notify_pipeline.bench.options import SECTIONS, BenchOptions
from notify_pipeline.bench.runner import run_bench

__all__ = ["SECTIONS", "BenchOptions", "run_bench"]
