"""Which frozen encoder a spec names: the built-in one or a Hugging Face video model."""

from __future__ import annotations

from pathlib import Path

from latentanon.encoders.base import ClipEncoder
from latentanon.errors import ModelError


def load_encoder(
    spec: str | Path, encoder_dir: str | Path | None = None, device: str = "auto", dtype: str = "auto"
) -> ClipEncoder:
    """The frozen encoder a spec names.

    ``spec``: "builtin" (the pretrained built-in encoder in ``encoder_dir``, default models/encoder),
    "hf:<directory>" (a Hugging Face video model saved with save_pretrained), or a directory holding
    either (the built-in one is recognised by its config.json).
    """
    text = str(spec)
    if text == "builtin":
        from latentanon.encoders.base import BuiltinEncoder

        return BuiltinEncoder(Path(encoder_dir) if encoder_dir is not None else Path("models/encoder"), device, dtype)
    if text.startswith("hf:"):
        from latentanon.encoders.hf import HFVideoEncoder

        if not text[3:]:
            raise ModelError("encoder spec 'hf:' names no directory (use hf:<local directory>)")
        return HFVideoEncoder(text[3:], device, dtype)
    path = Path(text)
    if path.is_dir():
        from latentanon.encoders.builtin_files import CONFIG_FILE, hf_reference, is_builtin_dir

        if is_builtin_dir(path):
            from latentanon.encoders.base import BuiltinEncoder

            return BuiltinEncoder(path, device, dtype)
        reference = hf_reference(path)
        if reference is not None:
            from latentanon.encoders.hf import HFVideoEncoder

            return HFVideoEncoder(reference, device, dtype)
        if (path / CONFIG_FILE).exists():
            from latentanon.encoders.hf import HFVideoEncoder

            return HFVideoEncoder(path, device, dtype)
    raise ModelError(
        f"unknown encoder {text!r}: use 'builtin', 'hf:<local directory>' or an existing encoder directory"
    )
