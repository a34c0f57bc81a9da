"""ssh_config resolution: parsing, first-wins, Host/Match, Include, tokens, -o precedence."""

from __future__ import annotations

import getpass
import os

import pytest

from pysshfs.errors import MountError
from pysshfs.ssh.config import (
    expand_tokens,
    match_pattern_list,
    resolve,
    split_args,
    split_keyword,
    valid_hostname,
    valid_username,
)
from pysshfs.ssh.proxy import parse_jump
from pysshfs.ssh.request import ConnectRequest


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(h))
    return h


def cfg(tmp_path, text: str) -> str:
    p = tmp_path / "config"
    p.write_text(text)
    return str(p)


def res(tmp_path, text: str, host: str = "h", **kw):  # type: ignore[no-untyped-def]
    return resolve(ConnectRequest(host=host, config_file=cfg(tmp_path, text), **kw))


@pytest.mark.parametrize("text,words", [
    ('"/home/me/my key" other', ["/home/me/my key", "other"]),
    ("a\\ b c", ["a b", "c"]),
    ("'single quoted' x  # comment", ["single quoted", "x"]),
    ('"a/b"', ["a/b"]),
    ("", []),
])
def test_split_args(text, words):
    assert split_args(text) == words


@pytest.mark.parametrize("line,expected", [
    ("Port 22", ("Port", "22")), ("Port=22", ("Port", "22")), ("Port = 22", ("Port", "22")),
    ("  User\t bob ", ("User", "bob")),
])
def test_split_keyword(line, expected):
    assert split_keyword(line) == expected


def test_patterns():
    assert match_pattern_list("web1.example.com", ["*.example.com", "!db*"])
    assert not match_pattern_list("db1.example.com", ["*.example.com", "!db*"])
    assert not match_pattern_list("x", ["!y"])  # a negation alone matches nothing
    assert match_pattern_list("[127.0.0.1]:2222", ["[127.0.0.1]:*"])  # '[' is literal
    assert match_pattern_list("HOST", ["host"])
    assert match_pattern_list("ab", ["a?"]) and not match_pattern_list("abc", ["a?"])


def test_first_value_wins_and_identity_files_accumulate(tmp_path):
    t = res(tmp_path, "Host h\n  Port 2000\n  IdentityFile ~/a\n"
                      "Host *\n  Port 3000\n  IdentityFile ~/b\n  User u\n")
    assert t.port == 2000 and t.user == "u"
    assert t.paths("IdentityFile") == [os.path.expanduser("~/a"), os.path.expanduser("~/b")]


def test_global_section_before_first_host(tmp_path):
    t = res(tmp_path, "Port 1234\nHost h\n  Port 99\n")
    assert t.port == 1234


def test_defaults(tmp_path):
    t = res(tmp_path, "", host="example.org")
    assert (t.hostname, t.port, t.user) == ("example.org", 22, getpass.getuser())


def test_hostname_token_and_case(tmp_path):
    t = res(tmp_path, "Host MyBox\n  HostName %h.internal\n", host="mybox")
    assert t.hostname == "mybox.internal"


def test_command_line_beats_config(tmp_path):
    t = res(tmp_path, "Host h\n  User cfguser\n  Port 2000\n  StrictHostKeyChecking yes\n",
            user="cliuser", port=3000, options={"StrictHostKeyChecking": "no"})
    assert (t.user, t.port, t.get("StrictHostKeyChecking")) == ("cliuser", 3000, "no")
    t = res(tmp_path, "Host h\n  User cfguser\n", user="fromdest",
            options={"User": "fromdashO"})
    assert t.user == "fromdashO"


def test_multiple_known_hosts_files_on_one_line(tmp_path):
    t = res(tmp_path, "Host h\n  UserKnownHostsFile ~/k1 /k2\nHost *\n  UserKnownHostsFile /k3\n")
    assert t.paths("UserKnownHostsFile") == [os.path.expanduser("~/k1"), "/k2"]


def test_tokens(tmp_path):
    t = res(tmp_path, "Host h\n  HostName real\n  Port 2200\n  User bob\n"
                      "  IdentityFile ~/.ssh/%r@%h:%p-%n-%%\n  CertificateFile %d/c-%u\n")
    home = os.path.expanduser("~")
    assert t.paths("IdentityFile") == [f"{home}/.ssh/bob@real:2200-h-%"]
    assert t.paths("CertificateFile") == [f"{home}/c-{getpass.getuser()}"]
    assert expand_tokens("%%h %h", {"h": "x"}, "t") == "%h x"


def test_proxycommand_raw_and_tokens(tmp_path):
    t = res(tmp_path, "Host h\n  HostName real\n  ProxyCommand nc -X 5 -x 'proxy:1080' %h %p\n")
    assert t.command("ProxyCommand") == "nc -X 5 -x 'proxy:1080' real 22"
    t = res(tmp_path, "Host h\n  ProxyCommand none\nHost *\n  ProxyCommand nc %h %p\n")
    assert t.command("ProxyCommand") is None


def test_proxyjump_and_proxycommand_exclusive_first_wins(tmp_path):
    t = res(tmp_path, "Host h\n  ProxyJump j1\n  ProxyCommand nc x y\n")
    assert t.get("ProxyJump") == "j1" and t.command("ProxyCommand") is None
    t = res(tmp_path, "Host h\n  ProxyJump j1\n", options={"ProxyCommand": "none"})
    assert t.get("ProxyJump") is None


def test_match_criteria(tmp_path, monkeypatch):
    me = getpass.getuser()
    text = (f"Match originalhost h user {me} localuser {me}\n  Port 1\n"
            "Match all\n  Port 2\n")
    assert res(tmp_path, text).port == 1
    assert res(tmp_path, text, user="other").port == 2
    text = "Match host real.example\n  Port 5\nHost h\n  HostName real.example\n"
    # Match host sees the HostName known when the Match line is read, like ssh's first pass.
    assert res(tmp_path, text).port == 22
    text = "Host h\n  HostName real.example\nMatch host *.example\n  Port 5\n"
    assert res(tmp_path, text).port == 5
    text = "Match !host h\n  Port 5\nMatch exec \"test %h = h\"\n  Port 6\n"
    assert res(tmp_path, text).port == 6
    text = "Match exec false\n  Port 5\n"
    assert res(tmp_path, text).port == 22


def test_match_final(tmp_path):
    text = "Match final host real\n  Port 7\nHost h\n  HostName real\n"
    assert res(tmp_path, text).port == 7


def test_include_glob_relative_and_inside_host(tmp_path, home):
    (home / ".ssh" / "inc").mkdir()
    (home / ".ssh" / "inc" / "a.conf").write_text("Port 11\nHost other\n  User nobody\n")
    (home / ".ssh" / "inc" / "b.conf").write_text("User fromb\n")
    t = res(tmp_path, "Host h\n  Include inc/*.conf\nHost *\n  User last\n")
    # a.conf's "Host other" ends the active block inside that file only.
    assert (t.port, t.user) == (11, "fromb")
    t = res(tmp_path, "Host nothere\n  Include inc/*.conf\n")
    assert t.port == 22  # an inactive block's Include applies nothing


def test_default_files_user_then_system(tmp_path, home, monkeypatch):
    (home / ".ssh" / "config").write_text("Host h\n  Port 4444\n")
    t = resolve(ConnectRequest(host="h"))
    assert t.port == 4444
    assert any("/.ssh/config" in line for line in t.story)


def test_config_none_reads_nothing(tmp_path, home):
    (home / ".ssh" / "config").write_text("Host h\n  Port 4444\n")
    assert resolve(ConnectRequest(host="h", config_file="none")).port == 22


def test_missing_F_file_is_an_error(tmp_path):
    with pytest.raises(MountError) as e:
        resolve(ConnectRequest(host="h", config_file=str(tmp_path / "nope")))
    assert "not found" in str(e.value)


def test_bad_port_is_one_line_error(tmp_path):
    with pytest.raises(MountError) as e:
        res(tmp_path, "Host h\n  Port abc\n")
    assert "bad port" in str(e.value)


def test_description(tmp_path):
    assert res(tmp_path, "Host h\n User alice\n").description == "alice@h"
    assert res(tmp_path, "Host h\n User alice\n Port 2222\n").description == "alice@h:2222"


def test_devenv_entry_parses(tmp_path):
    t = res(tmp_path, (
        "Host fairydirtenvd\n  ForwardAgent yes\n  PubkeyAcceptedKeyTypes +ssh-rsa\n"
        "  HostKeyAlgorithms +ssh-rsa\n  HostName localhost\n  Port 2222\n"
        "  UserKnownHostsFile /dev/null\n"
        '  IdentityFile "/home/me/.config/envd/id_rsa_envd"\n'
        "  StrictHostKeyChecking no\n"
        "  User a332139d39b89a241400013700e665a3/fairydirtenvd\n"), host="fairydirtenvd")
    assert (t.hostname, t.port) == ("localhost", 2222)
    assert t.user == "a332139d39b89a241400013700e665a3/fairydirtenvd"
    assert t.paths("IdentityFile") == ["/home/me/.config/envd/id_rsa_envd"]
    assert t.get("PubkeyAcceptedAlgorithms") == "+ssh-rsa"
    assert t.paths("UserKnownHostsFile") == ["/dev/null"]


@pytest.mark.parametrize("spec,expected", [
    ("bastion", (None, "bastion", None)),
    ("alice@bastion:2222", ("alice", "bastion", 2222)),
    ("ssh://alice@bastion:2222", ("alice", "bastion", 2222)),
    ("[::1]:2222", (None, "::1", 2222)),
    ("me/role@h", ("me/role", "h", None)),
])
def test_parse_jump(spec, expected):
    assert parse_jump(spec) == expected


@pytest.mark.parametrize("name,ok", [
    ("example.com", True), ("fe80::1%eth0", True), ("host_1", True), ("bücher.de", True),
    ("h$(touch /tmp/X)", False), ("h`id`", False), ("a;b", False), ("a b", False),
    ("-oProxyCommand=x", False), ("a,b", False), ("a\\b", False), ("a|b", False),
    ("a\nb", False), ("a\x7fb", False), ("a'b", False), ('a"b', False), ("a{b}", False),
])
def test_valid_hostname_as_openssh(name, ok):
    assert valid_hostname(name) is ok


@pytest.mark.parametrize("name,ok", [
    ("alice", True), ("MACHINE$", True), ("a332139d/fairydirtenvd", True),
    ("first last", True), ("dom\\user", True),
    ("a$(touch x)", False), ("-oProxyCommand", False), ("a -x", False), ("a\\", False),
    ("a`id`", False), ("a;b", False), ("a\x01", False), ("a|b", False),
])
def test_valid_username_as_openssh(name, ok):
    assert valid_username(name) is ok


def test_shell_in_command_line_names_refused_before_any_command_runs(tmp_path):
    marker = tmp_path / "ran"
    text = f"Host *\n ProxyCommand /bin/true %h %r\n Match exec \"touch {marker}\"\n"
    for kw in ({"host": f"h$(touch {marker})"}, {"user": f"u$(touch {marker})"},
               {"options": {"User": f"u`touch {marker}`"}},
               {"options": {"HostName": f"h;touch {marker}"}}):
        kw.setdefault("host", "h")
        with pytest.raises(MountError) as info:
            res(tmp_path, text, **kw)
        assert "refuses" in str(info.value) and "\n" not in str(info.value)
        assert not marker.exists()
    # names from the configuration itself are the user's own: not checked
    assert res(tmp_path, "Host h\n User odd;name\n").user == "odd;name"
