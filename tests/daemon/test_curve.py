"""CURVE + ZAP: only clients listed in clients_dir receive; key files are checked."""
import json
import os
import shutil
import stat
import time

import pytest
import zmq
import zmq.auth

from daemon.publish.curve import KeyFileError, load_server_secret, write_keypair
from daemon.errors import PublishError
from tests.privileges import ran_in_child
from tests.daemon.test_publisher import Counters, caption, make_publisher, sub_socket


class Settings:
    """What the publisher reads of config's `publish.curve`."""

    def __init__(self, secret_key_file, clients_dir) -> None:
        self.secret_key_file = secret_key_file
        self.clients_dir = clients_dir


@pytest.fixture
def keys(tmp_path):
    server_public, server_secret = write_keypair(str(tmp_path / "server"), "server")
    clients = tmp_path / "clients"
    clients.mkdir()
    allowed_public, allowed_secret = write_keypair(str(tmp_path / "allowed"), "allowed")
    shutil.copy(allowed_public, str(clients))
    _, stranger_secret = write_keypair(str(tmp_path / "stranger"), "stranger")
    return {"server_public": server_public, "server_secret": server_secret, "clients": str(clients),
            "allowed": allowed_secret, "stranger": stranger_secret}


def _client_options(server_public: str, client_secret: str) -> dict:
    server_key, _ = zmq.auth.load_certificate(server_public)
    public, secret = zmq.auth.load_certificate(client_secret)
    return {"curve_serverkey": server_key, "curve_publickey": public, "curve_secretkey": secret}


def test_keypair_secret_is_private(keys):
    assert stat.S_IMODE(os.stat(keys["server_secret"]).st_mode) == 0o600
    public, secret = load_server_secret(keys["server_secret"])
    assert len(public) == 40 and len(secret) == 40


def test_only_listed_clients_receive(keys):
    counters = Counters()
    publisher = make_publisher(counters, curve=Settings(keys["server_secret"], keys["clients"]))
    publisher.start()
    context = zmq.Context()
    allowed = sub_socket(context, publisher.endpoint, **_client_options(keys["server_public"], keys["allowed"]))
    stranger = sub_socket(context, publisher.endpoint,
                          **_client_options(keys["server_public"], keys["stranger"]))
    plain = sub_socket(context, publisher.endpoint)
    received = {"allowed": 0, "stranger": 0, "plain": 0}
    try:
        deadline = time.monotonic() + 15.0
        index = 0
        # the window: keep publishing until the authorised client has 20 events; the others,
        # connected at the same time, must get none of them
        while received["allowed"] < 20:
            assert time.monotonic() < deadline, "the authorised client received nothing"
            index += 1
            publisher.publish(caption(index))
            for name, sock in (("allowed", allowed), ("stranger", stranger), ("plain", plain)):
                while sock.poll(10):
                    json.loads(sock.recv_multipart()[1])
                    received[name] += 1
    finally:
        for sock in (allowed, stranger, plain):
            sock.close()
        context.term()
        publisher.stop(timeout=2.0)
    assert received["stranger"] == 0 and received["plain"] == 0


def test_group_readable_secret_is_refused(keys):
    os.chmod(keys["server_secret"], 0o644)
    with pytest.raises(KeyFileError) as info:
        load_server_secret(keys["server_secret"])
    message = str(info.value)
    assert keys["server_secret"] in message and "0644" in message and "\n" not in message
    _, secret = zmq.auth.load_certificate(keys["allowed"])
    assert secret.decode() not in message


def test_publisher_start_refuses_bad_secret(keys):
    os.chmod(keys["server_secret"], 0o640)
    publisher = make_publisher(Counters(), curve=Settings(keys["server_secret"], keys["clients"]))
    with pytest.raises(PublishError, match="publish.curve: .*server.key_secret: readable by group"):
        publisher.start()


def test_unreadable_secret(keys, request):
    if ran_in_child(request):
        return
    os.chmod(keys["server_secret"], 0o000)
    with pytest.raises(KeyFileError, match="server.key_secret: Permission denied"):
        load_server_secret(keys["server_secret"])


def test_missing_secret_and_clients_dir(keys, tmp_path):
    with pytest.raises(KeyFileError, match="nope.key_secret: not found"):
        load_server_secret(str(tmp_path / "nope.key_secret"))
    publisher = make_publisher(Counters(), curve=Settings(keys["server_secret"], str(tmp_path / "none")))
    with pytest.raises(PublishError, match="clients_dir .*none: not a folder"):
        publisher.start()


def test_public_key_file_is_not_a_secret(keys):
    os.chmod(keys["server_public"], 0o600)
    with pytest.raises(KeyFileError, match="holds no secret key"):
        load_server_secret(keys["server_public"])
