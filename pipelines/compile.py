"""Compile the pipeline to the YAML a user uploads in the Kubeflow UI.

python -m pipelines.compile            # writes pipelines/latentanon_pipeline.yaml
python pipelines/compile.py --output other.yaml
python -m pipelines.compile --gpus 0 --output cpu.yaml   # a CPU-only cluster
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO_ROOT / "pipelines" / "latentanon_pipeline.yaml"


def compile_pipeline(output: Path = DEFAULT_OUTPUT, gpus_per_task: int = 1) -> Path:
    """Compile atomically: a failed compile never leaves a half-written YAML behind."""
    from kfp import compiler

    from pipelines.latentanon_pipeline import make_pipeline

    latentanon_pipeline = make_pipeline(gpus_per_task)

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp.yaml", dir=output.parent)
    os.close(handle)
    try:
        compiler.Compiler().compile(pipeline_func=latentanon_pipeline, package_path=tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the YAML")
    parser.add_argument(
        "--gpus", type=int, default=1, help="GPUs per pretrain/extract/train task (0 for CPU-only clusters; default 1)"
    )
    args = parser.parse_args(argv)
    print(compile_pipeline(args.output, args.gpus))
    return 0


if __name__ == "__main__":
    if str(REPO_ROOT) not in sys.path:  # run as a script: make components/ and pipelines/ importable
        sys.path.insert(0, str(REPO_ROOT))
    raise SystemExit(main())
