"""State shared across workers and instances: rate limits, the response cache, DualCache's Redis half."""
