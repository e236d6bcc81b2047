"""`host_names`: the Host names a server answers, and the one-line errors for bad entries."""

from __future__ import annotations

import socket

import pytest

from transferkit.errors import InputError
from transferkit.serving.hosts import LOCAL_HOSTS, host_names


def test_the_local_names_and_the_bound_address():
    assert host_names() == list(LOCAL_HOSTS) == ["localhost", "127.0.0.1", "[::1]"]
    assert host_names("127.0.0.1") == list(LOCAL_HOSTS)
    assert host_names("192.168.1.5")[-1] == "192.168.1.5"
    assert host_names("fe80::1")[-1] == "[fe80::1]"  # as a Host header spells IPv6


def test_every_address_answers_this_machines_name():
    name = socket.gethostname().lower()
    assert name in host_names("0.0.0.0") and name in host_names("::")
    assert "0.0.0.0" not in host_names("0.0.0.0")


def test_extra_names_from_a_list_or_a_comma_separated_string():
    names = host_names("127.0.0.1", " Models.Example.org ,*.lan,::1,*")
    assert names[len(LOCAL_HOSTS):] == ["models.example.org", "*.lan", "*"]


@pytest.mark.parametrize("entry", [
    "http://models.example.org", "models.example.org:8000", "models.*.org", "**", "a/b", " ",
])
def test_an_entry_that_is_not_a_host_name_says_what_is(entry):
    with pytest.raises(InputError, match=r"`allowed_hosts` holds .*, which is not a host name\. "
                                         r"Give names or addresses without a scheme or port"):
        host_names("127.0.0.1", [entry])
