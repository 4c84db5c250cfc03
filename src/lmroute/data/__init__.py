"""Data: benchmarks with known outcomes, preference battles, golden labels, decontamination."""
