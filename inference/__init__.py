"""The inference worker: a torch mixture-of-experts engine with batching, sessions and an HTTP API.

Standalone: it imports torch, never Django. Importing this package itself stays light (no torch) so that
``inference.artifacts`` can be used by the control plane to read checkpoints without loading torch.
"""
