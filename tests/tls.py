"""TLS for the tests: a throwaway CA and server certificate, and Debian's
stunnel4 terminating TLS in front of a plain gearmand (Debian's gearmand is
built without TLS)."""
from __future__ import annotations

import os
import shutil
import signal
import ssl
import subprocess
import tempfile

from servers import free_port, wait_for_port

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel") or "/usr/bin/stunnel4"


def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(directory: str, name: str = "test") -> dict:
    """Create ``<name>-ca.pem`` and a server cert for 127.0.0.1/localhost."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem",
             "-subj", f"/CN={name} test CA", cwd=directory)
    ext = os.path.join(directory, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}-server.key",
             "-out", f"{name}-server.csr", "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}-server.csr", "-CA", f"{name}-ca.pem",
             "-CAkey", f"{name}-ca.key", "-CAcreateserial", "-days", "2",
             "-out", f"{name}-server.pem", "-extfile", ext, cwd=directory)
    return {
        "ca": os.path.join(directory, f"{name}-ca.pem"),
        "cert": os.path.join(directory, f"{name}-server.pem"),
        "key": os.path.join(directory, f"{name}-server.key"),
    }


class Stunnel:
    """stunnel4 accepting TLS on a free loopback port, forwarding to
    ``target_port`` on 127.0.0.1 in plain TCP."""

    def __init__(self, target_port: int, cert: str, key: str) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="stunnel-test-")
        self.conf = os.path.join(self.dir, "stunnel.conf")
        with open(self.conf, "w") as f:
            f.write(
                "foreground = yes\n"
                f"pid = {os.path.join(self.dir, 'stunnel.pid')}\n"
                "debug = 3\n"
                f"output = {os.path.join(self.dir, 'stunnel.log')}\n"
                "[gearman]\n"
                f"accept = 127.0.0.1:{self.port}\n"
                f"connect = 127.0.0.1:{target_port}\n"
                f"cert = {cert}\n"
                f"key = {key}\n"
            )
        self.proc = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Stunnel":
        self.proc = subprocess.Popen([STUNNEL, self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_for_port("127.0.0.1", self.port, proc=self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


def client_context(ca: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    return ctx
