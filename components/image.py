"""The container images the components run in, and the decorator that binds them.

Two variants of one Dockerfile (components/Dockerfile), each with its own tag: the CPU image runs
every task; the CUDA image runs the GPU tasks of a pipeline compiled with ``--gpus N`` (N > 0).
"""

import copy
import functools

from kfp import dsl

IMAGE_REPOSITORY = "ghcr.io/latentanon/latentanon"
IMAGE_VERSION = "0.1.0"
# docker build -f components/Dockerfile -t <PROJECT_IMAGE> .
PROJECT_IMAGE = f"{IMAGE_REPOSITORY}:{IMAGE_VERSION}-cpu"
# docker build -f components/Dockerfile --build-arg TORCH_VARIANT=cu128 -t <PROJECT_IMAGE_CUDA> .
CUDA_VARIANT = "cu128"
PROJECT_IMAGE_CUDA = f"{IMAGE_REPOSITORY}:{IMAGE_VERSION}-{CUDA_VARIANT}"

# The image already has kfp and latentanon installed: nothing is pip-installed at run time.
stage_component = functools.partial(dsl.component, base_image=PROJECT_IMAGE, install_kfp_package=False)


def on_image(component, image: str):
    """A copy of a component that runs in another image (same code, inputs and outputs).

    The GPU tasks use the CUDA variant; the spec is copied so the CPU component stays as it is.
    """
    variant = copy.deepcopy(component)
    variant.component_spec.implementation.container.image = image
    return variant
