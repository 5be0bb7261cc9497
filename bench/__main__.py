"""``python -m bench``: every scenario in one run (``--quick`` for a smoke run)."""

from bench.runner import SCENARIOS, run_scenarios

run_scenarios(SCENARIOS)
