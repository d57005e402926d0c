"""The utility tasks (AR, TAD, AD) and the private-attribute targets: targets, heads, scoring.

Below both methods (which co-train task heads) and evaluation (which scores them), so neither
reaches into the other. See ``latentanon.tasks.specs`` for the task table. This package file
imports nothing: import the submodules, so that a light import never loads torch.
"""
