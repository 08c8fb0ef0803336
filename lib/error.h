/* Internal: setting the thread-local error detail and logging. */
#ifndef MIM_LIB_ERROR_H
#define MIM_LIB_ERROR_H

#include <momento/common.h>

/* Records a printf-style detail for the calling thread and returns status, so a
 * failing path reads `return mim_fail(MIM_ERR_..., "what went wrong: %s", why);`.
 * Never pass a key or token as an argument. */
mim_status mim_fail(mim_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Argument errors name the public function they came from ("mim_join: chat_id is
 * NULL"), whatever helper found them. mim_arg_in passes status through and, when it is
 * MIM_ERR_INVALID_ARGUMENT, puts "fn: " before the detail unless the detail already
 * begins with a function name ("mim_...: "). mim_arg_fail is mim_fail for
 * MIM_ERR_INVALID_ARGUMENT with "fn: " in front. Public functions pass __func__. */
mim_status mim_arg_in(const char *fn, mim_status status);
mim_status mim_arg_fail(const char *fn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears the calling thread's detail (called at the start of public calls). */
void mim_clear_error(void);

/* Copies a detail into the calling thread's slot as-is (used when a status and its
 * detail were produced on another thread, e.g. the event thread). */
mim_status mim_fail_with_detail(mim_status status, const char *detail);

/* Sends one line to the installed log callback if its level is enabled. */
void mim_log(mim_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when messages at this level would reach a callback (skip costly formatting). */
int mim_log_enabled(mim_log_level level);

/* Maps a numeric gRPC status code (0..16, as on the wire in grpc-status) to a mim_status;
 * any other number is MIM_ERR_UNKNOWN. Both names share one table (lib/error.c): the
 * int form is what the gRPC core transport holds, the long form what a parser yields. */
mim_status mim_status_from_grpc(int grpc_code);
mim_status mim_status_from_grpc_code(long code);

/* The detail of a server's RESOURCE_EXHAUSTED, in the one form every transport uses:
 * "[err=CAUSE] <what hosted Momento's SDKs say for it>: <server message>". err_value is
 * the "err" trailing metadata entry (NULL or "" when absent: the cause is then read from
 * words of the message, as the official SDKs do). The "[err=...]" tag comes first so it
 * survives the prefixes outer layers add and the truncation of long details;
 * mim_limit_cause_of() finds it anywhere in a detail. Writes at most cap bytes. */
void mim_format_limit_detail(char *out, size_t cap, const char *err_value, const char *message);

/* A server throttling us: RESOURCE_EXHAUSTED whose cause (in its detail) is the
 * operations or throughput rate. The one test the outbox, re-subscribes and the
 * statistics use. */
int mim_throttled(mim_status status, const char *detail);

/* No retry after a throttling refusal comes sooner than this: the server's budgets are
 * per second, so a quick retry is refused again. */
#define MIM_THROTTLE_FLOOR_MS 500

#endif
