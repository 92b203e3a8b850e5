"""CURVE keys and the ZAP authenticator that lets only listed clients subscribe.

CURVE alone accepts any client that knows the server's public key; the ZAP handler (pyzmq's
ThreadAuthenticator) checks each client's public key against `clients_dir/*.key`. Key material is
never logged: errors name the file only.
"""
import logging
import os
import stat
from typing import Any, Tuple, Union

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from daemon.errors import PublishError

log = logging.getLogger(__name__)

ZAP_DOMAIN = "blipd"


PathLike = Union[str, "os.PathLike[str]"]


class KeyFileError(PublishError):
    """A CURVE key file or the clients folder cannot be used (one line, naming the file)."""


def write_keypair(directory: PathLike, name: str = "server") -> Tuple[str, str]:
    """Create `<name>.key` (public) and `<name>.key_secret` (mode 0600) in `directory`."""
    os.makedirs(directory, exist_ok=True)
    public_path, secret_path = zmq.auth.create_certificates(directory, name)
    os.chmod(secret_path, 0o600)  # create_certificates leaves it 0644
    return public_path, secret_path


def load_server_secret(path: PathLike) -> Tuple[bytes, bytes]:
    """(public, secret) from a `.key_secret` file that only its owner can read."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KeyFileError("curve secret key file %s: not found" % path) from None
    except OSError as exc:
        raise KeyFileError("curve secret key file %s: %s" % (path, exc.strerror)) from None
    if mode & 0o077:
        raise KeyFileError("curve secret key file %s: readable by group or others (mode %04o); "
                           "chmod 600 it" % (path, stat.S_IMODE(mode)))
    try:
        public, secret = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise KeyFileError("curve secret key file %s: %s" % (path, exc.strerror or "unreadable")) from None
    except Exception:  # a malformed file: the parser's message may quote key bytes, so drop it
        raise KeyFileError("curve secret key file %s: not a CURVE certificate" % path) from None
    if not secret:
        raise KeyFileError("curve secret key file %s: holds no secret key (a public .key file?)" % path)
    return public, secret


def load_public_key(path: PathLike) -> bytes:
    """The public key of a `.key` (or `.key_secret`) file, e.g. the server's for a subscriber."""
    try:
        public, _ = zmq.auth.load_certificate(path)
    except OSError as exc:
        raise KeyFileError("curve key file %s: %s" % (path, exc.strerror or "unreadable")) from None
    except Exception:
        raise KeyFileError("curve key file %s: not a CURVE certificate" % path) from None
    return public


def make_curve_client(sock: zmq.Socket, server_public: bytes, client_secret_file: PathLike) -> None:
    """Make `sock` a CURVE client of the server whose public key is given, with the key pair of
    `client_secret_file` (a `.key_secret` certificate); KeyFileError names the file, never a key.
    Shared by `blipd sub`, the console's recorder and the bridge's subscriber and relay."""
    try:
        public, secret = zmq.auth.load_certificate(str(client_secret_file))
    except Exception:
        raise KeyFileError("curve client key file %s: unreadable or not a CURVE certificate"
                           % client_secret_file) from None
    if not secret:
        raise KeyFileError("curve client key file %s: holds no secret key" % client_secret_file)
    sock.curve_serverkey = server_public
    sock.curve_publickey = public
    sock.curve_secretkey = secret


class CurveServer:
    """Runs the ZAP authenticator and makes sockets CURVE servers in its domain.

    Create, apply() and stop() from the same thread: the authenticator's control pipe is a socket.
    """

    def __init__(self, context: zmq.Context, secret_key_file: PathLike, clients_dir: PathLike) -> None:
        if not os.path.isdir(clients_dir):
            raise KeyFileError("curve clients_dir %s: not a folder" % clients_dir)
        self.public_key, self._secret_key = load_server_secret(secret_key_file)
        self.clients_dir = clients_dir
        self._auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
        self._auth.start()
        self.reload()

    def reload(self) -> None:
        """Re-read clients_dir (keys added or removed take effect for new connections)."""
        self._auth.configure_curve(domain=ZAP_DOMAIN, location=self.clients_dir)
        count = len([n for n in os.listdir(self.clients_dir) if n.endswith(".key")])
        log.info("curve: %d client key(s) allowed from %s", count, self.clients_dir)

    def apply(self, sock: Any) -> None:
        """Make `sock` a CURVE server whose peers the authenticator must accept; before bind()."""
        sock.curve_server = True
        sock.curve_secretkey = self._secret_key
        sock.curve_publickey = self.public_key
        sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        enforce = getattr(zmq, "ZAP_ENFORCE_DOMAIN", None)
        if enforce is not None:
            try:
                sock.setsockopt(enforce, 1)
            except zmq.ZMQError:  # libzmq < 4.2.3 has no such option: the domain alone still applies
                log.debug("curve: ZAP_ENFORCE_DOMAIN unsupported by libzmq %s", zmq.zmq_version())

    def stop(self) -> None:
        self._auth.stop()
