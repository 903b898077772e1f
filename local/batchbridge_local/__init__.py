"""Local-only code: provider simulators, the local runtime and its CLI. Never shipped to Lambda."""
