"""Rendering: the engine composes contracts, contact policy, the sandbox and the channels."""
