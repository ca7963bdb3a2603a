"""Smoke tests of the programs in examples/."""
