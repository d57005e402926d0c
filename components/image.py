"""The container image every component runs in, and the decorator that binds it."""
import functools

from kfp import dsl

# Built from components/Dockerfile; push it under this name (or change it here and recompile).
PROJECT_IMAGE = "ghcr.io/latentanon/latentanon:0.1.0"

# The image already has kfp and latentanon installed: nothing is pip-installed at run time.
stage_component = functools.partial(dsl.component, base_image=PROJECT_IMAGE, install_kfp_package=False)
