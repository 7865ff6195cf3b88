"""Service functions: the one place where the rules live. The REST API and the dashboard both call these."""
