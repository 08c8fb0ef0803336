"""Python binding of libmomento-im (instant messaging on Momento), over ctypes.

    from momento_im import Client

    with Client(api_key=key) as client:
        with client.join("cache", "room", print, display_name="alice") as chat:
            chat.send("hello")

The shared library is found through the MOMENTO_IM_LIB environment variable, else
build/lib of the repository this package sits in, else the system loader
(ctypes.util.find_library("momento-im")). No C extension is compiled.

Threads: ``on_message``, ``on_event`` and ``on_send_result`` run on the library's event
thread, one at a time (``on_send_result`` also in the thread of ``leave``, for the
messages it reports, or of ``send``, when a call could not even be started). They must return quickly and must not call blocking methods of the client or its
sessions (``send``, ``history``, ``leave``, ``ping``, ``close``...): those raise
RuntimeError there, because in C they would deadlock. Hand work to another thread
(e.g. a queue.Queue) instead. An exception raised by a callback is logged on the
``momento_im`` logger and otherwise ignored; it never reaches the library.
"""

import atexit
import contextlib
import enum
import logging
import threading
import weakref
from ctypes import POINTER, byref, c_void_p, create_string_buffer, string_at
from dataclasses import dataclass, field

from . import _ffi
from ._ffi import lib

__all__ = [
    "Client", "Session", "Message", "MessageKind", "SubscriptionState",
    "MomentoIMError", "InvalidArgumentError", "NotFoundError", "AlreadyExistsError",
    "PermissionDeniedError", "UnauthenticatedError", "DeadlineExceededError",
    "UnavailableError", "version", "enable_library_logging",
]

_log = logging.getLogger("momento_im")
_local = threading.local()


def version():
    """Version of the loaded C library ("MAJOR.MINOR.PATCH")."""
    return lib.mim_version().decode()


# ---- errors ----

class MomentoIMError(Exception):
    """A libmomento-im call failed.

    status_name: the C status name, e.g. "MIM_ERR_PERMISSION_DENIED";
    detail: the library's detail for the failed call ("" when none);
    status: the numeric mim_status.
    """

    def __init__(self, status_name, detail="", status=None):
        super().__init__(status_name, detail)
        self.status_name = status_name
        self.detail = detail
        self.status = status

    def __str__(self):
        return "%s: %s" % (self.status_name, self.detail) if self.detail else self.status_name


class InvalidArgumentError(MomentoIMError):
    """MIM_ERR_INVALID_ARGUMENT"""


class NotFoundError(MomentoIMError):
    """MIM_ERR_NOT_FOUND"""


class AlreadyExistsError(MomentoIMError):
    """MIM_ERR_ALREADY_EXISTS"""


class PermissionDeniedError(MomentoIMError):
    """MIM_ERR_PERMISSION_DENIED"""


class UnauthenticatedError(MomentoIMError):
    """MIM_ERR_UNAUTHENTICATED"""


class DeadlineExceededError(MomentoIMError):
    """MIM_ERR_DEADLINE_EXCEEDED"""


class UnavailableError(MomentoIMError):
    """MIM_ERR_UNAVAILABLE"""


_ERROR_CLASSES = {1: InvalidArgumentError, 2: NotFoundError, 3: AlreadyExistsError,
                  4: PermissionDeniedError, 5: UnauthenticatedError,
                  7: DeadlineExceededError, 8: UnavailableError}


def _check(status):
    """Raises for a failed status. Call right after the C call, on the same thread:
    the detail belongs to the calling thread until its next library call."""
    if status == 0:
        return
    detail = lib.mim_last_error_detail()  # first: mim_status_name is a library call too
    name = lib.mim_status_name(status).decode()
    detail = detail.decode("utf-8", "replace") if detail else ""
    raise _ERROR_CLASSES.get(status, MomentoIMError)(name, detail, status)


def _invalid(detail):
    return InvalidArgumentError("MIM_ERR_INVALID_ARGUMENT", detail, 1)


def _b(value, what):
    """str -> UTF-8 bytes for a C string; None stays NULL. C strings end at the first
    NUL, so a NUL inside would silently cut the value: refuse it."""
    if value is None:
        return None
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if b"\0" in data:
        raise _invalid("%s contains a NUL character" % what)
    return data


# ---- callback-thread guard ----

def _in_callback():
    return getattr(_local, "in_callback", False)


def _refuse_in_callback(what):
    if _in_callback():
        raise RuntimeError("%s must not be called from on_message/on_event (it runs on "
                           "the library's event thread and would deadlock)" % what)


# ---- messages ----

class MessageKind(enum.IntEnum):
    CHAT = _ffi.MESSAGE_CHAT  # a well-formed envelope
    FOREIGN = _ffi.MESSAGE_FOREIGN  # any other value on the list/topic: see raw


class SubscriptionState(enum.IntEnum):
    CONNECTING = 0
    CONNECTED = 1
    RECONNECTING = 2
    CLOSED = 3


@dataclass(frozen=True)
class Message:
    """One chat message, copied out of the C struct (safe to keep)."""
    id: str
    chat: str
    sender: str  # "from": the display name the sender claims
    publisher_id: str  # trusted token id of the publisher (live only; "" otherwise)
    text: str
    timestamp_ms: int  # sender's clock, epoch ms
    sequence: int  # topic sequence number (0 for history)
    from_history: bool
    kind: MessageKind
    raw: bytes = field(repr=False)


def _s(value):
    return value.decode("utf-8", "replace") if value else ""


def _kind(value):
    try:
        return MessageKind(value)
    except ValueError:  # a newer library with a kind this binding does not know
        return value


def _copy_message(m):
    """Copies every field: the C pointers die when the callback returns."""
    raw = string_at(m.raw, m.raw_len) if m.raw and m.raw_len else b""
    return Message(id=_s(m.id), chat=_s(m.chat), sender=_s(m.from_),
                   publisher_id=_s(m.publisher_id), text=_s(m.text),
                   timestamp_ms=m.timestamp_ms, sequence=m.sequence,
                   from_history=bool(m.from_history), kind=_kind(m.kind), raw=raw)


# ---- handles ----

class _Handle:
    """A C handle shared between threads: calls borrow it, and retire() (leave/close)
    waits until no call is using it before the C object is freed."""

    def __init__(self, what):
        self.cv = threading.Condition()
        self.value = None
        self.users = 0
        self.what = what

    @contextlib.contextmanager
    def use(self):
        with self.cv:
            if self.value is None:
                raise RuntimeError(self.what)
            self.users += 1
            value = self.value
        try:
            yield value
        finally:
            with self.cv:
                self.users -= 1
                if self.users == 0:
                    self.cv.notify_all()

    def retire(self):
        """Takes the handle away (None when already retired), after the last user."""
        with self.cv:
            value, self.value = self.value, None
            self.cv.wait_for(lambda: self.users == 0)
        return value


# ---- sessions ----

class _SessionState:
    """What the C side may reach: the session handle and the ctypes callback objects.
    The client holds it until mim_leave returned, so the callbacks cannot be garbage
    collected while the library may call them."""

    def __init__(self, on_message, on_event, on_send_result=None):
        self.handle = _Handle("session has left the chat")
        self.user_on_message = on_message
        self.user_on_event = on_event
        self.user_on_send_result = on_send_result
        self.c_on_message = _ffi.ON_MESSAGE(self._on_message)
        self.c_on_event = _ffi.ON_EVENT(self._on_event) if on_event else None
        self.c_on_send_result = (_ffi.ON_SEND_RESULT(self._on_send_result)
                                 if on_send_result else None)

    def _on_message(self, _session, msg, _user):
        _local.in_callback = True
        try:
            self.user_on_message(_copy_message(msg.contents))
        except BaseException:  # never let anything unwind into C
            _log.exception("momento_im: on_message raised; ignored")
        finally:
            _local.in_callback = False

    def _on_event(self, _session, state, status, detail, _user):
        _local.in_callback = True
        try:
            name = lib.mim_status_name(status).decode() if status else "MIM_OK"
            self.user_on_event(SubscriptionState(state), name, _s(detail))
        except BaseException:
            _log.exception("momento_im: on_event raised; ignored")
        finally:
            _local.in_callback = False

    def _on_send_result(self, _session, message_id, status, detail, _user):
        # Also runs in the thread of leave() or send(): restore that thread's flag.
        was = _in_callback()
        _local.in_callback = True
        try:
            name = lib.mim_status_name(status).decode() if status else "MIM_OK"
            self.user_on_send_result(_s(message_id), name, _s(detail))
        except BaseException:
            _log.exception("momento_im: on_send_result raised; ignored")
        finally:
            _local.in_callback = was

    def release(self):
        self.user_on_message = self.user_on_event = self.user_on_send_result = None
        self.c_on_message = self.c_on_event = self.c_on_send_result = None


class Session:
    """A joined chat (from Client.join). Use as a context manager or call leave()."""

    def __init__(self, client, state, cache, chat):
        self._client = client
        self._state = state
        self.cache = cache
        self.chat = chat

    def history(self, last_n=0):
        """The last `last_n` messages of the chat's list (0 = all), oldest first.
        Fetched from the server."""
        _refuse_in_callback("Session.history")
        if last_n < 0:
            raise _invalid("last_n must be >= 0")
        out = POINTER(_ffi.MessageList)()
        with self._state.handle.use() as h:
            _check(lib.mim_history(h, last_n, byref(out)))
        try:
            lst = out.contents
            return [_copy_message(lst.messages[i]) for i in range(lst.count)]
        finally:
            lib.mim_message_list_free(out)

    def send(self, text):
        """Sends text; returns the new message's id."""
        _refuse_in_callback("Session.send")
        data = _b(text, "text")
        if data is None:
            raise _invalid("text is None")
        id_out = create_string_buffer(_ffi.MESSAGE_ID_SIZE)
        with self._state.handle.use() as h:
            _check(lib.mim_send(h, data, id_out))
        return id_out.value.decode()

    def remove_message(self, message_id):
        """Removes a message from the history (needs write permission on the list)."""
        _refuse_in_callback("Session.remove_message")
        data = _b(message_id, "message_id")
        with self._state.handle.use() as h:
            _check(lib.mim_remove_message(h, data))

    def leave(self):
        """Unsubscribes and frees the session; no callback runs after it returns.
        Idempotent. Must not be called from the session's own callbacks."""
        _refuse_in_callback("Session.leave")
        self._client._leave(self._state)

    @property
    def joined(self):
        return self._state.handle.value is not None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.leave()

    def __del__(self):
        try:
            state = self._state
        except AttributeError:
            return
        if state.handle.value is None:
            return
        if _in_callback():  # collected on the event thread: leave from elsewhere
            threading.Thread(target=self._client._leave, args=(state,), daemon=True).start()
        else:
            self._client._leave(state)


# ---- client ----

_TLS = {"auto": _ffi.TLS_AUTO, "on": _ffi.TLS_ON, "off": _ffi.TLS_OFF}
_MODES = {"client": _ffi.CHAT_CLIENT_ONLY, "client_only": _ffi.CHAT_CLIENT_ONLY,
          "moderated": _ffi.CHAT_MODERATED}
_live_clients = weakref.WeakSet()


class Client:
    """A libmomento-im client (one gRPC connection set and one event thread).

    api_key: v1 API key or disposable token (None: MOMENTO_API_KEY).
    cache_host/control_host/token_host: "host:port" overrides; endpoint sets all three.
    tls: "auto" (TLS except plaintext when every host is loopback), "on" or "off".
    token_url: instead of a key, a token vendor URL; the library fetches a token and
    refreshes it token_refresh_margin_ms before expiry (0 = at 80% of its lifetime).
    ca_file: PEM roots instead of the system ones. deadline_ms: per-call deadline
    (None = 15 s). ttl_ms: TTL of list writes (None = 24 h).
    """

    def __init__(self, api_key=None, cache_host=None, control_host=None, token_host=None,
                 tls="auto", ca_file=None, deadline_ms=None, ttl_ms=None, endpoint=None,
                 token_url=None, token_refresh_margin_ms=0):
        self._handle = _Handle("client is closed")
        self._lock = threading.Lock()
        self._sessions = {}
        if tls not in _TLS:
            raise _invalid("tls must be 'auto', 'on' or 'off'")
        opts = _ffi.ClientOptions()
        lib.mim_client_options_init(byref(opts))
        keep = [_b(api_key, "api_key"), _b(cache_host or endpoint, "cache_host"),
                _b(control_host or endpoint, "control_host"),
                _b(token_host or endpoint, "token_host"), _b(ca_file, "ca_file")]
        (opts.api_key, opts.cache_host, opts.control_host, opts.token_host,
         opts.ca_file) = keep
        opts.token_url = _b(token_url, "token_url")
        opts.token_refresh_margin_ms = int(token_refresh_margin_ms)
        opts.tls = _TLS[tls]
        opts.default_deadline_ms = int(deadline_ms or 0)
        opts.default_ttl_ms = int(ttl_ms or 0)
        out = c_void_p()
        _check(lib.mim_client_create(byref(opts), byref(out)))
        self._handle.value = out.value
        _live_clients.add(self)

    def ping(self):
        """Round trip to the cache host."""
        _refuse_in_callback("Client.ping")
        with self._handle.use() as h:
            _check(lib.mim_client_ping(h))

    def create_cache(self, name):
        """Creates a cache (needs a super-user key). AlreadyExistsError if it exists."""
        _refuse_in_callback("Client.create_cache")
        data = _b(name, "name")
        with self._handle.use() as h:
            _check(lib.mim_cache_create(h, data))

    def delete_cache(self, name):
        _refuse_in_callback("Client.delete_cache")
        data = _b(name, "name")
        with self._handle.use() as h:
            _check(lib.mim_cache_delete(h, data))

    def join(self, cache, chat, on_message, display_name=None, mode="client",
             history_cap=100, history_ttl_ms=0, on_event=None, on_send_result=None,
             outbox_limit=0, flush_timeout_ms=0, send_timeout_ms=0):
        """Joins `chat` in `cache`: on_message(Message) gets the history (from_history
        True, oldest first; delivered before join returns), then live messages, each
        once. mode: "client" or "moderated". on_event(state, status_name, detail), if
        given, sees subscription state changes.

        Sending (see mim_send in im.h): messages go through an outbox that retries
        failures worth retrying. on_send_result(message_id, status_name, detail), if
        given, gets the final outcome of every message send() accepted, exactly once:
        "MIM_OK" when it was sent, else the last error ("MIM_ERR_CANCELLED" for what
        leave() could not flush). outbox_limit (0 = 1024 messages), flush_timeout_ms
        (how long leave() waits for the outbox; 0 = 2000) and send_timeout_ms (how long
        a message is retried; 0 = 60000) tune it. Returns a Session."""
        _refuse_in_callback("Client.join")
        if not callable(on_message):
            raise _invalid("on_message must be callable")
        if mode not in _MODES:
            raise _invalid("mode must be 'client' or 'moderated'")
        if on_send_result is not None and not callable(on_send_result):
            raise _invalid("on_send_result must be callable")
        for what, value in (("history_cap", history_cap), ("outbox_limit", outbox_limit),
                            ("flush_timeout_ms", flush_timeout_ms),
                            ("send_timeout_ms", send_timeout_ms)):
            if not 0 <= value < 2 ** 32:
                raise _invalid("%s out of range" % what)
        state = _SessionState(on_message, on_event, on_send_result)
        opts = _ffi.JoinOptions()
        lib.mim_join_options_init(byref(opts))
        name = _b(display_name, "display_name")
        opts.display_name = name
        opts.mode = _MODES[mode]
        opts.history_cap = history_cap
        opts.history_ttl_ms = int(history_ttl_ms)
        if state.c_on_event:
            opts.on_event = state.c_on_event
        if state.c_on_send_result:
            opts.on_send_result = state.c_on_send_result
        opts.outbox_limit = outbox_limit
        opts.flush_timeout_ms = flush_timeout_ms
        opts.send_timeout_ms = send_timeout_ms
        out = c_void_p()
        cache_b, chat_b = _b(cache, "cache"), _b(chat, "chat")
        # close() waits for this block, then leaves the session registered here.
        with self._handle.use() as h:
            status = lib.mim_join(h, cache_b, chat_b, byref(opts), state.c_on_message,
                                  None, byref(out))
            _check(status)
            state.handle.value = out.value
            with self._lock:
                self._sessions[id(state)] = state
        return Session(self, state, cache, chat)

    def _leave(self, state):
        h = state.handle.retire()
        with self._lock:
            self._sessions.pop(id(state), None)
        if h is not None:
            lib.mim_leave(h)
        state.release()  # only now: no callback can run after mim_leave returned

    def _mint(self, fn, cache, chat, valid_for_s, token_id):
        _refuse_in_callback("Client.mint_*")
        if not 0 < valid_for_s < 2 ** 32:
            raise _invalid("valid_for_s must be > 0")
        out = POINTER(_ffi.DisposableToken)()
        args = (_b(cache, "cache"), _b(chat, "chat"), int(valid_for_s),
                _b(token_id, "token_id"))
        with self._handle.use() as h:
            _check(fn(h, *args, byref(out)))
        try:
            return out.contents.credential.decode()
        finally:
            lib.mim_disposable_token_free(out)

    def mint_client_only(self, cache, chat, valid_for_s=3600, token_id=None):
        """A disposable token for the client-only pattern (readwrite on list `chat`,
        publish/subscribe on topic `chat`); returns its credential string."""
        return self._mint(lib.mim_token_generate_client_only, cache, chat, valid_for_s,
                          token_id)

    def mint_moderated(self, cache, chat, valid_for_s=3600, token_id=None):
        """A disposable token for the moderated pattern (read on list `chat`, publish
        on topic "<chat>-input", subscribe on topic `chat`); returns its credential."""
        return self._mint(lib.mim_token_generate_moderated, cache, chat, valid_for_s,
                          token_id)

    def close(self):
        """Leaves every session still joined, then frees the client. Idempotent."""
        _refuse_in_callback("Client.close")
        self._close()

    def _close(self):
        h = self._handle.retire()  # no new call starts; running ones are done
        with self._lock:
            states = list(self._sessions.values())
        for state in states:
            self._leave(state)
        if h is not None:
            lib.mim_client_free(h)

    @property
    def closed(self):
        return self._handle.value is None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle is None or handle.value is None:
            return
        if _in_callback():
            threading.Thread(target=self._close, daemon=True).start()
        else:
            self._close()


# ---- library logging ----

_LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}
_lib_log = logging.getLogger("momento_im.lib")
_log_fn = None  # keeps the installed ctypes callback alive


def _forward_log(level, message, _user):
    try:
        _lib_log.log(_LEVELS.get(level, logging.DEBUG), "%s", _s(message))
    except BaseException:
        pass


def enable_library_logging(level=logging.INFO):
    """Routes the C library's log lines (process-wide) to the "momento_im.lib" logger.
    level: the most verbose Python level to forward. None turns forwarding off."""
    global _log_fn
    if level is None:
        lib.mim_set_log_callback(_ffi.LOG_FN(), 0, None)  # NULL: off
        _log_fn = None
        return
    max_level = 4 if level <= logging.DEBUG else 3 if level <= logging.INFO else \
        2 if level <= logging.WARNING else 1
    fn = _ffi.LOG_FN(_forward_log)
    lib.mim_set_log_callback(fn, max_level, None)
    _log_fn = fn


@atexit.register
def _shutdown():
    """Before the interpreter goes away: no library thread may call into Python."""
    for client in list(_live_clients):
        try:
            client._close()
        except Exception:  # best effort at exit
            pass
    lib.mim_set_log_callback(_ffi.LOG_FN(), 0, None)  # NULL: off
