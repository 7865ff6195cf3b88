"""Rollouts: the state machine (machine.py), the gates (gates.py) and the canary workers (canaries.py)."""
