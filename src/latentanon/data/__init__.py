"""Synthetic benchmark, dataset layouts, streaming video io, manifests and their validation."""
