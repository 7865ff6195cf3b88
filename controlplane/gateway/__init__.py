"""The OpenAI-compatible /v1 gateway: API keys, response cache, routing (stable/canary, session affinity), usage."""
