"""Models the engine can serve: the native MoE transformer and an adapter for Hugging Face causal LMs."""
