"""The secure stack's certificates: one CA, and per service (Kafka, PostgreSQL, S3) a key and a
certificate it signed, valid for the names clients use (localhost, 127.0.0.1 and the stack's
host), made once with the `openssl` command (Debian's OpenSSL 3; no extra Python package) and
kept in the state directory's `tls/`. Clients verify them against `ca.crt` alone.

Kafka's JVM reads a PKCS#12 keystore; its password is generated per stack and kept beside it
(mode 0600), like every other secret of the stack."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from infra.process import StackError, private_files

SERVICES = ("kafka", "postgres", "s3")
DAYS = 825  # the longest validity clients accept for a server certificate


@dataclass(frozen=True)
class Certificates:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, service: str) -> Path:
        return self.directory / f"{service}.crt"

    def key(self, service: str) -> Path:
        return self.directory / f"{service}.key"

    @property
    def kafka_keystore(self) -> Path:
        return self.directory / "kafka.p12"

    @property
    def kafka_keystore_password(self) -> str:
        return (self.directory / "kafka.p12.password").read_text().strip()


def _openssl(*args: str) -> None:
    if not shutil.which("openssl"):
        raise StackError("openssl not found: apt-get install openssl")
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise StackError(f"openssl {args[0]} failed: {res.stderr.strip()[-500:]}")


def _private(path: Path) -> None:
    path.chmod(0o600)


def ensure(directory: Path, host: str = "127.0.0.1") -> Certificates:
    """The CA and the services' certificates in `directory` (the owner's alone: PostgreSQL's
    server gets copies of its own), made if missing (idempotent)."""
    with private_files():
        return _ensure(directory, host)


def _ensure(directory: Path, host: str) -> Certificates:
    certs = Certificates(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    ca_key = directory / "ca.key"
    if not certs.ca.exists():
        _openssl("genrsa", "-out", str(ca_key), "2048")
        _private(ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", str(ca_key), "-sha256", "-days", str(DAYS),
            "-subj", "/CN=VisionScaling local stack CA", "-out", str(certs.ca),
        )  # fmt: skip
    names = {"DNS:localhost", "IP:127.0.0.1", f"IP:{host}"}
    for service in SERVICES:
        key, cert = certs.key(service), certs.cert(service)
        if cert.exists():
            continue
        csr = directory / f"{service}.csr"
        _openssl("genrsa", "-out", str(key), "2048")
        _private(key)
        _openssl(
            "req", "-new", "-key", str(key), "-subj", f"/CN=visionscaling-{service}",
            "-addext", "subjectAltName=" + ",".join(sorted(names)), "-out", str(csr),
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", str(csr), "-CA", str(certs.ca), "-CAkey", str(ca_key), "-CAcreateserial",
            "-days", str(DAYS), "-sha256", "-copy_extensions", "copy", "-out", str(cert),
        )  # fmt: skip
        csr.unlink()
    if not certs.kafka_keystore.exists():
        password_file = directory / "kafka.p12.password"
        password_file.write_text(secrets.token_urlsafe(18))
        _private(password_file)
        _openssl(
            "pkcs12", "-export", "-in", str(certs.cert("kafka")), "-inkey", str(certs.key("kafka")),
            "-name", "kafka", "-passout", f"file:{password_file}", "-out", str(certs.kafka_keystore),
        )  # fmt: skip
        _private(certs.kafka_keystore)
    return certs


def other_ca(directory: Path) -> Path:
    """A CA that signed none of the stack's certificates: what a client with the wrong CA holds."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / "other-ca.key", directory / "other-ca.crt"
    if not cert.exists():
        _openssl("genrsa", "-out", str(key), "2048")
        _openssl(
            "req", "-x509", "-new", "-key", str(key), "-days", "30", "-subj", "/CN=another CA", "-out", str(cert)
        )  # fmt: skip
    return cert


def give_to(path: Path, user: str) -> None:
    """Hand a key file to the service's own user (PostgreSQL refuses a key others can read)."""
    import pwd

    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        os.chown(path, pw.pw_uid, pw.pw_gid)
