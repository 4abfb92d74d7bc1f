"""Ed25519 keys of the access log: the server signs, an auditor verifies with the public key alone.

- Private key: PEM (PKCS#8) in a file outside the metadata store (`Settings.audit_signing_key_file`).
  On a first start (no public key exported yet) it is generated (mode 0600): fine for a demo; in
  production point `CIVICMESH_AUDIT_SIGNING_KEY_FILE` at a key the database's administrators cannot
  read. Once a public key is exported, a missing or different private key is an error, never
  replaced (`open_signer`): a new key would sign the rest of the log and overwrite the public key.
- Public key: PEM (SubjectPublicKeyInfo), exported to `Settings.audit_public_key_file` and shipped
  in every audit export. Holding it lets anyone check signatures; it cannot make one.
- Key id: the first 16 hex digits of SHA-256 over the raw 32-byte public key (printed by
  `civicmesh audit verify`, so an auditor can compare it with the key they were given).
- Signatures: Ed25519 (RFC 8032) over the exact bytes given, as standard padded base64 text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class AuditKeyError(ValueError):
    """A key file is missing, unreadable or not an Ed25519 key (the message names the file)."""


class Verifier:
    """Checks signatures made by the matching `Signer`."""

    def __init__(self, public_key: Ed25519PublicKey) -> None:
        self._key = public_key
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:16]

    @classmethod
    def from_pem(cls, data: bytes, source: str = "public key") -> Verifier:
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise AuditKeyError(f"{source}: not a PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError(f"{source}: not an Ed25519 public key")
        return cls(key)

    @classmethod
    def from_file(cls, path: Path) -> Verifier:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AuditKeyError(f"no audit public key at {path} ({exc.strerror})") from exc
        return cls.from_pem(data, str(path))

    def pem(self) -> str:
        return self._key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def verify(self, signature: str, message: bytes) -> bool:
        """True only for a well-formed signature of exactly `message` by this key."""
        try:
            self._key.verify(base64.b64decode(signature, validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError, TypeError):
            return False
        return True


class Signer:
    """Signs with the private key; `verifier` is its public half."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.verifier = Verifier(private_key.public_key())
        self.key_id = self.verifier.key_id

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._key.sign(message)).decode()

    def pem(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def _read_signer(path: Path) -> Signer:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit signing key {path} ({exc.strerror})") from exc
    except (ValueError, TypeError) as exc:
        raise AuditKeyError(f"{path}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise AuditKeyError(f"{path}: the audit signing key must be Ed25519")
    return Signer(key)


def load_signer(path: Path, *, create: bool) -> Signer:
    """The signing key in `path`; with `create`, generate it (0600, atomically) when absent.

    Two processes starting together both end up with the one key that was written first."""
    if path.exists() or not create:
        return _read_signer(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    signer = Signer.generate()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return _read_signer(path)
    with os.fdopen(fd, "wb") as handle:
        handle.write(signer.pem())
        handle.flush()
        os.fsync(handle.fileno())
    return signer


def open_signer(key_file: Path, public_file: Path) -> Signer:
    """The signing key of a writer, created (and its public key exported) only on a first start.

    Raises AuditKeyError while `public_file` exists and the key in `key_file` is missing or is not
    its private half: restore the key (or, to start a new log with a new key, remove both)."""
    if public_file.exists() and not key_file.exists():
        raise AuditKeyError(
            f"the audit signing key {key_file} is missing, but its public key {public_file} exists: "
            "restore the key (a new one would sign the rest of the log with another key)"
        )
    signer = load_signer(key_file, create=True)
    export_public_key(signer.verifier, public_file)
    return signer


def export_public_key(verifier: Verifier, path: Path) -> None:
    """Write the public key to `path` (atomically) unless it already holds exactly that key.
    Raises AuditKeyError if it holds another key (or no key): an exported key is never replaced."""
    text = verifier.pem()
    try:
        held = path.read_text()
    except FileNotFoundError:
        held = None
    except OSError as exc:
        raise AuditKeyError(f"cannot read the audit public key {path} ({exc.strerror})") from exc
    if held == text:
        return
    if held is not None:
        try:
            other = Verifier.from_pem(held.encode(), str(path)).key_id
        except AuditKeyError:
            other = "no key"
        raise AuditKeyError(
            f"{path} holds public key {other}, but the signing key is {verifier.key_id}: restore the "
            "signing key that belongs to it (an exported public key is never replaced)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
