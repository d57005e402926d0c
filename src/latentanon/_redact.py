"""The one redaction rule for everything that leaves as a log: MLflow params, stage summaries
(the report and the Kubeflow UI show them), trial params.

A value under a key named like a secret (password, secret, token, credentials, an access/api/
private/signing key) is replaced whole; in every other string a URL's password
(``scheme://user:password@host``) is replaced. Stdlib only: the lowest layer may use it.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
_SECRET_WORDS = {
    "password",
    "passwd",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "credential",
    "credentials",
    "apikey",
    "passphrase",
}
_KEY_QUALIFIERS = {"access", "secret", "api", "private", "signing", "encryption", "auth"}
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@/\s]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<head>[?&](?:password|passwd|secret|token|api_key|apikey|access_key)=)[^&\s]+", re.IGNORECASE
)


def is_secret_key(key: str) -> bool:
    """Whether a param named ``key`` (any of ``a.b_c-d``) holds a secret by its name."""
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", str(key)).lower()) if w]
    for i, word in enumerate(words):
        if word in _SECRET_WORDS or word.endswith(("password", "secret", "token")):
            return True
        if word == "key" and (len(words) == 1 or (i and words[i - 1] in _KEY_QUALIFIERS)):
            return True
    return False


def redact_text(text: str) -> str:
    """``text`` with URL passwords and secret query values replaced."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}:{REDACTED}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['head']}{REDACTED}", text)


def redact(value: Any, key: str = "") -> Any:
    """``value`` (nested dicts, lists, strings) with secrets replaced; other values unchanged."""
    if key and is_secret_key(key) and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    if isinstance(value, str):
        return redact_text(value)
    return value
