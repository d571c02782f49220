"""Adapters: each external system behind a port, over the official Azure SDK.

SDK exceptions are translated into ``rotation.errors`` here and never escape.
"""
