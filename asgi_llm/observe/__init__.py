"""Observation: the call record, logging events and their queue, cost, and metrics.

Everything here runs after the answer was served, off the response path.
"""
