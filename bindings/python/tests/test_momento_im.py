"""pytest suite of the momento_im binding against a mim-local started for the session.

Environment: MIM_LOCAL (server binary; default <MIM_BUILD or build>/bin/mim-local of the
repository), MOMENTO_IM_LIB (library; see momento_im/_ffi.py), MOMENTO_IM_TEST_INSTALLED=1
to test the package installed in the running interpreter (tests/scripts/python.sh: a
fresh venv) instead of the source tree's.
"""

import asyncio
import hashlib
import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_PKG_DIR = os.path.dirname(HERE)
REPO = os.path.dirname(os.path.dirname(SRC_PKG_DIR))
INSTALLED = os.environ.get("MOMENTO_IM_TEST_INSTALLED") == "1"
# Where a child interpreter finds the package: its own site-packages when installed.
PKG_DIR = "" if INSTALLED else SRC_PKG_DIR
if not INSTALLED:
    sys.path.insert(0, SRC_PKG_DIR)

import momento_im as mim  # noqa: E402
from momento_im import _ffi  # noqa: E402

CACHE = "im-test"
WAIT_S = 10


def _server_binary():
    if os.environ.get("MIM_LOCAL"):
        return os.environ["MIM_LOCAL"]
    build = os.environ.get("MIM_BUILD", "build")
    return os.path.join(REPO, build, "bin", "mim-local")  # an absolute build wins


def _die_with_parent():
    """In the server child: SIGTERM when pytest dies (e.g. a crash in a binding bug), so
    no mim-local outlives the run. Linux prctl(PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """A mim-local on a free loopback port; yields its root key. Stopped with SIGTERM
    at the end, which must exit 0."""
    binary = _server_binary()
    if not os.access(binary, os.X_OK):
        pytest.fail("mim-local not built: %s (run make)" % binary)
    d = tmp_path_factory.mktemp("mim-local")
    port_file, key_file = d / "port", d / "key"
    log = open(d / "log", "wb")
    proc = subprocess.Popen([binary, "--port", "0", "--port-file", str(port_file),
                             "--root-key-file", str(key_file), "--cache", CACHE],
                            stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)
    try:
        # The port file is written (atomically) after the key file, once listening.
        deadline = time.monotonic() + WAIT_S
        while not port_file.exists():
            if proc.poll() is not None:
                pytest.fail("mim-local exited with %s" % proc.returncode)
            if time.monotonic() > deadline:
                pytest.fail("mim-local did not start within %d s" % WAIT_S)
            time.sleep(0.02)
        yield {"key": key_file.read_text().strip(), "pid": proc.pid,
               "endpoint": "127.0.0.1:%s" % port_file.read_text().strip()}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            rc = "timeout"
        log.close()
    assert rc == 0, "mim-local exit status %s" % rc


@pytest.fixture
def client(server):
    with mim.Client(api_key=server["key"]) as c:
        yield c


@pytest.fixture
def chat():
    return "room-" + uuid.uuid4().hex[:12]


class Inbox:
    """Collects messages from on_message and lets the test wait for them."""

    def __init__(self):
        self.cv = threading.Condition()
        self.messages = []

    def __call__(self, msg):
        with self.cv:
            self.messages.append(msg)
            self.cv.notify_all()

    def wait_for(self, pred, timeout=WAIT_S):
        with self.cv:
            ok = self.cv.wait_for(lambda: pred(self.messages), timeout)
            assert ok, "timed out; have %r" % (self.messages,)
            return list(self.messages)

    def texts(self):
        with self.cv:
            return [m.text for m in self.messages]


# ---- ABI ----

PROBE = r"""
#include <momento/dictionary.h>
#include <momento/im.h>
#include <stdio.h>
#define S(t) printf(#t " size %zu\n", sizeof(t))
#define O(t, f) printf(#t " " #f " %zu\n", offsetof(t, f))
int main(void) {
  S(mim_client_options); O(mim_client_options, struct_size); O(mim_client_options, api_key); O(mim_client_options, credentials);
  O(mim_client_options, token_url); O(mim_client_options, token_refresh_margin_ms);
  O(mim_client_options, cache_host); O(mim_client_options, control_host);
  O(mim_client_options, token_host); O(mim_client_options, tls);
  O(mim_client_options, ca_file); O(mim_client_options, default_deadline_ms);
  O(mim_client_options, default_ttl_ms); O(mim_client_options, log_fn);
  O(mim_client_options, log_level); O(mim_client_options, log_user);
  O(mim_client_options, loop); O(mim_client_options, max_topic_payload_bytes);
  S(mim_message); O(mim_message, kind); O(mim_message, id); O(mim_message, chat);
  O(mim_message, from); O(mim_message, publisher_id); O(mim_message, text);
  O(mim_message, timestamp_ms); O(mim_message, sequence); O(mim_message, from_history);
  O(mim_message, raw); O(mim_message, raw_len);
  O(mim_message, version); O(mim_message, sender_id); O(mim_message, sender_trusted);
  O(mim_message, mine); O(mim_message, reply_to); O(mim_message, edited);
  O(mim_message, edited_ms); O(mim_message, deleted); O(mim_message, n_reactions);
  O(mim_message, reactions);
  S(mim_reaction); O(mim_reaction, key); O(mim_reaction, count); O(mim_reaction, users);
  S(mim_send_options); O(mim_send_options, struct_size); O(mim_send_options, id);
  O(mim_send_options, reply_to);
  S(mim_read_marker); O(mim_read_marker, user_id); O(mim_read_marker, message_id);
  O(mim_read_marker, read_at_ms);
  S(mim_read_marker_list); O(mim_read_marker_list, count); O(mim_read_marker_list, markers);
  S(mim_dictionary_write_options); O(mim_dictionary_write_options, struct_size);
  O(mim_dictionary_write_options, ttl_ms); O(mim_dictionary_write_options, refresh_ttl);
  S(mim_dictionary_entry); O(mim_dictionary_entry, field); O(mim_dictionary_entry, value);
  S(mim_dictionary_entries); O(mim_dictionary_entries, found);
  O(mim_dictionary_entries, count); O(mim_dictionary_entries, entries);
  S(mim_bytes); O(mim_bytes, data); O(mim_bytes, len);
  S(mim_join_options); O(mim_join_options, struct_size); O(mim_join_options, display_name); O(mim_join_options, mode);
  O(mim_join_options, history_cap); O(mim_join_options, history_ttl_ms);
  O(mim_join_options, on_event); O(mim_join_options, outbox_limit);
  O(mim_join_options, flush_timeout_ms); O(mim_join_options, send_timeout_ms);
  O(mim_join_options, on_send_result); O(mim_join_options, initial_history);
  O(mim_join_options, user_id); O(mim_join_options, on_update);
  O(mim_join_options, on_presence); O(mim_join_options, presence_heartbeat_ms);
  S(mim_message_list); O(mim_message_list, count); O(mim_message_list, messages);
  S(mim_disposable_token); O(mim_disposable_token, credential);
  O(mim_disposable_token, api_key); O(mim_disposable_token, endpoint);
  O(mim_disposable_token, valid_until);
  printf("MIM_MESSAGE_ID_SIZE size %d\n", MIM_MESSAGE_ID_SIZE);
  return 0;
}
"""

STRUCTS = {"mim_client_options": _ffi.ClientOptions, "mim_message": _ffi.Message,
           "mim_join_options": _ffi.JoinOptions, "mim_message_list": _ffi.MessageList,
           "mim_disposable_token": _ffi.DisposableToken, "mim_reaction": _ffi.Reaction,
           "mim_send_options": _ffi.SendOptions, "mim_read_marker": _ffi.ReadMarker,
           "mim_read_marker_list": _ffi.ReadMarkerList,
           "mim_dictionary_write_options": _ffi.DictionaryWriteOptions,
           "mim_dictionary_entry": _ffi.DictionaryEntry,
           "mim_dictionary_entries": _ffi.DictionaryEntries, "mim_bytes": _ffi.Bytes}


def test_abi_matches_headers(tmp_path):
    """Sizes and offsets of the ctypes mirrors equal those the C compiler computes."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to build the ABI probe")
    src, exe = tmp_path / "probe.c", tmp_path / "probe"
    src.write_text(PROBE)
    subprocess.run([cc, "-std=c11", "-I", os.path.join(REPO, "include"), "-o", str(exe),
                    str(src)], check=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    checked = 0
    for line in out.splitlines():
        name, what, value = line.split()
        value = int(value)
        if name == "MIM_MESSAGE_ID_SIZE":
            assert _ffi.MESSAGE_ID_SIZE == value
        elif what == "size":
            assert ctypes.sizeof(STRUCTS[name]) == value, name
        else:
            attr = "from_" if what == "from" else what
            assert getattr(STRUCTS[name], attr).offset == value, "%s.%s" % (name, what)
        checked += 1
    assert checked == 94


def test_option_mirrors_set_their_own_struct_size(server, chat, monkeypatch):
    """struct_size (first field) is sizeof the mirror, set on creation; the binding never
    has the library's *_options_init fill a mirror (a newer library's struct is larger
    than this binding's, and its init would write past the end)."""
    for cls in (_ffi.ClientOptions, _ffi.JoinOptions, _ffi.SendOptions,
                _ffi.DictionaryWriteOptions):
        assert cls.struct_size.offset == 0
        assert cls().struct_size == ctypes.sizeof(cls)

    def refuse(*_args):
        raise AssertionError("an *_options_init of the library was called")

    for name in ("mim_client_options_init", "mim_join_options_init"):
        monkeypatch.setattr(_ffi.lib, name, refuse, raising=False)
    with mim.Client(api_key=server["key"]) as c:
        with c.join(CACHE, chat, lambda m: None) as s:
            s.send("sized")


def test_version():
    assert mim.version().count(".") == 2


def test_library_found_through_env(tmp_path):
    """MOMENTO_IM_LIB wins; a wrong one is a clear ImportError."""
    lib = _loaded_library_path()
    copy = tmp_path / "libmomento-im-copy.so"
    shutil.copy(lib, copy)
    code = "import momento_im, sys; print(momento_im._ffi.lib._name, momento_im.version())"
    env = dict(os.environ, PYTHONPATH=PKG_DIR, MOMENTO_IM_LIB=str(copy))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(copy), mim.version()]
    env["MOMENTO_IM_LIB"] = str(tmp_path / "missing.so")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert "ImportError" in out.stderr and "MOMENTO_IM_LIB" in out.stderr


def _child_env(**extra):
    """The environment of a child interpreter: no library override, no loader path,
    then `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOMENTO_IM_LIB", "LD_LIBRARY_PATH", "PYTHONPATH")}
    env.update(extra)
    return env


def test_installed_package_is_tested():
    """In the venv run, the package under test is the installed copy, with its
    py.typed marker (PEP 561), not the source tree."""
    pkg = os.path.dirname(os.path.abspath(mim.__file__))
    assert os.path.exists(os.path.join(pkg, "py.typed"))
    if INSTALLED:
        assert not pkg.startswith(SRC_PKG_DIR)
        assert pkg.startswith(sys.prefix) and sys.prefix != sys.base_prefix
        if not os.environ.get("MOMENTO_IM_LIB"):  # the loader run: found by soname
            assert _ffi.lib._name == _ffi.SONAME


def _loaded_library_path():
    """The file this process mapped for libmomento-im (lib._name may be a bare soname)."""
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split(None, 5)[-1].strip()
            if os.path.basename(path).startswith("libmomento-im.so"):
                return path
    raise AssertionError("libmomento-im is not mapped")


def test_library_found_through_loader_path():
    """Without MOMENTO_IM_LIB, the library is loaded by soname through the dynamic
    loader: here its LD_LIBRARY_PATH."""
    lib_dir = os.path.dirname(_loaded_library_path())
    code = "import momento_im; print(momento_im._ffi.lib._name, momento_im.version())"
    env = _child_env(LD_LIBRARY_PATH=lib_dir, PYTHONPATH=PKG_DIR)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=30, cwd=lib_dir)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [_ffi.SONAME, mim.version()]


def test_library_not_found_says_what_was_tried_and_how_to_fix(tmp_path):
    """A copy of the package outside any checkout, with no library to be found: the
    ImportError lists every candidate and names the fixes."""
    if ctypes.util.find_library("momento-im") or os.path.exists(
            os.path.join("/usr/local/lib", _ffi.SONAME)):
        pytest.skip("a libmomento-im is installed system-wide: nothing to miss")
    shutil.copytree(os.path.dirname(mim.__file__), tmp_path / "momento_im",
                    ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run([sys.executable, "-c", "import momento_im"],
                         env=_child_env(PYTHONPATH=str(tmp_path)), capture_output=True,
                         text=True, timeout=30, cwd=str(tmp_path))
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: momento_im: libmomento-im not found"), last
    for needle in (_ffi.SONAME, "/usr/local/lib/" + _ffi.SONAME, "MOMENTO_IM_LIB",
                   "ldconfig", "LD_LIBRARY_PATH"):
        assert needle in last, needle


class _FakeLib:
    """Stands for a loaded library whose mim_version answers `text`."""

    def __init__(self, text):
        def mim_version():
            return text
        self.mim_version = mim_version


@pytest.mark.parametrize("text", [b"9.0.0", b"0.0.1", b"garbage", b""])
def test_library_of_another_abi_refused(text):
    with pytest.raises(ImportError) as err:
        _ffi._check_version(_FakeLib(text), "/x/libmomento-im.so")
    msg = str(err.value)
    assert "/x/libmomento-im.so" in msg and "MOMENTO_IM_LIB" in msg
    assert ".".join(map(str, _ffi.MIN_VERSION)) in msg


def test_library_of_this_abi_accepted():
    ok = "%d.%d.%d" % (_ffi.MIN_VERSION[0], _ffi.MIN_VERSION[1], _ffi.MIN_VERSION[2] + 7)
    _ffi._check_version(_FakeLib(ok.encode()), "x")
    _ffi._check_version(_FakeLib(mim.version().encode()), "x")


# ---- client ----

def test_ping(client):
    client.ping()


def test_create_cache_then_already_exists(client):
    name = "cache-" + uuid.uuid4().hex[:8]
    client.create_cache(name)
    with pytest.raises(mim.AlreadyExistsError) as err:
        client.create_cache(name)
    assert err.value.status_name == "MIM_ERR_ALREADY_EXISTS"
    client.delete_cache(name)
    with pytest.raises(mim.NotFoundError):
        client.delete_cache(name)


def test_bad_key_raises_invalid_argument():
    with pytest.raises(mim.MomentoIMError) as err:
        mim.Client(api_key="this is not a key")
    assert isinstance(err.value, mim.InvalidArgumentError)
    assert err.value.status_name == "MIM_ERR_INVALID_ARGUMENT"
    assert err.value.status == 1
    assert err.value.detail  # the library says why
    assert "MIM_ERR_INVALID_ARGUMENT" in str(err.value)


def test_bad_tls_mode_rejected(server):
    with pytest.raises(mim.InvalidArgumentError):
        mim.Client(api_key=server["key"], tls="maybe")


def test_unreachable_server_is_unavailable(server):
    # Port 1 on loopback: nothing listens there.
    with mim.Client(api_key=server["key"], endpoint="127.0.0.1:1", deadline_ms=3000) as c:
        with pytest.raises(mim.MomentoIMError) as err:
            c.ping()
    assert err.value.status_name in ("MIM_ERR_UNAVAILABLE", "MIM_ERR_DEADLINE_EXCEEDED")


def test_closed_client_refuses_calls(server):
    c = mim.Client(api_key=server["key"])
    c.close()
    c.close()  # idempotent
    assert c.closed
    with pytest.raises(RuntimeError):
        c.ping()


# ---- chat ----

def test_join_send_receives_own_message_live(client, chat):
    inbox = Inbox()
    with client.join(CACHE, chat, inbox, display_name="alice") as s:
        assert inbox.messages == []  # new chat: no history
        mid = s.send("hello, world")
        assert len(mid) == _ffi.MESSAGE_ID_SIZE - 1
        msgs = inbox.wait_for(lambda ms: len(ms) >= 1)
    m = msgs[0]
    assert (m.id, m.chat, m.sender, m.text) == (mid, chat, "alice", "hello, world")
    assert m.kind == mim.MessageKind.CHAT
    assert not m.from_history
    assert m.sequence >= 1
    assert m.publisher_id == "root"  # token id of mim-local's root key
    assert abs(m.timestamp_ms - time.time() * 1000) < 60_000
    assert b"hello, world" in m.raw


def test_second_client_sees_history(server, client, chat):
    with client.join(CACHE, chat, lambda m: None, display_name="alice") as s:
        ids = [s.send("m%d" % i) for i in range(3)]
    token = client.mint_client_only(CACHE, chat, valid_for_s=120, token_id="bob")
    inbox = Inbox()
    with mim.Client(api_key=token) as bob:
        with bob.join(CACHE, chat, inbox, display_name="bob") as s2:
            # join returns after the history was delivered.
            got = list(inbox.messages)
            assert [m.text for m in got] == ["m0", "m1", "m2"]
            assert [m.id for m in got] == ids
            assert all(m.from_history and m.sender == "alice" and m.sequence == 0
                       for m in got)
            mid = s2.send("from bob")
            live = inbox.wait_for(lambda ms: len(ms) >= 4)[3]
            assert (live.id, live.publisher_id, live.from_history) == (mid, "bob", False)


class Results:
    """Collects on_send_result calls: (message_id, status_name, detail)."""

    def __init__(self):
        self.cv = threading.Condition()
        self.items = []

    def __call__(self, message_id, status_name, detail):
        with self.cv:
            self.items.append((message_id, status_name, detail))
            self.cv.notify_all()

    def wait_for(self, pred, timeout=WAIT_S):
        with self.cv:
            assert self.cv.wait_for(lambda: pred(self.items), timeout), self.items
            return list(self.items)


def _all_threads_stopped(pid):
    """Whether every thread of pid is in state T (/proc/<pid>/task/<tid>/stat)."""
    task = "/proc/%d/task" % pid
    for tid in os.listdir(task):
        try:
            with open(os.path.join(task, tid, "stat")) as f:
                stat = f.read()
        except OSError:
            continue  # the thread exited meanwhile
        if stat[stat.rindex(")") + 2] not in "Tt":  # the name before ")" may hold anything
            return False
    return True


def _freeze(pid):
    """SIGSTOPs pid and waits until it is really stopped: kill() only starts a group
    stop, which each thread enters when it next runs, so on a loaded machine a server
    thread woken by a request could still answer it after kill() returned."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + WAIT_S
    while not _all_threads_stopped(pid):
        assert time.monotonic() < deadline, "mim-local did not stop"
        time.sleep(0.001)  # polling /proc: there is nothing to block on


def test_on_send_result_reports_every_message(server, chat):
    """Sent messages are reported MIM_OK; one still queued when the session leaves (the
    server is frozen) is reported MIM_ERR_CANCELLED. Each exactly once, with its id."""
    results = Results()
    with mim.Client(api_key=server["key"], deadline_ms=300) as c:
        s = c.join(CACHE, chat, lambda m: None, on_send_result=results,
                   flush_timeout_ms=200, send_timeout_ms=60_000)
        ids = [s.send("r%d" % i) for i in range(3)]
        got = results.wait_for(lambda items: len(items) >= 3)
        assert [(i, st) for i, st, _ in got] == [(i, "MIM_OK") for i in ids]
        _freeze(server["pid"])
        try:
            # send returns within MIM_SEND_WAIT_MS (im.h), the message queued,
            # not reported yet.
            stuck = s.send("stuck")
            with results.cv:
                assert len(results.items) == 3, results.items
            s.leave()  # flushes for 200 ms, then reports what is left
        finally:
            os.kill(server["pid"], signal.SIGCONT)
        got = results.wait_for(lambda items: len(items) >= 4)
        assert len(got) == 4
        assert got[3][:2] == (stuck, "MIM_ERR_CANCELLED")
        assert got[3][2]  # a detail says why


def test_on_send_result_must_be_callable(client, chat):
    with pytest.raises(mim.InvalidArgumentError):
        client.join(CACHE, chat, lambda m: None, on_send_result=42)
    with pytest.raises(mim.InvalidArgumentError):
        client.join(CACHE, chat, lambda m: None, flush_timeout_ms=-1)


def test_history(client, chat):
    with client.join(CACHE, chat, lambda m: None, history_cap=4) as s:
        for i in range(6):
            s.send("h%d" % i)
        all_ = s.history()
        assert [m.text for m in all_] == ["h2", "h3", "h4", "h5"]  # capped at 4
        assert all(m.from_history and m.chat == chat for m in all_)
        assert [m.text for m in s.history(last_n=2)] == ["h4", "h5"]
        with pytest.raises(mim.InvalidArgumentError):
            s.history(last_n=-1)


def test_unicode_text_round_trips(client, chat):
    inbox = Inbox()
    text = "grüße 👋 — 日本語"
    with client.join(CACHE, chat, inbox) as s:
        s.send(text)
        inbox.wait_for(lambda ms: len(ms) >= 1)
        assert s.history()[0].text == text
    assert inbox.messages[0].text == text


def test_nul_in_text_rejected(client, chat):
    with client.join(CACHE, chat, lambda m: None) as s:
        with pytest.raises(mim.InvalidArgumentError):
            s.send("a\0b")
        assert s.history() == []


def test_moderated_token_cannot_write_list(client, chat):
    token = client.mint_moderated(CACHE, chat, valid_for_s=120, token_id="carol")
    with mim.Client(api_key=token) as carol:
        # Reading the list and subscribing to the topic are allowed...
        with carol.join(CACHE, chat, lambda m: None, mode="client") as s:
            with pytest.raises(mim.MomentoIMError) as err:
                s.send("straight to the list")  # ...pushing to the list is not.
            assert err.value.status_name == "MIM_ERR_PERMISSION_DENIED"
            assert isinstance(err.value, mim.PermissionDeniedError)
        # In moderated mode the message goes to "<chat>-input", which is allowed.
        with carol.join(CACHE, chat, lambda m: None, mode="moderated") as s:
            s.send("for the moderator")
            assert s.history() == []  # no moderator runs: nothing reached the list



# ---- direct chats ----

def _dm(a, b):
    """docs/PROTOCOL.md, section 7, independently of the library."""
    x, y = sorted([a.encode(), b.encode()])
    return "dm-" + hashlib.sha256(x + b"\0" + y).hexdigest()[:32]


def test_direct_chat_id():
    assert mim.direct_chat_id("alice", "bob") == "dm-141a4cd242b67e82edf4a78bb418d40a"
    for a, b in [("alice", "bob"), ("ab", "abc"), ("b", "aa"), ("zé", "中文"), ("x", "x"),
                 ("a" * 128, "b")]:
        assert mim.direct_chat_id(a, b) == mim.direct_chat_id(b, a) == _dm(a, b)
    for a, b, words in [("", "bob", "user_a is empty"), ("alice", "a" * 129, "user_b is longer"),
                        (b"al\xff", "bob", "user_a is not valid UTF-8")]:
        with pytest.raises(mim.InvalidArgumentError) as err:
            mim.direct_chat_id(a, b)
        assert words in err.value.detail


@pytest.mark.parametrize("mode", ["client", "moderated"])
def test_direct_tokens_reach_only_their_chat(client, mode):
    alice, bob, carol = ("%s-%s" % (n, uuid.uuid4().hex[:8]) for n in ("alice", "bob", "carol"))
    dm = mim.direct_chat_id(alice, bob)
    ta = client.mint_direct(CACHE, alice, bob, mode=mode, valid_for_s=120)
    tb = client.mint_direct(CACHE, bob, alice, mode=mode, valid_for_s=120)
    tc = client.mint_direct(CACHE, carol, bob, mode=mode, valid_for_s=120)
    inbox = Inbox()
    with mim.Client(api_key=ta) as ca, mim.Client(api_key=tb) as cb, \
            mim.Client(api_key=tc) as cc:
        with ca.join(CACHE, dm, lambda m: None, mode=mode) as sa, \
                cb.join(CACHE, dm, inbox, mode=mode):
            if mode == "client":  # no moderator runs: the message reaches bob directly
                sa.send("hi bob")
                got = inbox.wait_for(lambda ms: len(ms) >= 1)[0]
                assert (got.text, got.publisher_id) == ("hi bob", alice)
            with pytest.raises(mim.PermissionDeniedError):
                cc.join(CACHE, dm, lambda m: None, mode=mode)
    with pytest.raises(mim.InvalidArgumentError):
        client.mint_direct(CACHE, alice, bob, mode="group")


def test_exception_in_on_message_is_logged_and_delivery_continues(client, chat, caplog):
    inbox = Inbox()

    def on_message(msg):
        inbox(msg)
        if msg.text == "boom":
            raise ValueError("callback failure")

    with caplog.at_level(logging.ERROR, logger="momento_im"):
        with client.join(CACHE, chat, on_message) as s:
            s.send("boom")
            s.send("after")
            inbox.wait_for(lambda ms: [m.text for m in ms] == ["boom", "after"])
            client.ping()  # the client still works
    records = [r for r in caplog.records if "on_message raised" in r.getMessage()]
    assert len(records) == 1
    assert records[0].exc_info[0] is ValueError


def test_blocking_calls_refused_inside_callback(client, chat):
    errors = []
    inbox = Inbox()
    holder = {}

    def on_message(msg):
        for call in (lambda: holder["s"].send("nested"), lambda: holder["s"].leave(),
                     lambda: client.ping()):
            try:
                call()
            except RuntimeError as exc:
                errors.append(exc)
        inbox(msg)

    with client.join(CACHE, chat, on_message) as s:
        holder["s"] = s
        s.send("x")
        inbox.wait_for(lambda ms: len(ms) == 1)
        assert s.joined
    assert len(errors) == 3


def test_leave_stops_callbacks(server, client, chat):
    left_inbox, other_inbox = Inbox(), Inbox()
    s_left = client.join(CACHE, chat, left_inbox)
    with mim.Client(api_key=server["key"]) as other:
        with other.join(CACHE, chat, other_inbox) as s_other:
            s_left.send("before")
            left_inbox.wait_for(lambda ms: len(ms) == 1)
            other_inbox.wait_for(lambda ms: len(ms) == 1)
            s_left.leave()
            s_left.leave()  # idempotent
            assert not s_left.joined
            with pytest.raises(RuntimeError):
                s_left.send("after leave")
            s_other.send("after")
            other_inbox.wait_for(lambda ms: len(ms) == 2)
            # The message reached the other subscriber; give the left session the same
            # chance by sending one more round trip before checking.
            s_other.send("after 2")
            other_inbox.wait_for(lambda ms: len(ms) == 3)
    assert left_inbox.texts() == ["before"]


def test_on_event_sees_reconnect(server, client, chat):
    """SIGUSR1 makes mim-local cut every subscription stream: the session reports
    RECONNECTING, then CONNECTED, and keeps receiving."""
    events = []
    cv = threading.Condition()

    def on_event(state, status_name, detail):
        with cv:
            events.append(state)
            cv.notify_all()

    inbox = Inbox()
    with client.join(CACHE, chat, inbox, on_event=on_event) as s:
        with cv:
            base = len(events)
        os.kill(server["pid"], signal.SIGUSR1)
        with cv:
            assert cv.wait_for(lambda: mim.SubscriptionState.CONNECTED in events[base + 1:]
                               and mim.SubscriptionState.RECONNECTING in events[base:],
                               WAIT_S), events
        s.send("after reconnect")
        inbox.wait_for(lambda ms: [m.text for m in ms] == ["after reconnect"])


def test_close_leaves_open_sessions(server, chat):
    inbox = Inbox()
    c = mim.Client(api_key=server["key"])
    s = c.join(CACHE, chat, inbox)
    c.close()
    assert not s.joined
    with pytest.raises(RuntimeError):
        s.send("x")


def test_concurrent_sends_while_sessions_come_and_go(server, client, chat):
    inbox = Inbox()
    with client.join(CACHE, chat, inbox, history_cap=1000) as receiver:
        sender = client.join(CACHE, chat, lambda m: None, history_cap=1000)
        ids, errors = [], []

        def send_some(n):
            try:
                for i in range(n):
                    ids.append(sender.send("t%d" % i))
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=send_some, args=(25,)) for _ in range(4)]
        for t in threads:
            t.start()
        # Sessions joining (with history) and leaving while the traffic flows.
        for _ in range(5):
            with client.join(CACHE, chat, lambda m: None, history_cap=1000):
                pass
        for t in threads:
            t.join(WAIT_S * 3)
            assert not t.is_alive()
        assert errors == []
        got = inbox.wait_for(lambda ms: len(ms) >= 100)
        assert sorted(m.id for m in got) == sorted(ids)  # each exactly once
        assert len(receiver.history()) == 100
        sender.leave()


def test_close_while_another_thread_sends(server, chat):
    c = mim.Client(api_key=server["key"])
    s = c.join(CACHE, chat, lambda m: None)
    sent, outcome = threading.Event(), []

    def loop():
        try:
            for i in range(10000):
                s.send("x%d" % i)
                sent.set()
            outcome.append("not stopped")
        except RuntimeError:  # the session was left by close()
            outcome.append("stopped")
        except mim.MomentoIMError as exc:
            outcome.append(exc.status_name)

    t = threading.Thread(target=loop)
    t.start()
    assert sent.wait(WAIT_S)
    c.close()  # waits for the send in flight, leaves the session, frees the client
    t.join(WAIT_S)
    assert not t.is_alive()
    assert outcome == ["stopped"]


GC_SCRIPT = r"""
import gc, sys, threading
sys.path.insert(0, sys.argv[1])
import momento_im as mim
key, cache, chat = sys.argv[2], sys.argv[3], sys.argv[4]
got = threading.Event()

# 1. Everything dropped without leave/close, then collected.
c = mim.Client(api_key=key)
s = c.join(cache, chat, lambda m: got.set())
s.send("one")
assert got.wait(10)
del s, c
gc.collect()

# 2. A cycle: the callback holds its own session.
c = mim.Client(api_key=key)
box = {}
box["s"] = c.join(cache, chat, lambda m: box.get("s"))
box["s"].send("two")
del box, c
gc.collect()

# 3. Left open at interpreter exit, with messages in flight and a callback running.
import time
c = mim.Client(api_key=key)
busy = threading.Event()
def slow(m):
    if not m.from_history and not busy.is_set():
        busy.set()
        time.sleep(0.5)  # still running when the main thread exits
keep = [c.join(cache, chat, slow) for _ in range(3)]
for i in range(20):
    keep[0].send("x%d" % i)
assert busy.wait(10)
mim.enable_library_logging()
print("done", flush=True)
"""


def test_gc_and_interpreter_exit(server, chat, tmp_path):
    script = tmp_path / "gc_exit.py"
    script.write_text(GC_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), PKG_DIR, server["key"], CACHE, chat],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr


# ---- asyncio ----

def test_asyncio_messages_history_then_live(client, chat):
    """join_async: messages() yields the history, then live messages sent with the async
    send, and ends after leave; the event loop keeps running meanwhile."""
    with client.join(CACHE, chat, lambda m: None, display_name="old") as s:
        s.send("before")

    async def main():
        ticks = 0

        async def ticker():  # proves the loop is not blocked by the binding
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        tick_task = asyncio.ensure_future(ticker())
        session = await client.join_async(CACHE, chat, display_name="al")
        assert isinstance(session, mim.AsyncSession)
        stream = session.messages()
        first = await stream.get(timeout=WAIT_S)
        assert (first.text, first.sender, first.from_history) == ("before", "old", True)
        mid = await session.send("live one")
        live = await stream.get(timeout=WAIT_S)
        assert (live.id, live.text, live.from_history) == (mid, "live one", False)
        hist = await session.history()
        assert [m.text for m in hist] == ["before", "live one"]
        await client.ping_async()
        await session.leave()
        assert not session.joined
        rest = [m async for m in stream]  # ends: the session has left
        assert rest == []
        tick_task.cancel()
        return ticks

    assert asyncio.run(asyncio.wait_for(main(), WAIT_S * 3)) > 0


def test_asyncio_context_manager_and_errors(client, chat):
    async def main():
        with pytest.raises(mim.InvalidArgumentError):
            await client.join_async(CACHE, chat, on_message=print)
        async with await client.join_async(CACHE, chat) as session:
            with pytest.raises(mim.InvalidArgumentError):
                await session.send("a\0b")
            await session.send("x")
            async for msg in session.messages():
                assert msg.text == "x"
                break
        assert not session.joined
        with pytest.raises(RuntimeError):
            await session.send("after leave")

    asyncio.run(asyncio.wait_for(main(), WAIT_S * 3))


# ---- Ctrl-C ----

@pytest.fixture
def silent_server():
    """A TCP listener on 127.0.0.1 that never accepts nor answers: the kernel completes
    the handshake, so a call to it hangs until its deadline. Yields "127.0.0.1:port"."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield "127.0.0.1:%d" % sock.getsockname()[1]
    finally:
        sock.close()


INTERRUPT_SCRIPT = r"""
import sys, time
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
import momento_im as mim
key, endpoint, what = sys.argv[2], sys.argv[3], sys.argv[4]
c = mim.Client(api_key=key, endpoint=endpoint, deadline_ms=30000)
print("calling", flush=True)
start = time.monotonic()
try:
    if what == "ping":
        c.ping()
    elif what == "join":
        c.join("cache", "room", print)
    print("returned %.3f" % (time.monotonic() - start), flush=True)
except KeyboardInterrupt:
    print("interrupted %.3f" % (time.monotonic() - start), flush=True)
    t = time.monotonic()
    c.close()  # must not wait for the abandoned call (30 s deadline)
    print("closed %.3f" % (time.monotonic() - t), flush=True)
    raise
"""


@pytest.mark.parametrize("what", ["ping", "join"])
def test_ctrl_c_interrupts_blocking_call(server, silent_server, tmp_path, what):
    """SIGINT during a call that would block for its 30 s deadline: KeyboardInterrupt
    at once, close() returns at once, the process exits within 2 s."""
    script = tmp_path / "interrupt.py"
    script.write_text(INTERRUPT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), PKG_DIR, server["key"],
                             silent_server, what], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "calling\n"
        time.sleep(0.5)  # well inside the C call
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert elapsed < 2.0, (elapsed, out, err)
    assert proc.returncode != 0
    lines = out.split()
    assert lines[0] == "interrupted", out
    assert lines[2] == "closed" and float(lines[3]) < 0.5, out
    assert err.rstrip().endswith("KeyboardInterrupt"), err
    assert "Exception ignored" not in err and "Fatal" not in err, err


def _interrupt_main_after(delay_s):
    """SIGINT to this (main) thread after delay_s, as Ctrl-C would."""
    main = threading.main_thread().ident
    timer = threading.Timer(delay_s, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    return timer


def _wait_until(pred, what):
    deadline = time.monotonic() + WAIT_S * 2
    while not pred():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)  # polling the binding's state: nothing to block on


def test_interrupted_call_finishes_safely(server, silent_server):
    """The abandoned call runs to its deadline on its helper thread, its error dropped;
    the client then works on and closes normally."""
    with mim.Client(api_key=server["key"], endpoint=silent_server, deadline_ms=1000) as c:
        timer = _interrupt_main_after(0.2)
        start = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            c.ping()
        timer.join()
        assert time.monotonic() - start < 0.9
        assert c._handle.abandoned == 1
        _wait_until(lambda: c._handle.abandoned == 0, "the abandoned ping never ended")
        with pytest.raises(mim.MomentoIMError):  # the client still answers
            c.ping()


def test_interrupted_join_that_succeeds_later_is_left(server, chat):
    """A join interrupted while the server hangs, and completed after the server
    resumes, is left by the helper thread: no session stays joined."""
    received = Inbox()
    with mim.Client(api_key=server["key"], deadline_ms=WAIT_S * 1000) as c:
        c.ping()  # connected before the freeze
        left = []
        leave = c._leave
        c._leave = lambda state: (left.append(state), leave(state))
        _freeze(server["pid"])
        try:
            timer = _interrupt_main_after(0.3)
            with pytest.raises(KeyboardInterrupt):
                c.join(CACHE, chat, received)
            timer.join()
        finally:
            os.kill(server["pid"], signal.SIGCONT)
        _wait_until(lambda: left and not c._sessions and c._handle.abandoned == 0,
                    "the abandoned join was not left")
        assert left[0].handle.value is None and left[0].left.is_set()
        c.ping()


def test_interrupted_history_then_leave_returns_at_once(server, chat):
    """history() interrupted while the server hangs: leave() does not wait for the
    abandoned call (its callbacks stop at once); the leave finishes in the background
    once the call ended, and close() then frees the client."""
    received = Inbox()
    with mim.Client(api_key=server["key"], deadline_ms=WAIT_S * 1000) as c:
        s = c.join(CACHE, chat, received)
        state = s._state
        _freeze(server["pid"])
        try:
            timer = _interrupt_main_after(0.3)
            with pytest.raises(KeyboardInterrupt):
                s.history()
            timer.join()
            assert state.handle.abandoned == 1
            start = time.monotonic()
            s.leave()
            assert time.monotonic() - start < 0.5
            assert not s.joined and not state.left.is_set()  # still leaving
            with pytest.raises(RuntimeError):
                s.send("after leave")
        finally:
            os.kill(server["pid"], signal.SIGCONT)
        _wait_until(state.left.is_set, "the deferred leave never finished")
        assert state.handle.abandoned == 0 and not c._sessions
        assert received.texts() == []


# ---- typing and presence ----

class Presence:
    """Collects on_presence changes as (change name, user id)."""

    def __init__(self):
        self.cv = threading.Condition()
        self.seen = []

    def __call__(self, change, member):
        assert isinstance(member, mim.Member)
        with self.cv:
            self.seen.append((change.name, member.user_id))
            self.cv.notify_all()

    def wait_for(self, item, timeout=WAIT_S):
        with self.cv:
            ok = self.cv.wait_for(lambda: item in self.seen, timeout)
            assert ok, "timed out waiting for %r; have %r" % (item, self.seen)


def test_typing_and_presence(client, chat):
    pa, pb = Presence(), Presence()
    quiet = client.join(CACHE, chat, Inbox(), display_name="Quiet")
    a = client.join(CACHE, chat, Inbox(), display_name="Alice", user_id="alice",
                    on_presence=pa, presence_heartbeat_ms=1000)
    b = client.join(CACHE, chat, Inbox(), display_name="Bob", user_id="bob",
                    on_presence=pb, presence_heartbeat_ms=1000)
    try:
        pa.wait_for(("JOINED", "bob"))
        pb.wait_for(("JOINED", "alice"))
        [m] = a.members()
        assert (m.user_id, m.display_name, m.trusted) == ("bob", "Bob", False)
        b.set_typing(True)
        pa.wait_for(("TYPING", "bob"))
        assert a.members()[0].typing
        b.set_typing(False)
        pa.wait_for(("STOPPED_TYPING", "bob"))
        quiet.set_typing(True)  # typing without presence
        pa.wait_for(("TYPING", "Quiet"))
        with pytest.raises(mim.MomentoIMError) as e:
            quiet.members()
        assert e.value.status_name == "MIM_ERR_FAILED_PRECONDITION"
        b.leave()
        pa.wait_for(("LEFT", "bob"))
        assert [m.user_id for m in a.members()] == ["Quiet"]
    finally:
        b.leave()
        a.leave()
        quiet.leave()


# ---- own messages, replies, edits, deletions, reactions ----

class Updates:
    """Collects on_update calls as (kind name, Message)."""

    def __init__(self):
        self.cv = threading.Condition()
        self.seen = []

    def __call__(self, kind, msg):
        assert isinstance(kind, mim.UpdateKind) and isinstance(msg, mim.Message)
        with self.cv:
            self.seen.append((kind.name, msg))
            self.cv.notify_all()

    def wait_for(self, pred, timeout=WAIT_S):
        with self.cv:
            ok = self.cv.wait_for(lambda: pred(self.seen), timeout)
            assert ok, "timed out; have %r" % (self.seen,)
            return list(self.seen)

    def kinds(self, message_id):
        with self.cv:
            return [k for k, m in self.seen if m.id == message_id]


def _by_id(inbox, message_id):
    return inbox.wait_for(lambda ms: any(m.id == message_id for m in ms))


def test_message_id_new():
    a, b = mim.message_id_new(), mim.message_id_new()
    assert a != b and len(a) == 32 and int(a, 16) >= 0


def test_reply_edit_delete_react_between_two_clients(server, client, chat):
    """alice (root key) and bob (his own client-only token): every change one makes is
    seen by the other as one on_update with the message's new state."""
    token = client.mint_client_only(CACHE, chat, valid_for_s=120, token_id="bob")
    ia, ib, ua, ub = Inbox(), Inbox(), Updates(), Updates()
    with mim.Client(api_key=token) as bob_client, \
            client.join(CACHE, chat, ia, display_name="Alice", user_id="alice",
                        on_update=ua) as alice, \
            bob_client.join(CACHE, chat, ib, display_name="Bob", user_id="bob",
                            on_update=ub) as bob:
        mine = mim.message_id_new()
        assert alice.send("first", id=mine) == mine
        [m] = [m for m in _by_id(ib, mine) if m.id == mine]
        assert (m.text, m.sender_id, m.sender_trusted, m.mine, m.version) == \
            ("first", "alice", False, False, 2)
        [own] = [m for m in _by_id(ia, mine) if m.id == mine]
        assert own.mine and own.reactions == {} and not own.edited
        reply = bob.send("a reply", reply_to=mine)
        got = [m for m in _by_id(ia, reply) if m.id == reply][0]
        assert (got.reply_to, got.sender_id, got.mine) == (mine, "bob", False)

        def both_saw(n):  # the author's own events come back to it too
            for u in (ua, ub):
                u.wait_for(lambda seen: len([1 for _, m in seen if m.id == mine]) >= n)

        alice.edit(mine, "first, edited")
        both_saw(1)
        bob.react(mine, "+1")
        both_saw(2)
        bob.react(mine, "+1")  # already there: changes nothing, no update
        alice.react(mine, "+1")
        both_saw(3)
        with pytest.raises(mim.PermissionDeniedError):
            bob.edit(mine, "not his")
        with pytest.raises(mim.PermissionDeniedError):
            bob.delete(mine)
        bob.react(mine, "+1", on=False)
        both_saw(4)
        alice.delete(mine)
        both_saw(5)
        # Once per change, in order, the same for both.
        assert ub.kinds(mine) == ["EDITED", "REACTIONS", "REACTIONS", "REACTIONS", "DELETED"]
        assert ua.kinds(mine) == ub.kinds(mine)
        seen_a, seen_b = ua.seen, ub.seen
        states = [m for _, m in seen_b]
        assert (states[0].text, states[0].edited, states[0].edited_ms > 0) == \
            ("first, edited", True, True)
        assert states[1].reactions == {"+1": ("bob",)}
        assert states[2].reactions == {"+1": ("bob", "alice")}
        assert states[3].reactions == {"+1": ("alice",)}
        assert (states[4].deleted, states[4].text, states[4].reactions) == (True, "", {})
        assert [m.mine for _, m in seen_a] == [True] * len(seen_a)
    # A late joiner gets the folded state in the history.
    late = Inbox()
    with client.join(CACHE, chat, late, display_name="Carol", user_id="carol"):
        hist = {m.id: m for m in late.messages}
        assert hist[mine].deleted and hist[mine].text == ""
        assert (hist[reply].reply_to, hist[reply].text) == (mine, "a reply")


_FILTER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
_accept_all = _FILTER(lambda _msg, _new_text, _user: 0)  # MIM_MODERATION_ACCEPT


def _start_moderator(client, chat):
    """A moderator (C API, no binding of it) on the root client, accepting everything."""
    lib = _ffi.lib
    lib.mim_moderator_start.restype = ctypes.c_int
    lib.mim_moderator_start.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                        ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t,
                                        ctypes.c_uint32, _FILTER, ctypes.c_void_p,
                                        ctypes.POINTER(ctypes.c_void_p)]
    lib.mim_moderator_stop.restype = None
    lib.mim_moderator_stop.argtypes = [ctypes.c_void_p]
    chats = (ctypes.c_char_p * 1)(chat.encode())
    out = ctypes.c_void_p()
    assert lib.mim_moderator_start(client._handle.value, CACHE.encode(), chats, 1, 0,
                                   _accept_all, None, ctypes.byref(out)) == 0
    return out


def test_trusted_sender_and_edit_in_moderated_chat(server, client, chat):
    ta = client.mint_moderated(CACHE, chat, valid_for_s=120, token_id="alice")
    tb = client.mint_moderated(CACHE, chat, valid_for_s=120, token_id="bob")
    moderator = _start_moderator(client, chat)
    ib, ub = Inbox(), Updates()
    try:
        with mim.Client(api_key=ta) as ca, mim.Client(api_key=tb) as cb, \
                ca.join(CACHE, chat, Inbox(), display_name="Al", user_id="mallory",
                        mode="moderated") as alice, \
                cb.join(CACHE, chat, ib, display_name="Bob", mode="moderated",
                        on_update=ub):
            mid = alice.send("vouched for")
            [m] = [m for m in _by_id(ib, mid) if m.id == mid]
            # The claimed user id is not what readers see: the token id is.
            assert (m.sender_id, m.sender_trusted, m.publisher_id) == ("alice", True, "alice")
            alice.edit(mid, "vouched for, edited")
            [(kind, new)] = ub.wait_for(lambda seen: len(seen) >= 1)
            assert (kind, new.text, new.sender_trusted) == ("EDITED", "vouched for, edited",
                                                            True)
    finally:
        _ffi.lib.mim_moderator_stop(moderator)


# ---- read markers ----

def test_mark_read_unread_count_and_read_markers(server, client, chat):
    token = client.mint_client_only(CACHE, chat, valid_for_s=120, token_id="bob")
    ib = Inbox()
    with mim.Client(api_key=token) as bob_client, \
            client.join(CACHE, chat, Inbox(), display_name="Alice", user_id="alice") as alice, \
            bob_client.join(CACHE, chat, ib, display_name="Bob", user_id="bob") as bob:
        ids = [alice.send("m%d" % i) for i in range(3)]
        ib.wait_for(lambda ms: len(ms) >= 3)
        assert bob.unread_count() == (3, False)  # no marker yet: every message counts
        assert alice.read_markers() == []
        bob.mark_read(ids[1])
        assert bob.unread_count() == (1, True)
        own = bob.send("mine: not unread")
        gone = alice.send("deleted: not unread")
        ib.wait_for(lambda ms: {own, gone} <= {m.id for m in ms})
        assert bob.unread_count() == (2, True)
        alice.delete(gone)
        _wait_until(lambda: bob.unread_count() == (1, True), "the deletion was not counted")
        [marker] = alice.read_markers()
        assert (marker.user_id, marker.message_id) == ("bob", ids[1])
        assert abs(marker.read_at_ms - time.time() * 1000) < 60_000
        alice.mark_read(ids[2])
        markers = {m.user_id: m.message_id for m in bob.read_markers()}
        assert markers == {"bob": ids[1], "alice": ids[2]}
        with pytest.raises(mim.InvalidArgumentError):
            bob.mark_read("")


# ---- dictionaries ----

def test_dictionary_round_trip(client, chat):
    d = "dict-" + chat
    assert client.dictionary_get_field(CACHE, d, b"f") is None
    assert client.dictionary_fetch(CACHE, d) is None
    client.dictionary_set_field(CACHE, d, b"bin\0field", b"\0\xff value")
    client.dictionary_set_field(CACHE, d, "text", "zé", ttl_ms=60_000, refresh_ttl=True)
    client.dictionary_set_field(CACHE, d, b"empty", b"")
    assert client.dictionary_get_field(CACHE, d, b"bin\0field") == b"\0\xff value"
    assert client.dictionary_get_field(CACHE, d, "text") == "zé".encode()
    assert client.dictionary_get_field(CACHE, d, b"empty") == b""
    assert client.dictionary_get_field(CACHE, d, b"missing") is None
    assert client.dictionary_fetch(CACHE, d) == {b"bin\0field": b"\0\xff value",
                                                  b"text": "zé".encode(), b"empty": b""}
    with pytest.raises(mim.NotFoundError):
        client.dictionary_set_field("no-such-cache", d, b"f", b"v")
    with pytest.raises(mim.InvalidArgumentError):
        client.dictionary_set_field(CACHE, d, None, b"v")


def test_asyncio_updates_and_read_markers(client, chat):
    async def main():
        async with await client.join_async(CACHE, chat, display_name="Al",
                                           user_id="al") as session:
            stream, updates = session.messages(), session.updates()
            mid = await session.send("hi")
            assert (await stream.get(timeout=WAIT_S)).mine
            reply = await session.send("re", reply_to=mid)
            assert (await stream.get(timeout=WAIT_S)).reply_to == mid
            await session.react(mid, "+1")
            kind, msg = await updates.get(timeout=WAIT_S)
            assert (kind, msg.id, msg.reactions) == (mim.UpdateKind.REACTIONS, mid,
                                                     {"+1": ("al",)})
            await session.edit(reply, "re!")
            kind, msg = await updates.get(timeout=WAIT_S)
            assert (kind, msg.text) == (mim.UpdateKind.EDITED, "re!")
            await session.delete(reply)
            kind, _ = await updates.get(timeout=WAIT_S)
            assert kind == mim.UpdateKind.DELETED
            await session.mark_read(mid)
            assert await session.unread_count() == (0, True)
            [marker] = await session.read_markers()
            assert (marker.user_id, marker.message_id) == ("al", mid)
        assert [u async for u in updates] == []  # ends with the session
        with pytest.raises(mim.InvalidArgumentError):
            await client.join_async(CACHE, chat, on_update=print)

    asyncio.run(asyncio.wait_for(main(), WAIT_S * 3))


def test_read_calls_inside_callback(client, chat):
    """From a callback: mark_read and read_markers (blocking) raise RuntimeError; once
    the marker is known, unread_count is local and works there too."""
    got, holder = [], {}
    inbox = Inbox()

    def on_message(msg):
        s = holder["s"]
        for call in (lambda: s.mark_read(msg.id), s.read_markers, s.unread_count):
            try:
                got.append(call())
            except RuntimeError as exc:
                got.append(type(exc))
            except mim.MomentoIMError as exc:
                got.append(exc.status_name)
        inbox(msg)

    with client.join(CACHE, chat, on_message, user_id="me") as s:
        holder["s"] = s
        first = s.send("first")
        inbox.wait_for(lambda ms: len(ms) == 1)
        s.mark_read(first)  # the marker is known from now on
        s.send("second")
        msgs = inbox.wait_for(lambda ms: len(ms) == 2)
        assert hash(msgs[0]) == hash(msgs[0])  # a Message stays hashable
    # Before the marker is known the first count would block: refused by the library.
    assert got[:3] == [RuntimeError, RuntimeError, "MIM_ERR_FAILED_PRECONDITION"]
    assert got[3:] == [RuntimeError, RuntimeError, (0, True)]  # own message: not unread


def test_update_of_unknown_kind_is_passed_as_int(client, chat):
    """A newer library's update kind reaches on_update as its number (not an error)."""
    seen = []
    with client.join(CACHE, chat, lambda m: None, on_update=lambda k, m: seen.append(k)) as s:
        state, msg = s._state, _ffi.Message()
        state._on_update(0, ctypes.pointer(msg), 7, 0)
        state._on_update(0, ctypes.pointer(msg), _ffi.UPDATE_DELETED, 0)
    assert seen == [7, mim.UpdateKind.DELETED] and type(seen[0]) is int
