/* Unit tests for lib/error.c: gRPC status mapping, status names and texts, the
 * thread-local error detail, the log callback and the version. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/common.h>

#include "error.h"

#include <grpc/status.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static void test_status_from_grpc(void **state) {
  (void)state;
  static const struct {
    int grpc;
    mim_status want;
  } cases[] = {
      {GRPC_STATUS_OK, MIM_OK},
      {GRPC_STATUS_CANCELLED, MIM_ERR_CANCELLED},
      {GRPC_STATUS_UNKNOWN, MIM_ERR_UNKNOWN},
      {GRPC_STATUS_INVALID_ARGUMENT, MIM_ERR_INVALID_ARGUMENT},
      {GRPC_STATUS_DEADLINE_EXCEEDED, MIM_ERR_DEADLINE_EXCEEDED},
      {GRPC_STATUS_NOT_FOUND, MIM_ERR_NOT_FOUND},
      {GRPC_STATUS_ALREADY_EXISTS, MIM_ERR_ALREADY_EXISTS},
      {GRPC_STATUS_PERMISSION_DENIED, MIM_ERR_PERMISSION_DENIED},
      {GRPC_STATUS_RESOURCE_EXHAUSTED, MIM_ERR_RESOURCE_EXHAUSTED},
      {GRPC_STATUS_FAILED_PRECONDITION, MIM_ERR_FAILED_PRECONDITION},
      {GRPC_STATUS_ABORTED, MIM_ERR_FAILED_PRECONDITION},
      {GRPC_STATUS_OUT_OF_RANGE, MIM_ERR_INVALID_ARGUMENT},
      {GRPC_STATUS_UNIMPLEMENTED, MIM_ERR_UNIMPLEMENTED},
      {GRPC_STATUS_INTERNAL, MIM_ERR_INTERNAL},
      {GRPC_STATUS_UNAVAILABLE, MIM_ERR_UNAVAILABLE},
      {GRPC_STATUS_DATA_LOSS, MIM_ERR_INTERNAL},
      {GRPC_STATUS_UNAUTHENTICATED, MIM_ERR_UNAUTHENTICATED},
      {-1, MIM_ERR_UNKNOWN},
      {17, MIM_ERR_UNKNOWN},
      {1000, MIM_ERR_UNKNOWN},
  };
  /* The gRPC numbering itself is part of the contract (codes 0..16). */
  assert_int_equal(GRPC_STATUS_UNAUTHENTICATED, 16);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (mim_status_from_grpc(cases[i].grpc) != cases[i].want)
      fail_msg("grpc code %d -> %d, want %d", cases[i].grpc, mim_status_from_grpc(cases[i].grpc),
               cases[i].want);
  }
}

/* The long form (what a grpc-status parser yields) and the int form share one table:
 * they agree everywhere, and values outside int's range are UNKNOWN, not truncated into
 * a valid code. */
static void test_status_from_grpc_code(void **state) {
  (void)state;
  for (long code = -3; code <= 40; code++)
    assert_int_equal(mim_status_from_grpc_code(code), mim_status_from_grpc((int)code));
  assert_int_equal(mim_status_from_grpc_code(GRPC_STATUS_UNAVAILABLE), MIM_ERR_UNAVAILABLE);
  static const long far[] = {LONG_MIN, -1L, 17L, LONG_MAX, (long)INT_MAX + 1};
  for (size_t i = 0; i < sizeof far / sizeof far[0]; i++)
    assert_int_equal(mim_status_from_grpc_code(far[i]), MIM_ERR_UNKNOWN);
  /* 2^32 + 14 would read as UNAVAILABLE if narrowed to int. */
  if (sizeof(long) > 4)
    assert_int_equal(mim_status_from_grpc_code((long)((1LL << 32) + 14)), MIM_ERR_UNKNOWN);
}

static void test_names_and_texts(void **state) {
  (void)state;
  static const char *const names[] = {
      "MIM_OK",
      "MIM_ERR_INVALID_ARGUMENT",
      "MIM_ERR_NOT_FOUND",
      "MIM_ERR_ALREADY_EXISTS",
      "MIM_ERR_PERMISSION_DENIED",
      "MIM_ERR_UNAUTHENTICATED",
      "MIM_ERR_RESOURCE_EXHAUSTED",
      "MIM_ERR_DEADLINE_EXCEEDED",
      "MIM_ERR_UNAVAILABLE",
      "MIM_ERR_CANCELLED",
      "MIM_ERR_FAILED_PRECONDITION",
      "MIM_ERR_UNIMPLEMENTED",
      "MIM_ERR_INTERNAL",
      "MIM_ERR_UNKNOWN",
      "MIM_ERR_NO_MEMORY",
      "MIM_ERR_PROTOCOL",
  };
  assert_int_equal(sizeof names / sizeof names[0], MIM_ERR_PROTOCOL + 1);
  for (int s = MIM_OK; s <= MIM_ERR_PROTOCOL; s++) {
    assert_string_equal(mim_status_name((mim_status)s), names[s]);
    const char *text = mim_strerror((mim_status)s);
    assert_non_null(text);
    assert_true(strlen(text) > 0);
    /* Texts are distinct, so a user can tell statuses apart. */
    for (int t = MIM_OK; t < s; t++)
      assert_string_not_equal(text, mim_strerror((mim_status)t));
  }
  static const int bad[] = {-1, MIM_ERR_PROTOCOL + 1, 999};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_string_equal(mim_status_name((mim_status)bad[i]), "MIM_ERR_UNKNOWN_STATUS");
    assert_non_null(mim_strerror((mim_status)bad[i]));
    assert_true(strlen(mim_strerror((mim_status)bad[i])) > 0);
  }
}

static void test_detail_basics(void **state) {
  (void)state;
  mim_clear_error();
  assert_string_equal(mim_last_error_detail(), "");
  assert_int_equal(mim_fail(MIM_ERR_NOT_FOUND, "cache %s missing (%d)", "chat", 7),
                   MIM_ERR_NOT_FOUND);
  assert_string_equal(mim_last_error_detail(), "cache chat missing (7)");
  assert_int_equal(mim_fail_with_detail(MIM_ERR_INTERNAL, "from elsewhere"), MIM_ERR_INTERNAL);
  assert_string_equal(mim_last_error_detail(), "from elsewhere");
  assert_int_equal(mim_fail_with_detail(MIM_ERR_INTERNAL, NULL), MIM_ERR_INTERNAL);
  assert_string_equal(mim_last_error_detail(), "");
  /* Overlong details are truncated, never overflow. */
  char big[4096];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  mim_fail(MIM_ERR_UNKNOWN, "%s", big);
  size_t n = strlen(mim_last_error_detail());
  assert_true(n > 0 && n < sizeof big - 1);
  mim_clear_error();
  assert_string_equal(mim_last_error_detail(), "");
}

typedef struct thread_seen {
  char before[64]; /* detail the new thread sees first */
  char after[64];  /* detail after its own mim_fail */
} thread_seen;

static void *detail_thread(void *arg) {
  thread_seen *seen = arg;
  snprintf(seen->before, sizeof seen->before, "%s", mim_last_error_detail());
  mim_fail(MIM_ERR_UNAVAILABLE, "set in the other thread");
  snprintf(seen->after, sizeof seen->after, "%s", mim_last_error_detail());
  return NULL;
}

static void test_detail_thread_local(void **state) {
  (void)state;
  mim_fail(MIM_ERR_NOT_FOUND, "set in the main thread");
  thread_seen seen = {{0}, {0}};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, detail_thread, &seen), 0);
  assert_int_equal(pthread_join(t, NULL), 0);
  assert_string_equal(seen.before, "");
  assert_string_equal(seen.after, "set in the other thread");
  assert_string_equal(mim_last_error_detail(), "set in the main thread");
  mim_clear_error();
}

typedef struct log_record {
  int calls;
  mim_log_level last_level;
  char last[256];
} log_record;

static void record_log(mim_log_level level, const char *message, void *user) {
  log_record *r = user;
  r->calls++;
  r->last_level = level;
  snprintf(r->last, sizeof r->last, "%s", message);
}

static void test_log_callback(void **state) {
  (void)state;
  log_record r = {0, 0, ""};
  /* Default: silent. */
  assert_false(mim_log_enabled(MIM_LOG_ERROR));
  mim_log(MIM_LOG_ERROR, "dropped");

  mim_set_log_callback(record_log, MIM_LOG_WARN, &r);
  assert_true(mim_log_enabled(MIM_LOG_ERROR));
  assert_true(mim_log_enabled(MIM_LOG_WARN));
  assert_false(mim_log_enabled(MIM_LOG_INFO));
  assert_false(mim_log_enabled(MIM_LOG_DEBUG));
  mim_log(MIM_LOG_ERROR, "error %d", 1);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.last_level, MIM_LOG_ERROR);
  assert_string_equal(r.last, "error 1");
  mim_log(MIM_LOG_WARN, "warn %s", "two");
  assert_int_equal(r.calls, 2);
  assert_string_equal(r.last, "warn two");
  mim_log(MIM_LOG_INFO, "info");
  mim_log(MIM_LOG_DEBUG, "debug");
  assert_int_equal(r.calls, 2);

  mim_set_log_callback(record_log, MIM_LOG_DEBUG, &r);
  mim_log(MIM_LOG_DEBUG, "debug now");
  assert_int_equal(r.calls, 3);
  assert_int_equal(r.last_level, MIM_LOG_DEBUG);

  /* NULL silences everything, whatever the level. */
  mim_set_log_callback(NULL, MIM_LOG_DEBUG, &r);
  assert_false(mim_log_enabled(MIM_LOG_ERROR));
  mim_log(MIM_LOG_ERROR, "silenced");
  assert_int_equal(r.calls, 3);
}

/* The one detail form for a server's RESOURCE_EXHAUSTED: the "err" entry wins, the
 * message's words are the fallback (as the official SDKs do), and the tag survives the
 * prefixes outer layers add. */
static void test_limit_detail_and_cause(void **state) {
  (void)state;
  char d[256];
  mim_format_limit_detail(d, sizeof d, "operations_rate_limit_exceeded", "slow down");
  assert_string_equal(d, "[err=operations_rate_limit_exceeded] Request rate limit exceeded "
                         "for this account: slow down");
  assert_int_equal(mim_limit_cause_of(d), MIM_LIMIT_OPERATIONS_RATE);
  assert_true(mim_limit_cause_is_throttling(mim_limit_cause_of(d)));

  char wrapped[300];
  snprintf(wrapped, sizeof wrapped, "join: fetching history: %s", d);
  assert_int_equal(mim_limit_cause_of(wrapped), MIM_LIMIT_OPERATIONS_RATE);

  static const struct {
    const char *err, *message;
    mim_limit_cause want;
    int throttling;
  } cases[] = {
      {"topic_subscriptions_limit_exceeded", "", MIM_LIMIT_TOPIC_SUBSCRIPTIONS, 0},
      {"throughput_rate_limit_exceeded", "x", MIM_LIMIT_THROUGHPUT_RATE, 1},
      {"request_size_limit_exceeded", "x", MIM_LIMIT_REQUEST_SIZE, 0},
      {"item_size_limit_exceeded", "x", MIM_LIMIT_ITEM_SIZE, 0},
      {"element_size_limit_exceeded", "x", MIM_LIMIT_ELEMENT_SIZE, 0},
      {"something_new", "x", MIM_LIMIT_UNKNOWN, 0},
      {NULL, "too many subscribers", MIM_LIMIT_TOPIC_SUBSCRIPTIONS, 0},
      {"", "too many operations", MIM_LIMIT_OPERATIONS_RATE, 1},
      {NULL, "throughput exceeded", MIM_LIMIT_THROUGHPUT_RATE, 1},
      {NULL, "quota", MIM_LIMIT_UNKNOWN, 0},
      {NULL, NULL, MIM_LIMIT_UNKNOWN, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mim_format_limit_detail(d, sizeof d, cases[i].err, cases[i].message);
    assert_int_equal(mim_limit_cause_of(d), cases[i].want);
    assert_int_equal(mim_limit_cause_is_throttling(cases[i].want), cases[i].throttling);
  }
  /* A cut tag and plain details carry no cause. */
  mim_format_limit_detail(d, 12, "item_size_limit_exceeded", "x");
  assert_int_equal(mim_limit_cause_of(d), MIM_LIMIT_UNKNOWN);
  assert_int_equal(mim_limit_cause_of("connection refused"), MIM_LIMIT_NONE);
  assert_int_equal(mim_limit_cause_of(NULL), MIM_LIMIT_NONE);

  assert_string_equal(mim_limit_cause_name(MIM_LIMIT_NONE), "none");
  assert_string_equal(mim_limit_cause_name(MIM_LIMIT_UNKNOWN), "unknown");
  assert_string_equal(mim_limit_cause_name((mim_limit_cause)99), "unknown");
  assert_string_equal(mim_limit_cause_name(MIM_LIMIT_ELEMENT_SIZE), "element_size_limit_exceeded");

  /* The thread's last error carries it too; a later plain failure clears it. */
  mim_fail_with_detail(MIM_ERR_RESOURCE_EXHAUSTED, d);
  assert_int_equal(mim_last_error_cause(), MIM_LIMIT_UNKNOWN);
  mim_format_limit_detail(d, sizeof d, "throughput_rate_limit_exceeded", "x");
  mim_fail_with_detail(MIM_ERR_RESOURCE_EXHAUSTED, d);
  assert_int_equal(mim_last_error_cause(), MIM_LIMIT_THROUGHPUT_RATE);
  mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "outbox full");
  assert_int_equal(mim_last_error_cause(), MIM_LIMIT_NONE);
}

static void test_version(void **state) {
  (void)state;
  assert_string_equal(mim_version(), MIM_VERSION_STRING);
  char want[32];
  snprintf(want, sizeof want, "%d.%d.%d", MIM_VERSION_MAJOR, MIM_VERSION_MINOR, MIM_VERSION_PATCH);
  assert_string_equal(mim_version(), want);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_status_from_grpc),       cmocka_unit_test(test_status_from_grpc_code),
      cmocka_unit_test(test_names_and_texts),        cmocka_unit_test(test_detail_basics),
      cmocka_unit_test(test_detail_thread_local),    cmocka_unit_test(test_log_callback),
      cmocka_unit_test(test_limit_detail_and_cause), cmocka_unit_test(test_version),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
