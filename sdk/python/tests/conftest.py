"""A development vault for the tests: scripts/dev-vault in a temporary directory (SoftHSM2
token, TLS certificate for 127.0.0.1, SQLite), served by bkvd on 127.0.0.1 with a port the
kernel picks, stopped and removed after the session even when tests fail.

Environment (run-tests.sh sets it): BKVD (the bkvd binary), BKV_SOURCE_DIR (the
repository), BKV_LIBRARY (libbkv.so.0), BKV_TEST_DIR (optional: where to work; from
tests/with-vault, which also kills any bkvd left there).
"""

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import bkv

# The vault publishes a light Argon2id and the clients set the same: the KSF is not what
# these tests are about, and libbkv refuses to register under published parameters below
# its floor.
LIGHT_ARGON2 = (1, 1024, 1)


def native_env(env=None):
    """The environment for the programs the tests start (bkvd, bkv, openssl, cc): without
    the ASan runtime run-tests.sh preloads into Python for an ASan-built libbkv."""
    env = dict(os.environ if env is None else env)
    if "BKV_NATIVE_ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] = env["BKV_NATIVE_ASAN_OPTIONS"]
        env["LD_PRELOAD"] = env["BKV_NATIVE_LD_PRELOAD"]
    return env


class Vault:
    def __init__(self, root):
        self.root = root
        source = Path(os.environ["BKV_SOURCE_DIR"])
        self.bkvd = os.environ["BKVD"]
        self.env = native_env(dict(os.environ, BKVD=self.bkvd))
        out = subprocess.run([source / "scripts" / "dev-vault", root / "vault"], env=self.env,
                             check=True, capture_output=True, text=True)
        self.config = out.stdout.strip().splitlines()[-1]
        self.env["SOFTHSM2_CONF"] = str(root / "vault" / "hsm" / "softhsm2.conf")
        text = Path(self.config).read_text()
        t, m, p = LIGHT_ARGON2
        text = text.replace("[opaque]\n", f"[opaque]\nargon2_iterations = {t}\n"
                            f"argon2_memory_kib = {m}\nargon2_parallelism = {p}\n", 1)
        Path(self.config).write_text(text)
        self.ca_file = str(root / "vault" / "tls" / "cert.pem")
        port_file = root / "port"
        self.log = open(root / "bkvd.log", "ab")
        self.process = subprocess.Popen(
            [self.bkvd, "serve", "--config", self.config, "--listen", "127.0.0.1:0",
             "--workers", "1", "--port-file", str(port_file)],
            env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("bkvd did not start: " + (root / "bkvd.log").read_text())
            time.sleep(0.05)
        self.url = f"https://127.0.0.1:{port_file.read_text().strip()}"

    def token(self, account=None):
        """A development JWT for account (a fresh random one if None)."""
        account = account or "py-" + uuid.uuid4().hex[:12]
        return subprocess.run([self.bkvd, "dev-token", "--config", self.config, account],
                              env=self.env, check=True, capture_output=True,
                              text=True).stdout.strip()

    def client(self, **options):
        options.setdefault("ca_file", self.ca_file)
        options.setdefault("argon2", LIGHT_ARGON2)
        return bkv.Client(self.url, **options)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session")
def vault():
    parent = os.environ.get("BKV_TEST_DIR")
    root = Path(tempfile.mkdtemp(prefix="bkv-py-", dir=parent))
    try:
        v = Vault(root)
        try:
            yield v
        finally:
            v.stop()
            log = (root / "bkvd.log").read_text(errors="replace")
            assert "Sanitizer" not in log, log
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(vault):
    with vault.client() as c:
        yield c


@pytest.fixture
def token(vault):
    return vault.token()
