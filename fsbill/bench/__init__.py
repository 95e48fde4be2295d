"""Benchmarks behind `fsbill bench`: each module builds its own data, measures, and returns
plain figures (the CLI prints them; docs/BENCHMARKS.md records them)."""
