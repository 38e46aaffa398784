"""The config: LiteLLM's YAML shape typed, loaded, checked, and the callbacks it names."""
