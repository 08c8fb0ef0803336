/*
 * libmomento-im: status codes, error details, logging and version.
 *
 * Every fallible call in the library returns a mim_status (MIM_OK == 0). When a call
 * fails it also leaves a human-readable detail for the calling thread, readable with
 * mim_last_error_detail() until the next libmomento-im call on that thread.
 * The library never prints on its own and never calls abort()/exit() on bad input;
 * install a log callback to see what it does. Keys and tokens never appear in logs
 * or error details. gRPC core's own log lines are routed to the same callback
 * (prefixed "grpc: ") unless the GRPC_VERBOSITY environment variable is set. gRPC's
 * opt-in tracing (GRPC_VERBOSITY=debug with GRPC_TRACE=http or similar) prints request
 * headers, the "authorization" token included, to stderr: a debugging aid only.
 */
#ifndef MOMENTO_COMMON_H
#define MOMENTO_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(MIM_BUILDING_LIBRARY)
#define MIM_API __attribute__((visibility("default")))
#else
#define MIM_API
#endif

#define MIM_VERSION_MAJOR 0
#define MIM_VERSION_MINOR 3
#define MIM_VERSION_PATCH 0
#define MIM_VERSION_STRING "0.3.0"
/* The N of the shared library's soname, libmomento-im.so.N (see docs/ABI.md). */
#define MIM_ABI_VERSION 2

/*
 * Extensible structs. Every options or callbacks struct the caller fills in (and
 * mim_client_stats, which the library fills in) starts with `size_t struct_size`: the
 * sizeof the struct had in the header the program was compiled against. Initialise it
 * with the struct's MIM_..._INIT macro (or its *_init function, or
 * `.struct_size = sizeof(the struct)` in a designated initialiser); later releases append
 * fields, and the library reads only the struct_size bytes a program passed, so a
 * program built against an older header keeps working unchanged. A struct_size of 0 or
 * one smaller than the first version of the struct fails with MIM_ERR_INVALID_ARGUMENT,
 * and so does a larger one (a program built against a newer header) whose unknown fields
 * are not all zero. docs/ABI.md has the whole rule. (The macros are designated
 * initialisers: C, or C++20; older C++ sets `o.struct_size = sizeof o` after `T o{};`.)
 */

/* Result of every fallible call. Values are stable across releases. */
typedef enum mim_status {
  MIM_OK = 0,
  MIM_ERR_INVALID_ARGUMENT = 1,   /* bad input from the caller or rejected by server */
  MIM_ERR_NOT_FOUND = 2,          /* cache (or other named resource) does not exist */
  MIM_ERR_ALREADY_EXISTS = 3,     /* create of something that exists */
  MIM_ERR_PERMISSION_DENIED = 4,  /* the token lacks the permission */
  MIM_ERR_UNAUTHENTICATED = 5,    /* missing, malformed, tampered or expired token */
  MIM_ERR_RESOURCE_EXHAUSTED = 6, /* a server limit or a local bound was hit */
  MIM_ERR_DEADLINE_EXCEEDED = 7,  /* the call did not finish in time */
  MIM_ERR_UNAVAILABLE = 8,        /* connection problem; retrying may succeed */
  MIM_ERR_CANCELLED = 9,          /* cancelled by the caller or by shutdown */
  MIM_ERR_FAILED_PRECONDITION = 10,
  MIM_ERR_UNIMPLEMENTED = 11, /* the server does not know the method */
  MIM_ERR_INTERNAL = 12,      /* server or library bug; detail says more */
  MIM_ERR_UNKNOWN = 13,       /* an error the server did not classify */
  MIM_ERR_NO_MEMORY = 14,     /* an allocation failed */
  MIM_ERR_PROTOCOL = 15       /* the server sent bytes we could not decode (also: a
                               * string field of a response, e.g. a minted key or a
                               * name, holding a NUL byte, which would arrive cut) */
} mim_status;

/* Name of a status ("MIM_ERR_NOT_FOUND"). Never NULL; unknown values give
 * "MIM_ERR_UNKNOWN_STATUS". Static storage; thread-safe. */
MIM_API const char *mim_status_name(mim_status status);

/* Short English description of a status. Never NULL; static storage; thread-safe. */
MIM_API const char *mim_strerror(mim_status status);

/* Detail of the last failed call made by the calling thread (for example the
 * server's status message), or "" when there is none. The string belongs to the
 * library and stays valid until the next libmomento-im call on this thread.
 * A MIM_ERR_INVALID_ARGUMENT detail starts with the public function called and names
 * the argument ("mim_join: chat_id is NULL"). A network or TLS failure starts with the
 * server's host:port and what to check ("nothing listens on 127.0.0.1:9000: is the
 * server running, and is the port right?", "cannot resolve HOST:PORT (DNS): ...", "no
 * answer from HOST:PORT within N ms: ...", "the TLS certificate of HOST:PORT is not
 * trusted (...)"), followed by the transport's own words in parentheses. Details never
 * contain a key or token. */
MIM_API const char *mim_last_error_detail(void);

/* Why a server refused with MIM_ERR_RESOURCE_EXHAUSTED: hosted Momento names the cause
 * in a trailing metadata entry "err" (mim-local does the same). Values are stable. */
typedef enum mim_limit_cause {
  MIM_LIMIT_NONE = 0,                /* not a limit refusal by the server */
  MIM_LIMIT_UNKNOWN = 1,             /* RESOURCE_EXHAUSTED from the server, no known cause */
  MIM_LIMIT_TOPIC_SUBSCRIPTIONS = 2, /* topic_subscriptions_limit_exceeded */
  MIM_LIMIT_OPERATIONS_RATE = 3,     /* operations_rate_limit_exceeded (throttling) */
  MIM_LIMIT_THROUGHPUT_RATE = 4,     /* throughput_rate_limit_exceeded (throttling) */
  MIM_LIMIT_REQUEST_SIZE = 5,        /* request_size_limit_exceeded */
  MIM_LIMIT_ITEM_SIZE = 6,           /* item_size_limit_exceeded */
  MIM_LIMIT_ELEMENT_SIZE = 7         /* element_size_limit_exceeded */
} mim_limit_cause;

/* The cause of the calling thread's last failure (see mim_last_error_detail): a value
 * other than MIM_LIMIT_NONE only when it was a server's RESOURCE_EXHAUSTED. Thread-safe;
 * valid until the next libmomento-im call on this thread. */
MIM_API mim_limit_cause mim_last_error_cause(void);

/* The cause carried by a detail string the library handed to a callback (on_send_result,
 * on_event, on_close, ...), so callbacks can tell causes apart without reading the text.
 * NULL or a detail without one gives MIM_LIMIT_NONE. Thread-safe. */
MIM_API mim_limit_cause mim_limit_cause_of(const char *detail);

/* The cause's name as hosted Momento sends it ("operations_rate_limit_exceeded"); "none"
 * for MIM_LIMIT_NONE, "unknown" for MIM_LIMIT_UNKNOWN and values it does not know.
 * Static storage; thread-safe. */
MIM_API const char *mim_limit_cause_name(mim_limit_cause cause);

/* 1 for throttling (the operations or throughput rate): worth retrying after a backoff
 * of a few hundred ms or more; 0 for every other cause (a size cause never succeeds
 * when retried). */
MIM_API int mim_limit_cause_is_throttling(mim_limit_cause cause);

typedef enum mim_log_level {
  MIM_LOG_ERROR = 1,
  MIM_LOG_WARN = 2,
  MIM_LOG_INFO = 3,
  MIM_LOG_DEBUG = 4
} mim_log_level;

/* Receives one formatted line (no trailing newline). May be called from any thread,
 * including the library's internal event thread: it must not block for long and must
 * not call back into libmomento-im. */
typedef void (*mim_log_fn)(mim_log_level level, const char *message, void *user);

/* Installs the process-wide log callback; messages above max_level are dropped.
 * fn == NULL silences logging (the default). Thread-safe. */
MIM_API void mim_set_log_callback(mim_log_fn fn, mim_log_level max_level, void *user);

/* Library version as "MAJOR.MINOR.PATCH". Static storage. */
MIM_API const char *mim_version(void);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_COMMON_H */
