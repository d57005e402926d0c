"""Kubeflow pipeline definitions of latentanon and the command that compiles them."""
