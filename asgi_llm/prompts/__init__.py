"""Prompt sources: the built-in versioned store, its templates, and Langfuse."""
