"""The control plane: registry, inventory, deployments, gateway, monitoring, jobs, alerts and rollouts."""
