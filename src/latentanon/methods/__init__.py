"""Anonymizers: one interface (``latentanon.methods.base.Method``), every method registered by name
(``latentanon.methods.registry.METHODS``): paper, paper_batch, leace, adversarial, noise@<scale>,
identity."""
from latentanon.methods.base import Method, fit_view
from latentanon.methods.registry import (
    METHODS,
    base_name,
    create_method,
    expand_names,
    load_method,
    method_class,
    method_files,
    needs_private_labels,
)

__all__ = ["METHODS", "Method", "base_name", "create_method", "expand_names", "fit_view", "load_method",
           "method_class", "method_files", "needs_private_labels"]
