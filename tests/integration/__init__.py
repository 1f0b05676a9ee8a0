"""Integration tests: real processes (sandbox clusters, kubectl) on loopback."""
