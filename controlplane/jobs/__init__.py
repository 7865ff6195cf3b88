"""Scheduled jobs: the job table (registry.py), the scheduler and its lease, runs, status and heartbeat."""
