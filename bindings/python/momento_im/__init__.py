"""Python binding of libmomento-im (instant messaging on Momento), over ctypes.

    from momento_im import Client

    with Client(api_key=key) as client:
        with client.join("cache", "room", print, display_name="alice") as chat:
            chat.send("hello")

asyncio: ``session = await client.join_async(cache, chat)``, then
``async for msg in session.messages(): ...`` and
``async for kind, msg in session.updates(): ...`` (see AsyncSession).

The shared library (libmomento-im.so.N) is found through the MOMENTO_IM_LIB
environment variable when it is set, else through the dynamic loader (LD_LIBRARY_PATH,
the ldconfig cache), else /usr/local/lib, else build/lib of the source checkout this
package sits in. No C extension is compiled.

Ctrl-C: a blocking call made from the main thread (join, history, ping, ...) runs the C
call on a helper thread and waits for it in short slices, so KeyboardInterrupt is raised
at once. The abandoned C call runs on to its deadline, its result dropped (a join that
still succeeds is left again); leave() and close() then do not wait for it.

Threads: ``on_message``, ``on_update``, ``on_presence``, ``on_event`` and
``on_send_result`` run on the library's event thread, one at a time (``on_send_result``
also in the thread of ``leave``, for the messages it reports, or of ``send``, when a
call could not even be started). They must
return quickly and must not call blocking methods of the client or its sessions
(``send``, ``history``, ``leave``, ``ping``, ``close``...): those raise RuntimeError
there, because in C they would deadlock. Hand work to another thread (e.g. a
queue.Queue, or an AsyncSession's stream) instead. An exception raised by a callback is
logged on the ``momento_im`` logger and otherwise ignored; it never reaches the library.
"""

from __future__ import annotations

import asyncio
import ctypes
import atexit
import contextlib
import enum
import logging
import threading
import weakref
from ctypes import POINTER, byref, c_void_p, create_string_buffer, string_at
from dataclasses import dataclass, field
from typing import (Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar, Union,
                    cast)

from . import _ffi
from ._aio import AsyncSession, MessageStream, UpdateStream
from ._ffi import lib

__all__ = [
    "Client", "Session", "AsyncSession", "MessageStream", "Message", "MessageKind",
    "SubscriptionState", "MomentoIMError", "InvalidArgumentError", "NotFoundError",
    "AlreadyExistsError", "PermissionDeniedError", "UnauthenticatedError",
    "DeadlineExceededError", "UnavailableError", "version", "enable_library_logging",
    "Member", "PresenceChange",
    "direct_chat_id",
    "UpdateKind", "UpdateStream", "ReadMarker", "message_id_new",
]

__version__ = "0.3.0"

T = TypeVar("T")
StrOrBytes = Union[str, bytes]
OnMessage = Callable[["Message"], Any]
OnEvent = Callable[["SubscriptionState", str, str], Any]
OnSendResult = Callable[[str, str, str], Any]
OnPresence = Callable[["PresenceChange", "Member"], Any]
# The kind is an int only for a kind newer than this binding.
OnUpdate = Callable[[Union["UpdateKind", int], "Message"], Any]

_log = logging.getLogger("momento_im")
_local = threading.local()


def version() -> str:
    """Version of the loaded C library ("MAJOR.MINOR.PATCH")."""
    return str(lib.mim_version().decode())


# ---- errors ----

class MomentoIMError(Exception):
    """A libmomento-im call failed.

    status_name: the C status name, e.g. "MIM_ERR_PERMISSION_DENIED";
    detail: the library's detail for the failed call ("" when none);
    status: the numeric mim_status.
    """

    def __init__(self, status_name: str, detail: str = "", status: Optional[int] = None):
        super().__init__(status_name, detail)
        self.status_name = status_name
        self.detail = detail
        self.status = status

    def __str__(self) -> str:
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


_ERROR_CLASSES: Dict[int, type] = {
    1: InvalidArgumentError, 2: NotFoundError, 3: AlreadyExistsError,
    4: PermissionDeniedError, 5: UnauthenticatedError, 7: DeadlineExceededError,
    8: UnavailableError}


def _check(status: int) -> None:
    """Raises for a failed status. Call right after the C call, on the same thread:
    the detail belongs to the calling thread until its next library call."""
    if status == 0:
        return
    detail = lib.mim_last_error_detail()  # first: mim_status_name is a library call too
    name = lib.mim_status_name(status).decode()
    detail = detail.decode("utf-8", "replace") if detail else ""
    raise _ERROR_CLASSES.get(status, MomentoIMError)(name, detail, status)


def _invalid(detail: str) -> InvalidArgumentError:
    return InvalidArgumentError("MIM_ERR_INVALID_ARGUMENT", detail, 1)


def _b(value: Optional[StrOrBytes], what: str) -> Optional[bytes]:
    """str -> UTF-8 bytes for a C string; None stays NULL. C strings end at the first
    NUL, so a NUL inside would silently cut the value: refuse it."""
    if value is None:
        return None
    data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if b"\0" in data:
        raise _invalid("%s contains a NUL character" % what)
    return data


def _raw(value: StrOrBytes, what: str) -> bytes:
    """A byte string passed with its length (NUL allowed): str is UTF-8."""
    if value is None:
        raise _invalid("%s is None" % what)
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _bytes(b: _ffi.Bytes) -> bytes:
    return string_at(b.data, b.len) if b.data and b.len else b""


# ---- callback-thread guard ----

def _in_callback() -> bool:
    return getattr(_local, "in_callback", False)


def _refuse_in_callback(what: str) -> None:
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


class UpdateKind(enum.IntEnum):
    """What changed in a message reported through join(on_update=...)."""
    EDITED = _ffi.UPDATE_EDITED  # its author replaced the text
    DELETED = _ffi.UPDATE_DELETED  # its author deleted it
    REACTIONS = _ffi.UPDATE_REACTIONS  # a reaction was added or removed


@dataclass(frozen=True)
class Message:
    """One chat message, copied out of the C struct (safe to keep). Its current state:
    edits, deletion and reactions received so far are folded in (docs/PROTOCOL.md 4)."""
    id: str
    chat: str
    sender: str  # "from": the display name the sender claims
    publisher_id: str  # trusted token id of the publisher (live only; "" otherwise)
    text: str  # current text ("" once deleted)
    timestamp_ms: int  # sender's clock, epoch ms
    sequence: int  # topic sequence number (0 for history)
    from_history: bool
    kind: Union[MessageKind, int]  # int: a kind newer than this binding
    raw: bytes = field(repr=False)
    # since 0.3.0
    version: int = 0  # envelope version: 1 or 2; 0 for foreign values
    # Who wrote it: moderated: the trusted token id (sender_trusted True); client-only:
    # the user id the sender claims (anyone may claim any); version 1: `sender`.
    sender_id: str = ""
    sender_trusted: bool = False
    mine: bool = False  # sent by this session
    reply_to: str = ""  # id of the message this one replies to, or ""
    edited: bool = False  # text is the author's latest edit
    edited_ms: int = 0  # the edit's timestamp (sender's clock), 0 when not edited
    deleted: bool = False  # deleted by its author: text is "", no reactions
    # key (e.g. "+1") -> user ids who reacted with it, in order of arrival; keys in order
    # of their first reaction. Not part of the hash (a dict is not hashable).
    reactions: Dict[str, Tuple[str, ...]] = field(default_factory=dict, hash=False)


def _s(value: Optional[bytes]) -> str:
    return value.decode("utf-8", "replace") if value else ""


def _kind(value: int) -> Union[MessageKind, int]:
    try:
        return MessageKind(value)
    except ValueError:  # a newer library with a kind this binding does not know
        return value


def _copy_reactions(m: _ffi.Message) -> Dict[str, Tuple[str, ...]]:
    out: Dict[str, Tuple[str, ...]] = {}
    if not m.reactions or not m.n_reactions:
        return out
    reactions = ctypes.cast(m.reactions, POINTER(_ffi.Reaction))
    for i in range(m.n_reactions):
        r = reactions[i]
        out[_s(r.key)] = tuple(_s(r.users[j]) for j in range(r.count))
    return out


def _copy_message(m: _ffi.Message) -> Message:
    """Copies every field: the C pointers die when the callback returns."""
    raw = string_at(m.raw, m.raw_len) if m.raw and m.raw_len else b""
    return Message(id=_s(m.id), chat=_s(m.chat), sender=_s(m.from_),
                   publisher_id=_s(m.publisher_id), text=_s(m.text),
                   timestamp_ms=m.timestamp_ms, sequence=m.sequence,
                   from_history=bool(m.from_history), kind=_kind(m.kind), raw=raw,
                   version=m.version, sender_id=_s(m.sender_id),
                   sender_trusted=bool(m.sender_trusted), mine=bool(m.mine),
                   reply_to=_s(m.reply_to), edited=bool(m.edited), edited_ms=m.edited_ms,
                   deleted=bool(m.deleted), reactions=_copy_reactions(m))


def _update_kind(value: int) -> Union[UpdateKind, int]:
    try:
        return UpdateKind(value)
    except ValueError:  # a newer library with a change this binding does not know
        return value


def message_id_new() -> str:
    """A fresh random message id (32 lowercase hex digits) for Session.send(id=...): an
    application that records it before sending knows the message when it arrives.
    Local, non-blocking."""
    out = create_string_buffer(_ffi.MESSAGE_ID_SIZE)
    _check(lib.mim_message_id_new(out))
    return out.value.decode()


# ---- read markers ----

@dataclass(frozen=True)
class ReadMarker:
    """One member's read marker (docs/PROTOCOL.md 6): "has read everything up to and
    including message_id". A claim in both modes: any member may write any marker."""
    user_id: str  # the member's user id (as claimed)
    message_id: str
    read_at_ms: int  # the member's clock when it marked, epoch ms


# ---- typing and presence ----

class PresenceChange(enum.IntEnum):
    JOINED = 0
    LEFT = 1  # said so, or not heard of within its expiry
    TYPING = 2
    STOPPED_TYPING = 3  # said so, or no refresh for 6 s


@dataclass(frozen=True)
class Member:
    """A chat member as presence signals show it (copied: safe to keep)."""
    user_id: str  # moderated: trusted token id; client-only: claimed user id
    display_name: str
    trusted: bool
    typing: bool
    last_seen_ms: int  # receiver's clock, epoch ms


def _copy_member(m: _ffi.Member) -> Member:
    return Member(user_id=_s(m.user_id), display_name=_s(m.display_name),
                  trusted=bool(m.trusted), typing=bool(m.typing),
                  last_seen_ms=m.last_seen_ms)


# ---- handles ----

class _Handle:
    """A C handle shared between threads: calls borrow it, and retire() (leave/close)
    waits until no call is using it before the C object is freed. Calls abandoned by an
    interrupted caller (see _call) are counted apart: close/leave must not wait for them
    in the caller's thread, since they may run until their deadline."""

    def __init__(self, what: str):
        self.cv = threading.Condition()
        self.value: Optional[int] = None
        self.users = 0
        self.abandoned = 0
        self.what = what

    @contextlib.contextmanager
    def use(self) -> Iterator[int]:
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

    def detach(self) -> Optional[int]:
        """Takes the handle away (None when already taken): no new call can start."""
        with self.cv:
            value, self.value = self.value, None
        return value

    def wait_idle(self) -> None:
        with self.cv:
            self.cv.wait_for(lambda: self.users == 0)

    def retire(self) -> Optional[int]:
        """Takes the handle away, after the last user."""
        value = self.detach()
        self.wait_idle()
        return value

    def add_abandoned(self, n: int) -> None:
        with self.cv:
            self.abandoned += n


# ---- interruptible blocking calls ----

# How often the main thread wakes while a C call runs elsewhere. Signals interrupt the
# wait on their own on POSIX; the slice bounds the delay where they would not.
_WAIT_SLICE_S = 0.05


class _Call:
    """One blocking C call run on a helper thread for the main thread."""

    def __init__(self, fn: Callable[[], Any], handle: _Handle,
                 on_abandoned: Optional[Callable[[Any], None]]):
        self.fn = fn
        self.handle = handle
        self.on_abandoned = on_abandoned
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.finished = False
        self.abandoned = False
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result = self.fn()  # _check runs in here: the detail is per thread
        except BaseException as exc:  # handed to the waiting thread
            self.error = exc
        with self.lock:
            self.finished = True
            abandoned = self.abandoned
        self.done.set()
        if abandoned:
            try:
                if self.on_abandoned is not None and self.error is None:
                    self.on_abandoned(self.result)
            except BaseException:
                _log.exception("momento_im: cleaning up an interrupted call failed")
            finally:
                self.handle.add_abandoned(-1)

    def abandon(self) -> None:
        """The caller gives up (KeyboardInterrupt...): the result will be dropped."""
        with self.lock:
            if self.finished:
                return
            self.abandoned = True
            self.handle.add_abandoned(1)


def _call(handle: _Handle, fn: Callable[[], T],
          on_abandoned: Optional[Callable[[T], None]] = None) -> T:
    """Runs fn (a C call that may block until its deadline) so that Ctrl-C interrupts
    the caller at once. Python delivers signals to the main thread only, so other
    threads call fn directly. In the main thread fn runs on a helper thread while this
    one waits; when the wait is interrupted, the C call (which cannot be cancelled)
    goes on, and on_abandoned gets its result to release what it made."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    call = _Call(fn, handle, on_abandoned)
    try:
        threading.Thread(target=call.run, name="momento_im call", daemon=True).start()
        while not call.done.wait(_WAIT_SLICE_S):
            pass
    except BaseException:
        call.abandon()
        raise
    if call.error is not None:
        raise call.error
    return cast(T, call.result)


# ---- sessions ----

class _SessionState:
    """What the C side may reach: the session handle and the ctypes callback objects.
    The client holds it until mim_leave returned, so the callbacks cannot be garbage
    collected while the library may call them."""

    def __init__(self, on_message: OnMessage, on_event: Optional[OnEvent],
                 on_send_result: Optional[OnSendResult] = None):
        self.handle = _Handle("session has left the chat")
        self.user_on_message: Optional[OnMessage] = on_message
        self.user_on_event = on_event
        self.user_on_send_result = on_send_result
        self.on_left: Optional[Callable[[], None]] = None  # after mim_leave returned
        self.left = threading.Event()
        self.c_on_message: Any = _ffi.ON_MESSAGE(self._on_message)
        self.c_on_event: Any = _ffi.ON_EVENT(self._on_event) if on_event else None
        self.c_on_send_result: Any = (_ffi.ON_SEND_RESULT(self._on_send_result)
                                      if on_send_result else None)
        self.user_on_presence: Optional[OnPresence] = None  # set_on_presence
        self.c_on_presence: Any = None
        self.user_on_update: Optional[OnUpdate] = None  # set_on_update
        self.c_on_update: Any = None

    def _on_message(self, _session: int, msg: Any, _user: int) -> None:
        _local.in_callback = True
        try:
            fn = self.user_on_message
            if fn is not None:
                fn(_copy_message(msg.contents))
        except BaseException:  # never let anything unwind into C
            _log.exception("momento_im: on_message raised; ignored")
        finally:
            _local.in_callback = False

    def _on_event(self, _session: int, state: int, status: int, detail: Optional[bytes],
                  _user: int) -> None:
        _local.in_callback = True
        try:
            fn = self.user_on_event
            if fn is not None:
                name = lib.mim_status_name(status).decode() if status else "MIM_OK"
                fn(SubscriptionState(state), name, _s(detail))
        except BaseException:
            _log.exception("momento_im: on_event raised; ignored")
        finally:
            _local.in_callback = False

    def _on_send_result(self, _session: int, message_id: Optional[bytes], status: int,
                        detail: Optional[bytes], _user: int) -> None:
        # Also runs in the thread of leave() or send(): restore that thread's flag.
        was = _in_callback()
        _local.in_callback = True
        try:
            fn = self.user_on_send_result
            if fn is not None:
                name = lib.mim_status_name(status).decode() if status else "MIM_OK"
                fn(_s(message_id), name, _s(detail))
        except BaseException:
            _log.exception("momento_im: on_send_result raised; ignored")
        finally:
            _local.in_callback = was

    def set_on_presence(self, on_presence: Optional[OnPresence]) -> None:
        self.user_on_presence = on_presence
        self.c_on_presence = _ffi.ON_PRESENCE(self._on_presence) if on_presence else None

    def _on_presence(self, _session: int, change: int, member: Any, _user: int) -> None:
        _local.in_callback = True
        try:
            fn = self.user_on_presence
            if fn is not None:
                fn(PresenceChange(change), _copy_member(member.contents))
        except BaseException:
            _log.exception("momento_im: on_presence raised; ignored")
        finally:
            _local.in_callback = False

    def set_on_update(self, on_update: Optional[OnUpdate]) -> None:
        self.user_on_update = on_update
        self.c_on_update = _ffi.ON_UPDATE(self._on_update) if on_update else None

    def _on_update(self, _session: int, current: Any, what: int, _user: int) -> None:
        _local.in_callback = True
        try:
            fn = self.user_on_update
            if fn is not None:
                fn(_update_kind(what), _copy_message(current.contents))
        except BaseException:
            _log.exception("momento_im: on_update raised; ignored")
        finally:
            _local.in_callback = False

    def release(self) -> None:
        self.user_on_presence = self.c_on_presence = None
        self.user_on_update = self.c_on_update = None
        self.user_on_message = self.user_on_event = self.user_on_send_result = None
        self.c_on_message = self.c_on_event = self.c_on_send_result = None
        on_left, self.on_left = self.on_left, None
        if on_left is not None:
            on_left()


class Session:
    """A joined chat (from Client.join). Use as a context manager or call leave().

    Methods may be called from any thread except the library's event thread (the
    callbacks). Errors: MomentoIMError subclasses; RuntimeError once left."""

    def __init__(self, client: Client, state: _SessionState, cache: str, chat: str):
        self._client = client
        self._state = state
        self.cache = cache
        self.chat = chat

    def history(self, last_n: int = 0) -> List[Message]:
        """The last `last_n` messages of the chat's list (0 = all), oldest first.
        Fetched from the server (blocking; Ctrl-C interrupts it)."""
        _refuse_in_callback("Session.history")
        if last_n < 0:
            raise _invalid("last_n must be >= 0")
        handle = self._state.handle

        def fetch() -> List[Message]:
            out = POINTER(_ffi.MessageList)()
            with handle.use() as h:
                _check(lib.mim_history(h, last_n, byref(out)))
            try:
                lst = out.contents
                return [_copy_message(lst.messages[i]) for i in range(lst.count)]
            finally:
                lib.mim_message_list_free(out)

        return _call(handle, fetch)

    def send(self, text: StrOrBytes, reply_to: Optional[StrOrBytes] = None,
             id: Optional[StrOrBytes] = None) -> str:
        """Sends text; returns the message's id. reply_to: id of the message this one
        replies to. id: the message's id (from message_id_new(); 1..32 bytes unique in
        the chat), None = a new one. The message comes back to this session with mine
        True. Waits at most MIM_SEND_WAIT_MS (50 ms) for the first attempt, then the
        outbox goes on (see on_send_result)."""
        _refuse_in_callback("Session.send")
        data = _b(text, "text")
        if data is None:
            raise _invalid("text is None")
        opts = None
        if reply_to is not None or id is not None:
            opts = _ffi.SendOptions()
            opts.id, opts.reply_to = _b(id, "id"), _b(reply_to, "reply_to")
        id_out = create_string_buffer(_ffi.MESSAGE_ID_SIZE)
        with self._state.handle.use() as h:
            _check(lib.mim_send_with_options(h, data, byref(opts) if opts else None, id_out))
        return id_out.value.decode()

    def _event(self, what: str, fn: Callable[..., int], *args: Any) -> str:
        """Sends an event (like send: the outbox, on_send_result); returns its id."""
        _refuse_in_callback(what)
        id_out = create_string_buffer(_ffi.MESSAGE_ID_SIZE)
        with self._state.handle.use() as h:
            _check(fn(h, *args, id_out))
        return id_out.value.decode()

    def edit(self, message_id: StrOrBytes, text: StrOrBytes) -> str:
        """Replaces the text of message_id, a message of this session's user; every
        reader's on_update reports it (UpdateKind.EDITED). Returns the event's id.
        PermissionDeniedError, without sending, for a message this session received
        from another sender (others' edits are ignored by readers anyway)."""
        new = _b(text, "text")
        if new is None:
            raise _invalid("text is None")
        return self._event("Session.edit", lib.mim_edit, _b(message_id, "message_id"), new)

    def delete(self, message_id: StrOrBytes) -> str:
        """Deletes message_id, a message of this session's user: readers show it with
        deleted True and text "" (UpdateKind.DELETED). Returns the event's id. Errors as
        for edit."""
        return self._event("Session.delete", lib.mim_delete, _b(message_id, "message_id"))

    def react(self, message_id: StrOrBytes, key: StrOrBytes, on: bool = True) -> str:
        """Adds (on True) or removes this user's reaction `key` (1..64 bytes, e.g. "+1"
        or an emoji) on message_id; anyone may react (UpdateKind.REACTIONS, only when
        it changes something). Returns the event's id."""
        return self._event("Session.react", lib.mim_react, _b(message_id, "message_id"),
                           _b(key, "key"), bool(on))

    def mark_read(self, message_id: StrOrBytes) -> None:
        """Marks everything up to and including message_id as read by this session's
        user (join's user_id, else display_name): one DictionarySet of its field in the
        dictionary "<chat>-read" (the token needs read-write on it). Blocking; Ctrl-C
        interrupts it."""
        _refuse_in_callback("Session.mark_read")
        data = _b(message_id, "message_id")
        handle = self._state.handle

        def mark() -> None:
            with handle.use() as h:
                _check(lib.mim_mark_read(h, data))

        _call(handle, mark)

    def unread_count(self) -> Tuple[int, bool]:
        """(count, exact): the chat messages this session delivered after the one its
        user's marker names, without its own user's and deleted ones. exact is False
        when the marker's message is not among the last 1024 delivered (or there is no
        marker): every such message delivered counts then. The first call fetches the
        marker (one DictionaryGet, blocking; from a callback MomentoIMError
        MIM_ERR_FAILED_PRECONDITION); after it, or after mark_read, it is local and free,
        and may be called from callbacks too."""
        count, exact = ctypes.c_size_t(), ctypes.c_bool()
        handle = self._state.handle

        def get() -> Tuple[int, bool]:
            with handle.use() as h:
                _check(lib.mim_unread_count(h, byref(count), byref(exact)))
            return count.value, bool(exact.value)

        return _call(handle, get)

    def read_markers(self) -> List[ReadMarker]:
        """Every member's read marker, in no particular order (one DictionaryFetch of
        "<chat>-read"; values that are not markers are skipped). Blocking; Ctrl-C
        interrupts it."""
        _refuse_in_callback("Session.read_markers")
        handle = self._state.handle

        def fetch() -> List[ReadMarker]:
            out = POINTER(_ffi.ReadMarkerList)()
            with handle.use() as h:
                _check(lib.mim_read_markers(h, byref(out)))
            try:
                lst = out.contents
                return [ReadMarker(user_id=_s(r.user_id), message_id=_s(r.message_id),
                                   read_at_ms=r.read_at_ms)
                        for r in (lst.markers[i] for i in range(lst.count))]
            finally:
                lib.mim_read_marker_list_free(out)

        return _call(handle, fetch)

    def remove_message(self, message_id: StrOrBytes) -> None:
        """Removes a message from the history (needs write permission on the list)."""
        _refuse_in_callback("Session.remove_message")
        data = _b(message_id, "message_id")
        handle = self._state.handle

        def remove() -> None:
            with handle.use() as h:
                _check(lib.mim_remove_message(h, data))

        _call(handle, remove)

    def set_typing(self, typing: bool = True) -> None:
        """Says the user is typing (call it per keystroke) or stopped (mim_set_typing:
        never blocks; rate-limited; works with presence on or off)."""
        with self._state.handle.use() as h:
            _check(lib.mim_set_typing(h, bool(typing)))

    def members(self) -> List[Member]:
        """Who is here now, without this session (local, no server call). Needs
        join(on_presence=...); else MomentoIMError (MIM_ERR_FAILED_PRECONDITION)."""
        out = POINTER(_ffi.MemberList)()
        with self._state.handle.use() as h:
            _check(lib.mim_members(h, byref(out)))
        try:
            lst = out.contents
            return [_copy_member(lst.members[i]) for i in range(lst.count)]
        finally:
            lib.mim_member_list_free(out)

    def leave(self) -> None:
        """Unsubscribes and frees the session; no callback runs after it returns.
        Idempotent. Must not be called from the session's own callbacks. When a call
        on it was interrupted (Ctrl-C) and still runs, the rest of the leave happens on
        a background thread once that call ended; callbacks stop at once."""
        _refuse_in_callback("Session.leave")
        self._client._leave(self._state)

    @property
    def joined(self) -> bool:
        return self._state.handle.value is not None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()

    def __del__(self) -> None:
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

_TLS: Dict[str, int] = {"auto": _ffi.TLS_AUTO, "on": _ffi.TLS_ON, "off": _ffi.TLS_OFF}
_MODES: Dict[str, int] = {
    "client": _ffi.CHAT_CLIENT_ONLY, "client_only": _ffi.CHAT_CLIENT_ONLY,
    "moderated": _ffi.CHAT_MODERATED}
_live_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def direct_chat_id(user_a: StrOrBytes, user_b: StrOrBytes) -> str:
    """The chat id of the direct chat of two users (docs/PROTOCOL.md, section 7): the
    same for both whatever the order, revealing neither name. Local, no server call.
    Raises InvalidArgumentError for an id that is empty, over 128 bytes of UTF-8, or
    not UTF-8."""
    out = create_string_buffer(_ffi.DIRECT_CHAT_ID_SIZE)
    _check(lib.mim_direct_chat_id(_b(user_a, "user_a"), _b(user_b, "user_b"), out))
    return out.value.decode()


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

    def __init__(self, api_key: Optional[str] = None, cache_host: Optional[str] = None,
                 control_host: Optional[str] = None, token_host: Optional[str] = None,
                 tls: str = "auto", ca_file: Optional[str] = None,
                 deadline_ms: Optional[int] = None, ttl_ms: Optional[int] = None,
                 endpoint: Optional[str] = None, token_url: Optional[str] = None,
                 token_refresh_margin_ms: int = 0):
        self._handle = _Handle("client is closed")
        self._lock = threading.Lock()
        self._sessions: Dict[int, _SessionState] = {}
        if tls not in _TLS:
            raise _invalid("tls must be 'auto', 'on' or 'off'")
        # Not mim_client_options_init: a newer library's would fill its own, larger
        # struct. The mirror is zeroed with its struct_size set: the C defaults.
        opts = _ffi.ClientOptions()
        opts.log_level = _ffi.LOG_INFO
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

    def _blocking(self, fn: Callable[[int], Any]) -> None:
        """Runs one blocking C call on the client handle, interruptible by Ctrl-C."""
        handle = self._handle

        def run() -> None:
            with handle.use() as h:
                _check(fn(h))

        _call(handle, run)

    def ping(self) -> None:
        """Round trip to the cache host (blocking; Ctrl-C interrupts it)."""
        _refuse_in_callback("Client.ping")
        self._blocking(lib.mim_client_ping)

    def create_cache(self, name: StrOrBytes) -> None:
        """Creates a cache (needs a super-user key). AlreadyExistsError if it exists."""
        _refuse_in_callback("Client.create_cache")
        data = _b(name, "name")
        self._blocking(lambda h: lib.mim_cache_create(h, data))

    def delete_cache(self, name: StrOrBytes) -> None:
        """Deletes a cache and everything in it. NotFoundError if there is none."""
        _refuse_in_callback("Client.delete_cache")
        data = _b(name, "name")
        self._blocking(lambda h: lib.mim_cache_delete(h, data))

    def join(self, cache: str, chat: str, on_message: OnMessage,
             display_name: Optional[str] = None, mode: str = "client",
             history_cap: int = 100, history_ttl_ms: int = 0,
             on_event: Optional[OnEvent] = None,
             on_send_result: Optional[OnSendResult] = None, outbox_limit: int = 0,
             flush_timeout_ms: int = 0, send_timeout_ms: int = 0,
             on_presence: Optional[OnPresence] = None, presence_heartbeat_ms: int = 0,
             user_id: Optional[str] = None,
             on_update: Optional[OnUpdate] = None) -> Session:
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
        a message is retried; 0 = 60000) tune it. Returns a Session.

        Presence: on_presence(PresenceChange, Member), if given, turns presence on (the
        session announces itself, sends heartbeats every presence_heartbeat_ms, 0 =
        30000) and sees who joins, leaves and types (Session.members() lists who is
        here). user_id: who this user is (None = display_name).

        Updates: on_update(UpdateKind, Message), if given, sees each later change (edit,
        deletion, reactions) of a message already delivered, once per change, with the
        message's new state. on_message's thread rules apply to on_presence and
        on_update too.

        Blocking until the history was delivered; Ctrl-C interrupts it (a join that
        still succeeds afterwards is left again at once)."""
        _refuse_in_callback("Client.join")
        if not callable(on_message):
            raise _invalid("on_message must be callable")
        if mode not in _MODES:
            raise _invalid("mode must be 'client' or 'moderated'")
        if on_send_result is not None and not callable(on_send_result):
            raise _invalid("on_send_result must be callable")
        if on_presence is not None and not callable(on_presence):
            raise _invalid("on_presence must be callable")
        if on_update is not None and not callable(on_update):
            raise _invalid("on_update must be callable")
        for what, value in (("history_cap", history_cap), ("outbox_limit", outbox_limit),
                            ("flush_timeout_ms", flush_timeout_ms),
                            ("send_timeout_ms", send_timeout_ms),
                            ("presence_heartbeat_ms", presence_heartbeat_ms)):
            if not 0 <= value < 2 ** 32:
                raise _invalid("%s out of range" % what)
        state = _SessionState(on_message, on_event, on_send_result)
        opts = _ffi.JoinOptions()  # zero, struct_size set (see ClientOptions above)
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
        state.set_on_presence(on_presence)
        if state.c_on_presence:
            opts.on_presence = ctypes.cast(state.c_on_presence, c_void_p)
        opts.presence_heartbeat_ms = presence_heartbeat_ms
        state.set_on_update(on_update)
        if state.c_on_update:
            opts.on_update = ctypes.cast(state.c_on_update, c_void_p)
        uid = _b(user_id, "user_id")
        opts.user_id = uid
        cache_b, chat_b = _b(cache, "cache"), _b(chat, "chat")
        handle = self._handle

        def run() -> _SessionState:
            out = c_void_p()
            # close() waits for this block, then leaves the session registered here.
            with handle.use() as h:
                status = lib.mim_join(h, cache_b, chat_b, byref(opts), state.c_on_message,
                                      None, byref(out))
                _check(status)
                state.handle.value = out.value
                with self._lock:
                    self._sessions[id(state)] = state
            return state

        _call(handle, run, on_abandoned=self._leave)
        return Session(self, state, cache, chat)

    async def join_async(self, cache: str, chat: str,
                         display_name: Optional[str] = None, mode: str = "client",
                         **options: Any) -> AsyncSession:
        """join() for asyncio: runs in the default executor and returns an
        AsyncSession, whose messages() stream gets every message (history first)
        and whose updates() stream gets every update (UpdateKind, Message), through
        loop.call_soon_threadsafe. `options` are join()'s keyword arguments except
        on_message and on_update (history_cap, on_event, on_send_result, ...); on_event,
        on_send_result and on_presence still run on the library's event thread."""
        for taken in ("on_message", "on_update"):
            if taken in options:
                raise _invalid("join_async delivers %s to AsyncSession's streams; use "
                               "join() for a callback" % taken[3:])
        loop = asyncio.get_running_loop()
        stream = MessageStream(loop)
        updates = UpdateStream(loop)

        def ended() -> None:
            stream.end()
            updates.end()

        def run() -> Session:
            session = self.join(cache, chat, stream.deliver, display_name=display_name,
                                mode=mode, on_update=updates.deliver_update, **options)
            session._state.on_left = ended
            return session

        return AsyncSession(await loop.run_in_executor(None, run), stream, updates)

    async def ping_async(self) -> None:
        """ping() in the default executor."""
        await asyncio.get_running_loop().run_in_executor(None, self.ping)

    def _leave(self, state: _SessionState) -> None:
        """Leaves a session; in the background when a call on it was abandoned."""
        h = state.handle.detach()
        if h is None:  # left already, or another thread is leaving it
            if not state.handle.abandoned:
                state.left.wait()
            return
        if state.handle.abandoned:
            state.user_on_message = state.user_on_event = None  # nothing more shown
            threading.Thread(target=self._finish_leave, args=(state, h), daemon=True,
                             name="momento_im leave").start()
        else:
            self._finish_leave(state, h)

    def _finish_leave(self, state: _SessionState, h: int) -> None:
        state.handle.wait_idle()
        lib.mim_leave(h)
        with self._lock:
            self._sessions.pop(id(state), None)
        state.release()  # only now: no callback can run after mim_leave returned
        state.left.set()

    def _mint(self, fn: Any, cache: str, chat: str, valid_for_s: int,
              token_id: Optional[str]) -> str:
        _refuse_in_callback("Client.mint_*")
        if not 0 < valid_for_s < 2 ** 32:
            raise _invalid("valid_for_s must be > 0")
        args = (_b(cache, "cache"), _b(chat, "chat"), int(valid_for_s),
                _b(token_id, "token_id"))
        return self._mint_with(fn, args)

    def _mint_with(self, fn: Any, args: Any) -> str:
        handle = self._handle

        def run() -> str:
            out = POINTER(_ffi.DisposableToken)()
            with handle.use() as h:
                _check(fn(h, *args, byref(out)))
            try:
                return str(out.contents.credential.decode())
            finally:
                lib.mim_disposable_token_free(out)

        return _call(handle, run)

    def mint_client_only(self, cache: str, chat: str, valid_for_s: int = 3600,
                         token_id: Optional[str] = None) -> str:
        """A disposable token for the client-only pattern (readwrite on list `chat`,
        publish/subscribe on topic `chat`); returns its credential string."""
        return self._mint(lib.mim_token_generate_client_only, cache, chat, valid_for_s,
                          token_id)

    def mint_moderated(self, cache: str, chat: str, valid_for_s: int = 3600,
                       token_id: Optional[str] = None) -> str:
        """A disposable token for the moderated pattern (read on list `chat`, publish
        on topic "<chat>-input", subscribe on topic `chat`); returns its credential."""
        return self._mint(lib.mim_token_generate_moderated, cache, chat, valid_for_s,
                          token_id)

    def mint_direct(self, cache: str, user_id: str, other_user_id: str,
                    mode: str = "client", valid_for_s: int = 3600) -> str:
        """user_id's token for its direct chat with other_user_id (the chat
        direct_chat_id(user_id, other_user_id) names): the seed token of mode ("client"
        or "moderated") for that chat, with user_id as its token id. A real token
        vendor must authenticate user_id first. Returns the credential string."""
        _refuse_in_callback("Client.mint_direct")
        if mode not in _MODES:
            raise _invalid("mode must be 'client' or 'moderated'")
        if not 0 < valid_for_s < 2 ** 32:
            raise _invalid("valid_for_s must be > 0")
        args = (_b(cache, "cache"), _b(user_id, "user_id"), _b(other_user_id, "other_user_id"),
                _MODES[mode], int(valid_for_s))
        return self._mint_with(lib.mim_token_generate_direct, args)

    # ---- dictionaries (<momento/dictionary.h>) ----

    def dictionary_set_field(self, cache: str, dictionary: str, field: StrOrBytes,
                             value: StrOrBytes, ttl_ms: int = 0,
                             refresh_ttl: bool = False) -> None:
        """Sets one field of a Momento dictionary to value (bytes; str is UTF-8),
        creating the dictionary when missing. ttl_ms: its time to live (0 = the
        client's ttl_ms); refresh_ttl: also reset the TTL of an existing dictionary.
        One DictionarySetField call (blocking; Ctrl-C interrupts it)."""
        _refuse_in_callback("Client.dictionary_set_field")
        if not 0 <= ttl_ms < 2 ** 64:
            raise _invalid("ttl_ms out of range")
        f, v = _raw(field, "field"), _raw(value, "value")
        names = (_b(cache, "cache"), _b(dictionary, "dictionary"))
        opts = _ffi.DictionaryWriteOptions()
        opts.ttl_ms, opts.refresh_ttl = int(ttl_ms), bool(refresh_ttl)
        self._blocking(lambda h: lib.mim_dictionary_set_field(
            h, *names, f, len(f), v, len(v), byref(opts)))

    def dictionary_get_field(self, cache: str, dictionary: str,
                             field: StrOrBytes) -> Optional[bytes]:
        """The value of one field, or None when the dictionary or the field is missing.
        One DictionaryGetField call (blocking; Ctrl-C interrupts it)."""
        _refuse_in_callback("Client.dictionary_get_field")
        f = _raw(field, "field")
        names = (_b(cache, "cache"), _b(dictionary, "dictionary"))
        handle = self._handle

        def get() -> Optional[bytes]:
            value, size, found = c_void_p(), ctypes.c_size_t(), ctypes.c_bool()
            with handle.use() as h:
                _check(lib.mim_dictionary_get_field(h, *names, f, len(f), byref(value),
                                                    byref(size), byref(found)))
            try:
                if not found.value:
                    return None
                return string_at(value.value, size.value) if value.value else b""
            finally:
                _ffi.libc.free(value)

        return _call(handle, get)

    def dictionary_fetch(self, cache: str, dictionary: str) -> Optional[Dict[bytes, bytes]]:
        """Every field of a dictionary as {field: value}, or None when it does not exist.
        One DictionaryFetch call (blocking; Ctrl-C interrupts it)."""
        _refuse_in_callback("Client.dictionary_fetch")
        names = (_b(cache, "cache"), _b(dictionary, "dictionary"))
        handle = self._handle

        def fetch() -> Optional[Dict[bytes, bytes]]:
            out = POINTER(_ffi.DictionaryEntries)()
            with handle.use() as h:
                _check(lib.mim_dictionary_fetch(h, *names, byref(out)))
            try:
                d = out.contents
                if not d.found:
                    return None
                return {_bytes(e.field): _bytes(e.value)
                        for e in (d.entries[i] for i in range(d.count))}
            finally:
                lib.mim_dictionary_entries_free(out)

        return _call(handle, fetch)

    def close(self) -> None:
        """Leaves every session still joined, then frees the client. Idempotent. When a
        call was interrupted (Ctrl-C) and still runs in C, returns at once: callbacks
        stop, and the leaves and the free happen on a background thread after it."""
        _refuse_in_callback("Client.close")
        self._close()

    def _abandoned_calls(self) -> bool:
        with self._lock:
            states = list(self._sessions.values())
        return bool(self._handle.abandoned or any(s.handle.abandoned for s in states))

    def _close(self) -> None:
        h = self._handle.detach()  # no new call starts
        if not self._abandoned_calls():
            self._finish_close(h)
            return
        with self._lock:
            for state in self._sessions.values():
                state.user_on_message = state.user_on_event = None
        threading.Thread(target=self._finish_close, args=(h,), daemon=True,
                         name="momento_im close").start()

    def _finish_close(self, h: Optional[int]) -> None:
        self._handle.wait_idle()  # a join still running registers its session first
        with self._lock:
            states = list(self._sessions.values())
        for state in states:
            self._leave(state)
        for state in states:
            state.left.wait()
        if h is not None:
            lib.mim_client_free(h)

    def _close_at_exit(self) -> None:
        """Interpreter exit must not wait for interrupted calls (up to their deadline):
        leave what can be left so no callback runs during finalization, and let the
        process exit reclaim the rest."""
        if not self._abandoned_calls():
            self._close()
            return
        self._handle.detach()
        with self._lock:
            states = list(self._sessions.values())
        for state in states:
            state.user_on_message = state.user_on_event = state.user_on_send_result = None
            if not state.handle.abandoned:
                self._leave(state)

    @property
    def closed(self) -> bool:
        return self._handle.value is None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
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
_NO_LOG_FN = _ffi.LOG_FN()  # type: ignore[call-overload]  # NULL: forwarding off
_log_fn: Any = None  # keeps the installed ctypes callback alive


def _forward_log(level: int, message: Optional[bytes], _user: int) -> None:
    try:
        _lib_log.log(_LEVELS.get(level, logging.DEBUG), "%s", _s(message))
    except BaseException:
        pass


def enable_library_logging(level: Optional[int] = logging.INFO) -> None:
    """Routes the C library's log lines (process-wide) to the "momento_im.lib" logger.
    level: the most verbose Python level to forward. None turns forwarding off."""
    global _log_fn
    if level is None:
        lib.mim_set_log_callback(_NO_LOG_FN, 0, None)
        _log_fn = None
        return
    max_level = 4 if level <= logging.DEBUG else 3 if level <= logging.INFO else \
        2 if level <= logging.WARNING else 1
    fn = _ffi.LOG_FN(_forward_log)
    lib.mim_set_log_callback(fn, max_level, None)
    _log_fn = fn


@atexit.register
def _shutdown() -> None:
    """Before the interpreter goes away: no library thread may call into Python."""
    for client in list(_live_clients):
        try:
            client._close_at_exit()
        except Exception:  # best effort at exit
            pass
    lib.mim_set_log_callback(_NO_LOG_FN, 0, None)
