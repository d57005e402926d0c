"""Pin the project's image by digest in the overlays' kustomize ``images:`` entries.

The manifests name the image by tag (``ghcr.io/latentanon/latentanon:0.1.0-cpu``, the CUDA
variant ``...:0.1.0-cu128``), and the overlays that run it carry an ``images:`` entry matching
that reference (standalone and multi-user: CPU; gpu: CUDA). Committed without a digest, a dev
install runs the tag. A release writes the digest of the image it pushed, so what runs is that
content and not whatever the tag points at later:

    docker buildx build --push --metadata-file cpu.json -f components/Dockerfile -t <cpu tag> .
    python k8s/install/pin_image_digest.py cpu --metadata-file cpu.json
    python k8s/install/pin_image_digest.py cuda --digest sha256:<64 hex>
    python k8s/install/pin_image_digest.py --check      # release gate: exit 2 while any tag is left

Only the ``digest:`` line of each matching entry is written (added or replaced); comments and
every other line stay as they are, and running it again with the same digest changes nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

IMAGE_REPOSITORY = "ghcr.io/latentanon/latentanon"
# The references the manifests use (components/image.py: PROJECT_IMAGE, PROJECT_IMAGE_CUDA).
VARIANT_IMAGES = {"cpu": f"{IMAGE_REPOSITORY}:0.1.0-cpu", "cuda": f"{IMAGE_REPOSITORY}:0.1.0-cu128"}
OVERLAYS = Path(__file__).resolve().parents[1] / "overlays"
METADATA_DIGEST_KEY = "containerimage.digest"  # docker buildx build --metadata-file
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class PinError(ValueError):
    pass


def check_digest(digest: object, where: str) -> str:
    if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
        raise PinError(f"{where}: {digest!r} is not a digest (sha256: followed by 64 lowercase hex digits)")
    return digest


def digest_from_metadata(path: Path) -> str:
    """The pushed image's digest from ``docker buildx build --metadata-file`` output."""
    try:
        metadata = json.loads(path.read_text())
    except OSError as exc:
        raise PinError(f"{path}: cannot read the metadata file: {exc.strerror}") from exc
    except ValueError as exc:
        raise PinError(f"{path}: not JSON (docker buildx build --metadata-file writes JSON): {exc}") from exc
    if not isinstance(metadata, dict) or METADATA_DIGEST_KEY not in metadata:
        raise PinError(
            f"{path}: no {METADATA_DIGEST_KEY!r} key (docker buildx build --push --metadata-file FILE writes it)"
        )
    return check_digest(metadata[METADATA_DIGEST_KEY], f"{path}: {METADATA_DIGEST_KEY}")


def kustomization_files(overlays: Path) -> list[Path]:
    return sorted(overlays.glob("*/kustomization.yaml"))


def image_entries(path: Path, text: str) -> list[dict]:
    try:
        kustomization = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise PinError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(kustomization, dict):
        raise PinError(f"{path}: not a kustomization (a YAML mapping)")
    entries = kustomization.get("images") or []
    return [e for e in entries if isinstance(e, dict) and e.get("name") in VARIANT_IMAGES.values()]


def with_digest(path: Path, text: str, image: str, digest: str) -> str:
    """``text`` with ``digest:`` set on the block-style entry ``- name: <image>``, nothing else touched."""
    lines = text.splitlines(keepends=True)
    entry_start = re.compile(rf"^(\s*)- name:\s*[\"']?{re.escape(image)}[\"']?\s*(#.*)?$")
    for index, line in enumerate(lines):
        found = entry_start.match(line.rstrip("\r\n"))
        if not found:
            continue
        key_indent = found.group(1) + "  "
        end = index + 1  # the entry's keys: the following lines indented deeper than its dash
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(key_indent)):
            end += 1
        while end > index + 1 and not lines[end - 1].strip():
            end -= 1  # blank lines after the entry belong to what follows
        newline = "\r\n" if line.endswith("\r\n") else "\n"
        digest_line = f"{key_indent}digest: {digest}{newline}"
        for key_index in range(index + 1, end):
            if re.match(rf"^{key_indent}digest:", lines[key_index]):
                lines[key_index] = digest_line
                break
        else:
            if not lines[end - 1].endswith("\n"):
                lines[end - 1] += newline
            lines.insert(end, digest_line)
        return "".join(lines)
    raise PinError(f"{path}: the images entry {image!r} is not written as a block list item ('- name: {image}')")


def pin(overlays: Path, variant: str, digest: str) -> list[Path]:
    """Write ``digest`` on every overlay entry of ``variant``'s image; the files changed."""
    image = VARIANT_IMAGES[variant]
    check_digest(digest, "digest")
    matched, changed = [], []
    for path in kustomization_files(overlays):
        text = path.read_text()
        entries = [e for e in image_entries(path, text) if e["name"] == image]
        if not entries:
            continue
        matched.append(path)
        if any("newTag" in e for e in entries):
            # kustomize would write REPO:TAG@DIGEST; the digest alone names the content
            raise PinError(f"{path}: the images entry {image!r} sets newTag; remove it, the digest replaces it")
        updated = with_digest(path, text, image, digest)
        # the edit is textual (comments stay); make sure it meant what it should
        expected = yaml.safe_load(text)
        for entry in expected["images"]:
            if entry.get("name") == image:
                entry["digest"] = digest
        if yaml.safe_load(updated) != expected:
            raise PinError(f"{path}: could not set the digest of {image!r} without changing anything else")
        if updated != text:
            path.write_text(updated)
            changed.append(path)
    if not matched:
        raise PinError(f"{overlays}: no overlay's kustomization.yaml has an images entry named {image!r}")
    return changed


def unpinned(overlays: Path, variants: list[str]) -> list[str]:
    """'file: image' for each entry of ``variants`` that has no valid digest."""
    images = {VARIANT_IMAGES[v] for v in variants}
    problems, seen = [], set()
    for path in kustomization_files(overlays):
        for entry in image_entries(path, path.read_text()):
            if entry["name"] not in images:
                continue
            seen.add(entry["name"])
            digest = entry.get("digest")
            if digest is None:
                problems.append(f"{path}: {entry['name']} has no digest (the tag would run)")
            elif not DIGEST.fullmatch(str(digest)):
                problems.append(f"{path}: {entry['name']} has a malformed digest {digest!r}")
    problems += [f"{overlays}: no overlay has an images entry for {image}" for image in sorted(images - seen)]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", nargs="?", choices=sorted(VARIANT_IMAGES), help="which image the digest is of")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--digest", help="sha256:<64 lowercase hex>")
    source.add_argument("--metadata-file", type=Path, help="the JSON of docker buildx build --metadata-file")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 2 if an entry (of VARIANT, or any) has no digest"
    )
    parser.add_argument("--overlays", type=Path, default=OVERLAYS, help="the folder of the overlays")
    args = parser.parse_args(argv)
    if args.check:
        if args.digest or args.metadata_file:
            parser.error("--check writes nothing: give no --digest or --metadata-file")
        try:
            problems = unpinned(args.overlays, [args.variant] if args.variant else sorted(VARIANT_IMAGES))
        except PinError as exc:
            raise SystemExit(str(exc)) from exc
        for problem in problems:
            print(f"not pinned by digest: {problem}", file=sys.stderr)
        return 2 if problems else 0
    if not args.variant or not (args.digest or args.metadata_file):
        parser.error("give the variant (cpu or cuda) and --digest or --metadata-file")
    try:
        digest = (
            digest_from_metadata(args.metadata_file) if args.metadata_file else check_digest(args.digest, "--digest")
        )
        changed = pin(args.overlays, args.variant, digest)
    except PinError as exc:
        raise SystemExit(str(exc)) from exc
    for path in changed:
        print(f"pinned {VARIANT_IMAGES[args.variant]} to {digest} in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
