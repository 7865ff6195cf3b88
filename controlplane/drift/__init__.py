"""Drift checks on deployments (checks.py); the statistics live in controlplane.stats.drift."""
