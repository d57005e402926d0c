"""Parse a compiled pipeline YAML strictly with one backend's real protos.

The pipeline spec is parsed as ``ml_pipelines.PipelineSpec`` and each executor's platform config
as ``kfp_kubernetes.KubernetesExecutorConfig`` (the PlatformSpec holds them as free Structs), with
unknown fields rejected: a field the backend's protos do not define is one its driver refuses.

The newest supported backend's protos are the installed ones (requirements.lock); the oldest's
(backend-protos.lock) are installed by the Makefile into a folder of their own, since two versions
of one proto package cannot load in one process: each check runs in a child interpreter.

python -m pipelines.protos pipelines/latentanon_pipeline.yaml                      # installed protos
python -m pipelines.protos --protos .venv/backend-protos/oldest pipelines/latentanon_pipeline.yaml

Exit status: 0 parses, 1 a field the protos do not know, 2 the YAML or the protos folder is unusable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

PROTO_PACKAGES = ("kfp-pipeline-spec", "kfp-kubernetes")


def _load_protos(protos_dir: Path | None) -> tuple[types.ModuleType, types.ModuleType]:
    """The pipeline-spec and kfp-kubernetes message modules, from ``protos_dir`` when given.

    The packages' ``__init__`` files import the whole SDK (of the installed version): bare package
    modules pointing into ``protos_dir`` make only the generated ``*_pb2`` modules load from there.
    """
    if protos_dir is not None:
        for name, sub in (("kfp", ""), ("kfp.pipeline_spec", "pipeline_spec"), ("kfp.kubernetes", "kubernetes")):
            folder = protos_dir / "kfp" / sub if sub else protos_dir / "kfp"
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"{protos_dir}: no {folder.relative_to(protos_dir)} (are the protos installed?)"
                )
            package = types.ModuleType(name)
            package.__path__ = [str(folder)]
            sys.modules[name] = package
    spec_pb2 = importlib.import_module("kfp.pipeline_spec.pipeline_spec_pb2")
    kubernetes_pb2 = importlib.import_module("kfp.kubernetes.kubernetes_executor_config_pb2")
    return spec_pb2, kubernetes_pb2


def _versions(protos_dir: Path | None) -> dict[str, str]:
    """The proto packages' versions, read from the dist-info beside them (or the installed ones)."""
    from importlib import metadata

    if protos_dir is None:
        return {package: metadata.version(package) for package in PROTO_PACKAGES}
    found = {}
    for dist in metadata.distributions(path=[str(protos_dir)]):
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in PROTO_PACKAGES:
            found[name] = dist.version
    return found


def parse_problems(documents: list[dict], protos_dir: Path | None = None) -> list[str]:
    """What the protos refuse in a compiled pipeline (pipeline spec, then platform spec): one line each.

    With ``protos_dir`` this replaces the ``kfp`` packages of the running interpreter: call it
    through ``check`` (a child interpreter) unless this process is one for the check alone.
    """
    from google.protobuf import json_format

    spec_pb2, kubernetes_pb2 = _load_protos(protos_dir)
    if len(documents) not in (1, 2):
        return [f"expected the pipeline spec and an optional platform spec, got {len(documents)} documents"]
    problems = []
    try:
        json_format.ParseDict(documents[0], spec_pb2.PipelineSpec(), ignore_unknown_fields=False)
    except json_format.ParseError as exc:
        problems.append(f"pipeline spec: {exc}")
    if len(documents) == 2:
        platform = documents[1]
        try:
            json_format.ParseDict(platform, spec_pb2.PlatformSpec(), ignore_unknown_fields=False)
        except json_format.ParseError as exc:
            problems.append(f"platform spec: {exc}")
        executors = platform.get("platforms", {}).get("kubernetes", {}).get("deploymentSpec", {}).get("executors", {})
        for name, config in sorted(executors.items()):
            try:
                json_format.ParseDict(config, kubernetes_pb2.KubernetesExecutorConfig(), ignore_unknown_fields=False)
            except json_format.ParseError as exc:
                problems.append(f"executor {name}: {exc}")
    return problems


def check(pipeline_yaml: Path, protos_dir: Path | None = None) -> dict:
    """Run the strict parse in a child interpreter: {"versions", "problems"}; raises on an unusable input."""
    command = [sys.executable, "-m", "pipelines.protos", "--json", str(pipeline_yaml)]
    if protos_dir is not None:
        command[3:3] = ["--protos", str(protos_dir)]
    done = subprocess.run(
        command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, timeout=120
    )
    if done.returncode not in (0, 1):
        raise RuntimeError(done.stderr.strip() or f"pipelines.protos exited {done.returncode}")
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    import yaml

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline_yaml", type=Path)
    parser.add_argument("--protos", type=Path, default=None, help="folder the protos were installed into")
    parser.add_argument("--json", action="store_true", help="print {versions, problems} as JSON")
    args = parser.parse_args(argv)
    try:
        documents = [d for d in yaml.safe_load_all(args.pipeline_yaml.read_text()) if d is not None]
        if not documents or not all(isinstance(d, dict) for d in documents):
            raise ValueError("not a compiled pipeline (no YAML mapping)")
        versions = _versions(args.protos)
        problems = parse_problems(documents, args.protos)
    except (OSError, ValueError, ImportError, yaml.YAMLError) as exc:
        print(f"{args.pipeline_yaml}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"versions": versions, "problems": problems}))
    else:
        shown = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        for problem in problems:
            print(f"{args.pipeline_yaml}: {problem}")
        print(f"{args.pipeline_yaml}: {'refused' if problems else 'parses'} with {shown}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
