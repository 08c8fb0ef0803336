"""ctypes declarations of the libmomento-im C API (include/momento/*.h).

Every structure here mirrors its C definition field by field, in the same order and
with the same widths: C enums are ``c_int``, ``bool`` is ``c_bool``, ``size_t`` is
``c_size_t``. Pointers the library owns are declared ``c_void_p`` (or ``c_char_p`` for
strings, which ctypes copies into ``bytes`` on access). Keep this file in sync with the
headers; tests/test_momento_im.py compares the sizes and offsets with a compiled probe.
"""

import ctypes
import ctypes.util
import os
from typing import Any, List, Optional, Tuple
from ctypes import (CFUNCTYPE, POINTER, Structure, c_bool, c_char_p, c_int, c_int64,
                    c_size_t, c_uint32, c_uint64, c_void_p)

# Size of a message id buffer including its NUL (MIM_MESSAGE_ID_SIZE).
MESSAGE_ID_SIZE = 33
# Size of a direct chat id buffer including its NUL (MIM_DIRECT_CHAT_ID_SIZE).
DIRECT_CHAT_ID_SIZE = 36

# mim_tls_mode
TLS_AUTO, TLS_ON, TLS_OFF = 0, 1, 2
# mim_chat_mode
CHAT_CLIENT_ONLY, CHAT_MODERATED = 0, 1
# mim_message_kind
MESSAGE_CHAT, MESSAGE_FOREIGN = 0, 1
# mim_log_level
LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG = 1, 2, 3, 4

# void (*mim_log_fn)(mim_log_level level, const char *message, void *user)
LOG_FN = CFUNCTYPE(None, c_int, c_char_p, c_void_p)


class _Sized(Structure):
    """A struct of the struct_size convention (common.h): struct_size is set on creation."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.struct_size = ctypes.sizeof(self)


class ClientOptions(_Sized):
    """struct mim_client_options (client.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("api_key", c_char_p),
        ("credentials", c_void_p),  # const mim_credentials *
        ("token_url", c_char_p),
        ("token_refresh_margin_ms", c_int64),
        ("cache_host", c_char_p),
        ("control_host", c_char_p),
        ("token_host", c_char_p),
        ("tls", c_int),  # mim_tls_mode
        ("ca_file", c_char_p),
        ("default_deadline_ms", c_int64),
        ("default_ttl_ms", c_uint64),
        ("log_fn", LOG_FN),
        ("log_level", c_int),  # mim_log_level
        ("log_user", c_void_p),
        ("loop", c_void_p),  # const mim_loop_hooks *: NULL, the library's own thread
        ("max_topic_payload_bytes", c_size_t),  # 0 = 4096, hosted Momento's limit
    ]


class Message(Structure):
    """struct mim_message (im.h). Only valid during the callback / list lifetime."""
    _fields_ = [
        ("kind", c_int),  # mim_message_kind
        ("id", c_char_p),
        ("chat", c_char_p),
        ("from_", c_char_p),  # `from` in C
        ("publisher_id", c_char_p),
        ("text", c_char_p),
        ("timestamp_ms", c_int64),
        ("sequence", c_uint64),
        ("from_history", c_bool),
        ("raw", c_void_p),  # const uint8_t *
        ("raw_len", c_size_t),
        # since 0.3.0 (ABI 2)
        ("version", c_uint32),
        ("sender_id", c_char_p),
        ("sender_trusted", c_bool),
        ("mine", c_bool),
        ("reply_to", c_char_p),
        ("edited", c_bool),
        ("edited_ms", c_int64),
        ("deleted", c_bool),
        ("n_reactions", c_size_t),
        ("reactions", c_void_p),  # const mim_reaction *
    ]


class Reaction(Structure):
    """struct mim_reaction (im.h)."""
    _fields_ = [
        ("key", c_char_p),
        ("count", c_size_t),
        ("users", POINTER(c_char_p)),  # const char *const *: count user ids
    ]


# mim_update_kind
UPDATE_EDITED, UPDATE_DELETED, UPDATE_REACTIONS = 0, 1, 2

# void (*mim_on_message)(mim_session *session, const mim_message *msg, void *user)
ON_MESSAGE = CFUNCTYPE(None, c_void_p, POINTER(Message), c_void_p)
# void (*on_event)(mim_session *, mim_subscription_state, mim_status, const char *, void *)
ON_EVENT = CFUNCTYPE(None, c_void_p, c_int, c_int, c_char_p, c_void_p)
# void (*on_send_result)(mim_session *, const char *message_id, mim_status status,
#                        const char *detail, void *user)
ON_SEND_RESULT = CFUNCTYPE(None, c_void_p, c_char_p, c_int, c_char_p, c_void_p)


class JoinOptions(_Sized):
    """struct mim_join_options (im.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("display_name", c_char_p),
        ("mode", c_int),  # mim_chat_mode
        ("history_cap", c_uint32),
        ("history_ttl_ms", c_uint64),
        ("on_event", ON_EVENT),
        ("outbox_limit", c_uint32),
        ("flush_timeout_ms", c_uint32),
        ("send_timeout_ms", c_uint32),
        ("on_send_result", ON_SEND_RESULT),
        ("initial_history", c_uint32),
        ("user_id", c_char_p),
        ("on_update", c_void_p),  # mim_on_update
        ("on_presence", c_void_p),  # mim_on_presence
        ("presence_heartbeat_ms", c_uint32),
    ]


class Member(Structure):
    """struct mim_member (im.h). Only valid during the callback / list lifetime."""
    _fields_ = [
        ("user_id", c_char_p),
        ("display_name", c_char_p),
        ("trusted", c_bool),
        ("typing", c_bool),
        ("last_seen_ms", c_int64),
    ]


class MemberList(Structure):
    """struct mim_member_list (im.h)."""
    _fields_ = [("count", c_size_t), ("members", POINTER(Member))]


# void (*mim_on_update)(mim_session *, const mim_message *current, mim_update_kind, void *)
ON_UPDATE = CFUNCTYPE(None, c_void_p, POINTER(Message), c_int, c_void_p)


class SendOptions(_Sized):
    """struct mim_send_options (im.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("id", c_char_p),
        ("reply_to", c_char_p),
    ]


class ReadMarker(Structure):
    """struct mim_read_marker (im.h)."""
    _fields_ = [
        ("user_id", c_char_p),
        ("message_id", c_char_p),
        ("read_at_ms", c_int64),
    ]


class ReadMarkerList(Structure):
    """struct mim_read_marker_list (im.h)."""
    _fields_ = [("count", c_size_t), ("markers", POINTER(ReadMarker))]


class Bytes(Structure):
    """struct mim_bytes (list.h)."""
    _fields_ = [("data", c_void_p), ("len", c_size_t)]


class DictionaryWriteOptions(_Sized):
    """struct mim_dictionary_write_options (dictionary.h)."""
    _fields_ = [
        ("struct_size", c_size_t),
        ("ttl_ms", c_uint64),
        ("refresh_ttl", c_bool),
    ]


class DictionaryEntry(Structure):
    """struct mim_dictionary_entry (dictionary.h)."""
    _fields_ = [("field", Bytes), ("value", Bytes)]


class DictionaryEntries(Structure):
    """struct mim_dictionary_entries (dictionary.h)."""
    _fields_ = [
        ("found", c_bool),
        ("count", c_size_t),
        ("entries", POINTER(DictionaryEntry)),
    ]


# void (*mim_on_presence)(mim_session *, mim_presence_change, const mim_member *, void *)
ON_PRESENCE = CFUNCTYPE(None, c_void_p, c_int, POINTER(Member), c_void_p)


class MessageList(Structure):
    """struct mim_message_list (im.h)."""
    _fields_ = [("count", c_size_t), ("messages", POINTER(Message))]


class DisposableToken(Structure):
    """struct mim_disposable_token (token.h)."""
    _fields_ = [
        ("credential", c_char_p),
        ("api_key", c_char_p),
        ("endpoint", c_char_p),
        ("valid_until", c_uint64),
    ]


# The ABI this binding was written for: the soname's number, and the oldest library
# version whose structures match the mirrors above (later minor releases only append).
SONAME = "libmomento-im.so.2"
MIN_VERSION = (0, 3, 0)
ENV_VAR = "MOMENTO_IM_LIB"


def _checkout_build_dir() -> Optional[str]:
    """build/lib of the source checkout this package sits in (bindings/python/momento_im),
    for running from the repository without installing; None when installed elsewhere."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    if os.path.exists(os.path.join(root, "include", "momento", "im.h")):
        return os.path.join(root, "build", "lib")
    return None


def candidates() -> List[str]:
    """Where the shared library is looked for, in order. The environment variable, when
    set, is the only candidate: an explicit choice must not silently fall back."""
    env = os.environ.get(ENV_VAR)
    if env:
        return [env]
    # The dynamic loader's own search (LD_LIBRARY_PATH, the ldconfig cache, /usr/lib...)
    # by soname: the name that carries the ABI, not the unversioned dev symlink.
    found = [SONAME]
    system = ctypes.util.find_library("momento-im")
    if system and system != SONAME:
        found.append(system)
    # `make install`'s default prefix, in case ldconfig was not run after installing.
    found.append(os.path.join("/usr/local/lib", SONAME))
    build = _checkout_build_dir()
    if build:
        found.append(os.path.join(build, SONAME))
    return found


def parse_version(text: str) -> Tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split("."))
    except ValueError:
        return ()


def _check_version(dll: ctypes.CDLL, path: str) -> None:
    """Refuses a library whose structures differ from the mirrors above: a different
    major version, or one older than the ABI these mirrors describe."""
    fn = dll.mim_version
    fn.restype = c_char_p
    fn.argtypes = []
    text = (fn() or b"").decode("ascii", "replace")
    have = parse_version(text)
    if len(have) != 3 or have[0] != MIN_VERSION[0] or have < MIN_VERSION:
        want = ".".join(map(str, MIN_VERSION))
        raise ImportError(
            "momento_im: %s is libmomento-im %s, but this binding needs %s.x >= %s (%s); "
            "install a matching library or point %s at one"
            % (path, text or "of unknown version", MIN_VERSION[0], want, SONAME, ENV_VAR))


def _load() -> ctypes.CDLL:
    tried = []
    for path in candidates():
        try:
            dll = ctypes.CDLL(path)
        except OSError as exc:
            tried.append("%s (%s)" % (path, exc))
            continue
        _check_version(dll, path)
        return dll
    if os.environ.get(ENV_VAR):
        hint = "fix %s (it must name libmomento-im.so.N itself)" % ENV_VAR
    else:
        hint = ("install the C library (make install; then run ldconfig, or add its lib "
                "directory to LD_LIBRARY_PATH) or set %s=/path/to/%s" % (ENV_VAR, SONAME))
    raise ImportError("momento_im: libmomento-im not found; %s. Tried: %s"
                      % (hint, "; ".join(tried)))


lib = _load()


def _declare(name: str, restype: Any, *argtypes: Any) -> None:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)


_P = POINTER(c_void_p)

_declare("mim_status_name", c_char_p, c_int)
_declare("mim_strerror", c_char_p, c_int)
_declare("mim_last_error_detail", c_char_p)
_declare("mim_version", c_char_p)
_declare("mim_set_log_callback", None, LOG_FN, c_int, c_void_p)

_declare("mim_client_create", c_int, POINTER(ClientOptions), _P)
_declare("mim_client_free", None, c_void_p)
_declare("mim_client_ping", c_int, c_void_p)
_declare("mim_cache_create", c_int, c_void_p, c_char_p)
_declare("mim_cache_delete", c_int, c_void_p, c_char_p)

_declare("mim_join", c_int, c_void_p, c_char_p, c_char_p, POINTER(JoinOptions),
         ON_MESSAGE, c_void_p, _P)
_declare("mim_history", c_int, c_void_p, c_size_t, POINTER(POINTER(MessageList)))
_declare("mim_message_list_free", None, POINTER(MessageList))
_declare("mim_send", c_int, c_void_p, c_char_p, POINTER(ctypes.c_char))
_declare("mim_remove_message", c_int, c_void_p, c_char_p)
_declare("mim_leave", None, c_void_p)
_declare("mim_set_typing", c_int, c_void_p, c_bool)
_declare("mim_members", c_int, c_void_p, POINTER(POINTER(MemberList)))
_declare("mim_member_list_free", None, POINTER(MemberList))

_ID = POINTER(ctypes.c_char)  # char out[MIM_MESSAGE_ID_SIZE]
_declare("mim_message_id_new", c_int, _ID)
_declare("mim_send_with_options", c_int, c_void_p, c_char_p, POINTER(SendOptions), _ID)
_declare("mim_edit", c_int, c_void_p, c_char_p, c_char_p, _ID)
_declare("mim_delete", c_int, c_void_p, c_char_p, _ID)
_declare("mim_react", c_int, c_void_p, c_char_p, c_char_p, c_bool, _ID)
_declare("mim_mark_read", c_int, c_void_p, c_char_p)
_declare("mim_unread_count", c_int, c_void_p, POINTER(c_size_t), POINTER(c_bool))
_declare("mim_read_markers", c_int, c_void_p, POINTER(POINTER(ReadMarkerList)))
_declare("mim_read_marker_list_free", None, POINTER(ReadMarkerList))

_declare("mim_dictionary_set_field", c_int, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t,
         c_char_p, c_size_t, POINTER(DictionaryWriteOptions))
_declare("mim_dictionary_get_field", c_int, c_void_p, c_char_p, c_char_p, c_char_p, c_size_t,
         POINTER(c_void_p), POINTER(c_size_t), POINTER(c_bool))
_declare("mim_dictionary_fetch", c_int, c_void_p, c_char_p, c_char_p,
         POINTER(POINTER(DictionaryEntries)))
_declare("mim_dictionary_entries_free", None, POINTER(DictionaryEntries))

# The C library's allocator, for the one result it hands over as plain malloc'd memory
# (mim_dictionary_get_field's value): the process's libc, which the library links.
libc = ctypes.CDLL(None)
libc.free.restype = None
libc.free.argtypes = [c_void_p]

_declare("mim_disposable_token_free", None, POINTER(DisposableToken))
for _name in ("mim_token_generate_client_only", "mim_token_generate_moderated"):
    _declare(_name, c_int, c_void_p, c_char_p, c_char_p, c_uint32, c_char_p,
             POINTER(POINTER(DisposableToken)))
_declare("mim_direct_chat_id", c_int, c_char_p, c_char_p, POINTER(ctypes.c_char))
_declare("mim_token_generate_direct", c_int, c_void_p, c_char_p, c_char_p, c_char_p, c_int,
         c_uint32, POINTER(POINTER(DisposableToken)))
