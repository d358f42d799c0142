"""A throwaway Dovecot IMAP server on 127.0.0.1 for the tests.

Debian's ``dovecot-imapd`` runs with its own minimal configuration in a
fresh directory under /tmp (``dovecot -c <dir>/dovecot.conf -F``; the
system configuration is never read): STARTTLS on one free port, IMAPS on
another, both with the certificate from ``tests/servers/tls.py``; one test
user in a passwd-file; Maildir storage; IDLE and MOVE as Dovecot offers
them by default. Under root the mail files belong to an unprivileged user
(``nobody``), as Dovecot refuses mail access as root.

``dovecot_server()`` is the same server as a plain context manager, for
the benchmarks.

Fixtures:
- ``dovecot``: session; the running server (``Dovecot``) with helpers to
  APPEND a raw mail with a given INTERNALDATE and to count mails per folder.
- ``imap_mailbox``: per test; the same server with every folder emptied.
"""

from __future__ import annotations

import grp
import imaplib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from tests.servers import stop_process, unavailable
from tests.servers.tls import TlsFiles, throwaway_tls

DOVECOT = "/usr/sbin/dovecot"
USER, PASSWORD = "forum", "test-password-1"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal_user}
default_login_user = {login_user}
default_internal_group = {internal_group}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
mail_privileged_group =
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
  {login_chroot}
}}
service auth-worker {{
  user = {internal_user}
}}
service anvil {{
  {anvil_chroot}
  # No login penalty after the bad-password test: it would slow the rest.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


@dataclass
class Dovecot:
    root: Path
    host: str
    imap_port: int  # plain, STARTTLS offered
    imaps_port: int  # implicit TLS
    user: str
    password: str
    tls: TlsFiles
    process: subprocess.Popen

    @property
    def ca_file(self) -> str:
        return str(self.tls.ca_file)

    def connect(self) -> imaplib.IMAP4_SSL:
        """A logged-in IMAPS connection for the tests' own checks."""
        conn = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=self.tls.client_context(),
                                 timeout=10)
        conn.login(self.user, self.password)
        return conn

    def append(self, raw: bytes, internaldate: datetime, folder: str = "INBOX") -> None:
        """Deliver ``raw`` into ``folder`` as if it had arrived at ``internaldate``."""
        with self.connect() as conn:
            typ, data = conn.append(_quote(folder), None, imaplib.Time2Internaldate(internaldate), raw)
            assert typ == "OK", data

    def folders(self) -> dict[str, int]:
        """Every folder (decoded from modified UTF-7) and its number of mails."""
        with self.connect() as conn:
            typ, lines = conn.list()
            assert typ == "OK", lines
            counts = {}
            for line in lines:
                encoded = _list_name(line)
                typ, status = conn.status(_quote(encoded), "(MESSAGES)")
                assert typ == "OK", status
                count = int(re.search(rb"MESSAGES (\d+)", status[0]).group(1))
                counts[decode_mutf7(encoded)] = count
            return counts

    def clear(self) -> None:
        """Delete every folder but INBOX and empty INBOX."""
        with self.connect() as conn:
            for line in conn.list()[1]:
                name = _list_name(line)
                if name.upper() != "INBOX":
                    conn.delete(_quote(name))
            conn.select("INBOX")
            conn.uid("STORE", "1:*", "+FLAGS.SILENT", r"(\Deleted)")
            conn.expunge()

    def log_text(self) -> str:
        return (self.root / "dovecot.log").read_text(errors="replace")


def decode_mutf7(name: str) -> str:
    """RFC 3501 modified UTF-7, decoded with Python's UTF-7 codec.

    Written independently of the adapter's encoder, so a test comparing
    the two checks the encoding rather than repeating it.
    """
    out, rest = [], name
    while "&" in rest:
        head, _, tail = rest.partition("&")
        chunk, _, rest = tail.partition("-")
        out.append(head)
        out.append("&" if not chunk else ("+" + chunk.replace(",", "/") + "-").encode().decode("utf-7"))
    return "".join(out) + rest


def _list_name(line: bytes) -> str:
    # (\HasNoChildren) "." "Karant&AOY-ne"  or  ... "." INBOX
    match = re.match(rb'^\(.*?\) (?:"[^"]*"|NIL) (?:"((?:[^"\\]|\\.)*)"|(\S+))$', line)
    assert match, line
    quoted, atom = match.groups()
    return (quoted.replace(b'\\"', b'"').replace(b"\\\\", b"\\") if quoted is not None else atom).decode()


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _users() -> tuple[str, str, pwd.struct_passwd]:
    """(internal user, login user, mail owner) that exist on this machine."""
    me = pwd.getpwuid(os.geteuid())
    if os.geteuid() != 0:
        return me.pw_name, me.pw_name, me
    def known(name: str, fallback: str) -> str:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            return fallback
    return known("dovecot", "nobody"), known("dovenull", "nobody"), pwd.getpwnam("nobody")


def _write_config(root: Path, tls: TlsFiles) -> tuple[int, int]:
    internal, login, owner = _users()
    imap_port, imaps_port = _free_port(), _free_port()
    root_run = os.geteuid() == 0
    (root / "mail").mkdir()
    os.chown(root / "mail", owner.pw_uid, owner.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    (root / "dovecot.conf").write_text(CONFIG.format(
        root=root, cert=tls.cert_file, key=tls.key_file, internal_user=internal, login_user=login,
        internal_group=grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name,
        uid=owner.pw_uid, gid=owner.pw_gid, imap_port=imap_port, imaps_port=imaps_port,
        # chroot needs root; unprivileged runs go without it.
        login_chroot="" if root_run else "chroot =", anvil_chroot="" if root_run else "chroot =",
    ))
    return imap_port, imaps_port


def _wait_listening(process: subprocess.Popen, port: int, root: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if sock.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    log = (root / "dovecot.log")
    detail = log.read_text(errors="replace")[-400:] if log.exists() else ""
    raise RuntimeError(f"Dovecot did not start: {detail.strip()}")


@contextmanager
def dovecot_server() -> Iterator[Dovecot]:
    """A running Dovecot outside pytest (benchmarks); RuntimeError if it cannot start."""
    if not os.path.exists(DOVECOT):
        raise RuntimeError("Dovecot is not installed (Debian package dovecot-imapd; "
                           "scripts/install-test-deps.sh)")
    root = Path(tempfile.mkdtemp(prefix="sparring-dovecot-"))
    os.chmod(root, 0o755)
    tls = throwaway_tls()
    imap_port, imaps_port = _write_config(root, tls)
    with open(root / "stderr", "wb") as stderr:  # the child keeps its own copy
        process = subprocess.Popen([DOVECOT, "-c", str(root / "dovecot.conf"), "-F"],
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        try:
            _wait_listening(process, imap_port, root)
        except RuntimeError as exc:
            stderr = (root / "stderr").read_text(errors="replace")[-300:]
            raise RuntimeError(f"{exc} {stderr.strip()}") from None
        yield Dovecot(root, "127.0.0.1", imap_port, imaps_port, USER, PASSWORD, tls, process)
    finally:
        stop_process(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    with ExitStack() as stack:
        try:
            server = stack.enter_context(dovecot_server())
        except RuntimeError as exc:
            unavailable(str(exc))
        yield server


@pytest.fixture
def imap_mailbox(dovecot: Dovecot) -> Dovecot:
    """The server with an empty INBOX and no other folders."""
    dovecot.clear()
    return dovecot
