"""Frozen video encoders (built-in or Hugging Face), their pretraining, and feature extraction.

This package file imports nothing, so reading the encoder config never loads torch:
``latentanon.encoders.loading.load_encoder`` picks an encoder by its spec.
"""
