"""Compile the pipeline to the YAML a user uploads in the Kubeflow UI.

python -m pipelines.compile            # writes pipelines/latentanon_pipeline.yaml
python pipelines/compile.py --output other.yaml
python -m pipelines.compile --gpus 0 --output cpu.yaml   # a CPU-only cluster
python -m pipelines.compile --release --image REPO@sha256:<cpu digest> --cuda-image REPO@sha256:<cuda digest>

KFP's cache key holds the image reference as text, not the image's content: a release build
names the images by digest (``--release`` refuses a tag), so a rebuilt image gets a new key.
"""

import argparse
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "pipelines" / "latentanon_pipeline.yaml"


DIGEST_REFERENCE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")


class MutableImageError(ValueError):
    """A release build was given an image by tag, which KFP's cache cannot tell from a rebuild."""


def is_pinned(reference: str) -> bool:
    return bool(DIGEST_REFERENCE.match(reference))


def check_image(reference: str, release: bool) -> None:
    """Refuse (release) or warn (dev) when ``reference`` is a tag rather than a digest."""
    if is_pinned(reference):
        return
    message = (
        f"image {reference!r} is not pinned by digest (REPO@sha256:<64 hex>): KFP's cache key holds the "
        "reference as text, so an image rebuilt under the same tag reuses the old image's cached results"
    )
    if release:
        raise MutableImageError(message)
    warnings.warn(message, stacklevel=2)


def pin_images(path: Path, images: dict[str, str]) -> None:
    """Replace each compiled image reference (the tag) by the reference given for it, in place."""
    documents = list(yaml.safe_load_all(path.read_text()))
    for document in documents:
        for executor in ((document or {}).get("deploymentSpec") or {}).get("executors", {}).values():
            container = executor.get("container", {})
            container["image"] = images.get(container.get("image"), container.get("image"))
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))


def compile_pipeline(
    output: Path = DEFAULT_OUTPUT,
    gpus_per_task: int = 1,
    image: str | None = None,
    cuda_image: str | None = None,
    release: bool = False,
) -> Path:
    """Compile atomically: a failed compile never leaves a half-written YAML behind.

    ``image``/``cuda_image`` replace the CPU/CUDA images' tags; a ``release`` build refuses any
    image in the YAML that is not pinned by digest."""
    from components.image import PROJECT_IMAGE, PROJECT_IMAGE_CUDA
    from kfp import compiler

    from pipelines.latentanon_pipeline import make_pipeline

    latentanon_pipeline = make_pipeline(gpus_per_task)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp.yaml", dir=output.parent)
    os.close(handle)
    try:
        compiler.Compiler().compile(pipeline_func=latentanon_pipeline, package_path=tmp)
        images = {tag: ref for tag, ref in ((PROJECT_IMAGE, image), (PROJECT_IMAGE_CUDA, cuda_image)) if ref}
        if images:
            pin_images(Path(tmp), images)
        for reference in sorted(compiled_images(Path(tmp))):
            check_image(reference, release)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def compiled_images(path: Path) -> set[str]:
    """Every container image the compiled YAML names."""
    found = set()
    for document in yaml.safe_load_all(path.read_text()):
        for executor in ((document or {}).get("deploymentSpec") or {}).get("executors", {}).values():
            found.add(executor["container"]["image"])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the YAML")
    parser.add_argument(
        "--gpus", type=int, default=1, help="GPUs per pretrain/extract/train task (0 for CPU-only clusters; default 1)"
    )
    parser.add_argument("--image", help="the CPU image, REPO@sha256:<digest> (default: the tag in components/image.py)")
    parser.add_argument("--cuda-image", help="the CUDA image of the GPU tasks, REPO@sha256:<digest>")
    parser.add_argument(
        "--release", action="store_true", help="refuse any image not pinned by digest (without it: a warning)"
    )
    args = parser.parse_args(argv)
    try:
        print(compile_pipeline(args.output, args.gpus, args.image, args.cuda_image, args.release))
    except MutableImageError as exc:
        parser.error(str(exc))
    return 0


if __name__ == "__main__":
    if str(REPO_ROOT) not in sys.path:  # run as a script: make components/ and pipelines/ importable
        sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main())
