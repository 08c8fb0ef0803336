/* Status names, the thread-local error detail, the log callback and the version. */
#include "error.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define DETAIL_MAX 512

static _Thread_local char tls_detail[DETAIL_MAX];

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static mim_log_fn log_fn;
static void *log_user;
static mim_log_level log_max = MIM_LOG_ERROR;

typedef struct status_text {
  const char *name;
  const char *text;
} status_text;

static const status_text status_texts[] = {
    [MIM_OK] = {"MIM_OK", "success"},
    [MIM_ERR_INVALID_ARGUMENT] = {"MIM_ERR_INVALID_ARGUMENT", "invalid argument"},
    [MIM_ERR_NOT_FOUND] = {"MIM_ERR_NOT_FOUND", "not found (does the cache exist?)"},
    [MIM_ERR_ALREADY_EXISTS] = {"MIM_ERR_ALREADY_EXISTS", "already exists"},
    [MIM_ERR_PERMISSION_DENIED] = {"MIM_ERR_PERMISSION_DENIED",
                                   "permission denied: the token lacks this permission"},
    [MIM_ERR_UNAUTHENTICATED] = {"MIM_ERR_UNAUTHENTICATED",
                                 "unauthenticated: the token is invalid or expired"},
    [MIM_ERR_RESOURCE_EXHAUSTED] = {"MIM_ERR_RESOURCE_EXHAUSTED", "a limit was exceeded"},
    [MIM_ERR_DEADLINE_EXCEEDED] = {"MIM_ERR_DEADLINE_EXCEEDED", "deadline exceeded"},
    [MIM_ERR_UNAVAILABLE] = {"MIM_ERR_UNAVAILABLE", "service unavailable; retry later"},
    [MIM_ERR_CANCELLED] = {"MIM_ERR_CANCELLED", "cancelled"},
    [MIM_ERR_FAILED_PRECONDITION] = {"MIM_ERR_FAILED_PRECONDITION", "failed precondition"},
    [MIM_ERR_UNIMPLEMENTED] = {"MIM_ERR_UNIMPLEMENTED", "not implemented by the server"},
    [MIM_ERR_INTERNAL] = {"MIM_ERR_INTERNAL", "internal error"},
    [MIM_ERR_UNKNOWN] = {"MIM_ERR_UNKNOWN", "unknown error"},
    [MIM_ERR_NO_MEMORY] = {"MIM_ERR_NO_MEMORY", "out of memory"},
    [MIM_ERR_PROTOCOL] = {"MIM_ERR_PROTOCOL", "malformed response from the server"},
};

static const status_text *lookup(mim_status status) {
  if ((unsigned)status >= sizeof status_texts / sizeof status_texts[0])
    return NULL;
  return &status_texts[status];
}

MIM_API const char *mim_status_name(mim_status status) {
  const status_text *t = lookup(status);
  return t ? t->name : "MIM_ERR_UNKNOWN_STATUS";
}

MIM_API const char *mim_strerror(mim_status status) {
  const status_text *t = lookup(status);
  return t ? t->text : "unknown status code";
}

MIM_API const char *mim_last_error_detail(void) {
  return tls_detail;
}

void mim_clear_error(void) {
  tls_detail[0] = '\0';
}

mim_status mim_fail(mim_status status, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tls_detail, sizeof tls_detail, fmt, ap);
  va_end(ap);
  return status;
}

/* "mim_name: " at the start of a detail: a function already named. */
static bool names_function(const char *detail) {
  if (strncmp(detail, "mim_", 4) != 0)
    return false;
  size_t n = strspn(detail, "abcdefghijklmnopqrstuvwxyz0123456789_");
  return detail[n] == ':' && detail[n + 1] == ' ';
}

mim_status mim_arg_in(const char *fn, mim_status status) {
  if (status != MIM_ERR_INVALID_ARGUMENT || names_function(tls_detail))
    return status;
  char detail[DETAIL_MAX];
  memcpy(detail, tls_detail, sizeof detail);
  snprintf(tls_detail, sizeof tls_detail, "%.80s: %.420s", fn, detail);
  return status;
}

mim_status mim_arg_fail(const char *fn, const char *fmt, ...) {
  char detail[DETAIL_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  snprintf(tls_detail, sizeof tls_detail, "%.80s: %.420s", fn, detail);
  return MIM_ERR_INVALID_ARGUMENT;
}

mim_status mim_fail_with_detail(mim_status status, const char *detail) {
  snprintf(tls_detail, sizeof tls_detail, "%s", detail ? detail : "");
  return status;
}

MIM_API void mim_set_log_callback(mim_log_fn fn, mim_log_level max_level, void *user) {
  pthread_mutex_lock(&log_lock);
  log_fn = fn;
  log_user = user;
  log_max = max_level;
  pthread_mutex_unlock(&log_lock);
}

int mim_log_enabled(mim_log_level level) {
  pthread_mutex_lock(&log_lock);
  int on = log_fn != NULL && level <= log_max;
  pthread_mutex_unlock(&log_lock);
  return on;
}

void mim_log(mim_log_level level, const char *fmt, ...) {
  char line[1024];
  pthread_mutex_lock(&log_lock);
  mim_log_fn fn = log_fn;
  void *user = log_user;
  int on = fn != NULL && level <= log_max;
  pthread_mutex_unlock(&log_lock);
  if (!on)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fn(level, line, user);
}

/* gRPC's status codes are fixed by its protocol (0 OK .. 16 UNAUTHENTICATED), so the
 * table is indexed by the number itself and needs no gRPC header. OUT_OF_RANGE reads as
 * a bad argument, ABORTED as a failed precondition and DATA_LOSS as internal: the user
 * acts on them the same way. */
static const mim_status grpc_code_status[] = {
    MIM_OK,                      /* 0 OK */
    MIM_ERR_CANCELLED,           /* 1 CANCELLED */
    MIM_ERR_UNKNOWN,             /* 2 UNKNOWN */
    MIM_ERR_INVALID_ARGUMENT,    /* 3 INVALID_ARGUMENT */
    MIM_ERR_DEADLINE_EXCEEDED,   /* 4 DEADLINE_EXCEEDED */
    MIM_ERR_NOT_FOUND,           /* 5 NOT_FOUND */
    MIM_ERR_ALREADY_EXISTS,      /* 6 ALREADY_EXISTS */
    MIM_ERR_PERMISSION_DENIED,   /* 7 PERMISSION_DENIED */
    MIM_ERR_RESOURCE_EXHAUSTED,  /* 8 RESOURCE_EXHAUSTED */
    MIM_ERR_FAILED_PRECONDITION, /* 9 FAILED_PRECONDITION */
    MIM_ERR_FAILED_PRECONDITION, /* 10 ABORTED */
    MIM_ERR_INVALID_ARGUMENT,    /* 11 OUT_OF_RANGE */
    MIM_ERR_UNIMPLEMENTED,       /* 12 UNIMPLEMENTED */
    MIM_ERR_INTERNAL,            /* 13 INTERNAL */
    MIM_ERR_UNAVAILABLE,         /* 14 UNAVAILABLE */
    MIM_ERR_INTERNAL,            /* 15 DATA_LOSS */
    MIM_ERR_UNAUTHENTICATED,     /* 16 UNAUTHENTICATED */
};

mim_status mim_status_from_grpc_code(long code) {
  if (code < 0 || (unsigned long)code >= sizeof grpc_code_status / sizeof grpc_code_status[0])
    return MIM_ERR_UNKNOWN;
  return grpc_code_status[code];
}

mim_status mim_status_from_grpc(int grpc_code) {
  return mim_status_from_grpc_code(grpc_code);
}

/* Hosted Momento's causes, in mim_limit_cause order from MIM_LIMIT_TOPIC_SUBSCRIPTIONS,
 * with the words the official SDKs report for each. */
typedef struct limit_text {
  mim_limit_cause cause;
  const char *wire;
  const char *text;
} limit_text;

static const limit_text limit_texts[] = {
    {MIM_LIMIT_TOPIC_SUBSCRIPTIONS, "topic_subscriptions_limit_exceeded",
     "Topic subscriptions limit exceeded for this account"},
    {MIM_LIMIT_OPERATIONS_RATE, "operations_rate_limit_exceeded",
     "Request rate limit exceeded for this account"},
    {MIM_LIMIT_THROUGHPUT_RATE, "throughput_rate_limit_exceeded",
     "Bandwidth limit exceeded for this account"},
    {MIM_LIMIT_REQUEST_SIZE, "request_size_limit_exceeded",
     "Request size limit exceeded for this account"},
    {MIM_LIMIT_ITEM_SIZE, "item_size_limit_exceeded", "Item size limit exceeded for this account"},
    {MIM_LIMIT_ELEMENT_SIZE, "element_size_limit_exceeded",
     "Element size limit exceeded for this account"},
};
#define LIMIT_TEXTS (sizeof limit_texts / sizeof limit_texts[0])
#define LIMIT_TAG "[err="

static const limit_text *limit_by_cause(mim_limit_cause cause) {
  for (size_t i = 0; i < LIMIT_TEXTS; i++) {
    if (limit_texts[i].cause == cause)
      return &limit_texts[i];
  }
  return NULL;
}

static mim_limit_cause limit_by_wire(const char *wire, size_t len) {
  for (size_t i = 0; i < LIMIT_TEXTS; i++) {
    if (strlen(limit_texts[i].wire) == len && memcmp(limit_texts[i].wire, wire, len) == 0)
      return limit_texts[i].cause;
  }
  return MIM_LIMIT_UNKNOWN;
}

/* Without "err" the official SDKs read the message: "subscribers" means the
 * subscription limit, "operations" the request rate, "throughput" the bandwidth. */
static mim_limit_cause limit_by_words(const char *message) {
  if (!message)
    return MIM_LIMIT_UNKNOWN;
  if (strstr(message, "subscribers"))
    return MIM_LIMIT_TOPIC_SUBSCRIPTIONS;
  if (strstr(message, "operations"))
    return MIM_LIMIT_OPERATIONS_RATE;
  if (strstr(message, "throughput"))
    return MIM_LIMIT_THROUGHPUT_RATE;
  return MIM_LIMIT_UNKNOWN;
}

void mim_format_limit_detail(char *out, size_t cap, const char *err_value, const char *message) {
  mim_limit_cause cause = err_value && *err_value ? limit_by_wire(err_value, strlen(err_value))
                                                  : limit_by_words(message);
  const limit_text *t = limit_by_cause(cause);
  snprintf(out, cap, LIMIT_TAG "%s] %s: %s", t ? t->wire : "unknown",
           t ? t->text : "Limit exceeded for this account", message ? message : "");
}

MIM_API mim_limit_cause mim_limit_cause_of(const char *detail) {
  const char *tag = detail ? strstr(detail, LIMIT_TAG) : NULL;
  if (!tag)
    return MIM_LIMIT_NONE;
  const char *wire = tag + strlen(LIMIT_TAG);
  const char *end = strchr(wire, ']');
  return end ? limit_by_wire(wire, (size_t)(end - wire)) : MIM_LIMIT_UNKNOWN;
}

MIM_API mim_limit_cause mim_last_error_cause(void) {
  return mim_limit_cause_of(tls_detail);
}

MIM_API const char *mim_limit_cause_name(mim_limit_cause cause) {
  if (cause == MIM_LIMIT_NONE)
    return "none";
  const limit_text *t = limit_by_cause(cause);
  return t ? t->wire : "unknown";
}

MIM_API int mim_limit_cause_is_throttling(mim_limit_cause cause) {
  return cause == MIM_LIMIT_OPERATIONS_RATE || cause == MIM_LIMIT_THROUGHPUT_RATE;
}

int mim_throttled(mim_status status, const char *detail) {
  return status == MIM_ERR_RESOURCE_EXHAUSTED &&
         mim_limit_cause_is_throttling(mim_limit_cause_of(detail));
}

MIM_API const char *mim_version(void) {
  return MIM_VERSION_STRING;
}
