"""Certificates and keys of the local cluster, made with the `openssl` CLI.

One self-signed CA signs the API server's serving certificate and one client
certificate per identity (admin, controller manager, scheduler, node agent).
A second CA, the front proxy's, signs only the client certificate the API
server's aggregator presents to extension API servers (kubesoar's router): an
extension trusts the X-Remote-User headers of that certificate alone, so it must
not be a CA that signs users' certificates too.
Files are created once and reused, so kubeconfigs stay valid across restarts.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

# Long enough that a developer's cluster never expires under them.
VALID_DAYS = 3650

# The API server is reached only on loopback; the in-cluster names are listed so
# that a client using them (with a resolver override) still verifies the cert.
SERVING_SANS = (
    "IP:127.0.0.1",
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate's subject: `CN` is the user, each `O` a group."""

    file_stem: str
    common_name: str
    organizations: tuple[str, ...] = ()

    @property
    def subject(self) -> str:
        return "".join(f"/O={org}" for org in self.organizations) + f"/CN={self.common_name}"


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _new_key(path: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)
    )
    path.chmod(0o600)


# The aggregator's client certificate: its CN is the API server's
# --requestheader-allowed-names, which extensions check too.
FRONT_PROXY_CA = "front-proxy-ca"
FRONT_PROXY_CLIENT = "front-proxy-client"


def ensure_ca(pki_dir: Path, stem: str = "ca") -> None:
    key, cert = pki_dir / f"{stem}.key", pki_dir / f"{stem}.crt"
    if key.exists() and cert.exists():
        return
    pki_dir.mkdir(parents=True, exist_ok=True)
    _new_key(key)
    _openssl(
        "req", "-x509", "-new", "-key", str(key), "-out", str(cert),
        "-days", str(VALID_DAYS), "-subj", f"/CN=kubesoar-local-{stem}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip


def _signed_cert(pki_dir: Path, stem: str, subject: str, extensions: str, ca: str = "ca") -> None:
    key, cert = pki_dir / f"{stem}.key", pki_dir / f"{stem}.crt"
    if key.exists() and cert.exists():
        return
    csr, ext = pki_dir / f"{stem}.csr", pki_dir / f"{stem}.ext"
    _new_key(key)
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(pki_dir / f"{ca}.crt"),
        "-CAkey", str(pki_dir / f"{ca}.key"), "-CAcreateserial", "-out", str(cert),
        "-days", str(VALID_DAYS), "-extfile", str(ext),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()


def ensure_serving_cert(pki_dir: Path) -> None:
    _signed_cert(
        pki_dir,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={','.join(SERVING_SANS)}\n",
    )


def ensure_client_cert(pki_dir: Path, identity: ClientIdentity) -> None:
    _signed_cert(
        pki_dir,
        identity.file_stem,
        identity.subject,
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )


def ensure_front_proxy(pki_dir: Path) -> None:
    """The aggregator's own CA and the client certificate it proxies with."""
    ensure_ca(pki_dir, FRONT_PROXY_CA)
    _signed_cert(
        pki_dir,
        FRONT_PROXY_CLIENT,
        f"/CN={FRONT_PROXY_CLIENT}",
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
        ca=FRONT_PROXY_CA,
    )


def ensure_extension_serving_cert(pki_dir: Path, stem: str, dns_names: tuple[str, ...]) -> None:
    """A serving certificate from the cluster CA for an extension API server (the
    APIService's caBundle is then the cluster CA); `dns_names` include the Service's
    `<name>.<namespace>.svc`, the name the aggregator verifies."""
    sans = ",".join(["IP:127.0.0.1", *(f"DNS:{name}" for name in dns_names)])
    _signed_cert(
        pki_dir,
        stem,
        f"/CN={dns_names[0]}",
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        f"subjectAltName={sans}\n",
    )


def ensure_service_account_keys(pki_dir: Path) -> None:
    """RSA pair that signs service account tokens (RS256 is what every client expects)."""
    key, pub = pki_dir / "sa.key", pki_dir / "sa.pub"
    if key.exists() and pub.exists():
        return
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    key.chmod(0o600)
    _openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
