/* Internal: an outbox, the one send path of the library. An IM session has one (mim_send)
 * and the moderator one per chat (its forwards). Messages are sent one at a time, oldest
 * first (so each sender's messages, and a moderated chat's inputs, keep their order), and a
 * send that failed with a status worth retrying (connection lost, deadline, server hiccup)
 * is retried with exponential backoff and jitter until it succeeds or its send timeout
 * passes. Every message that was accepted gets exactly one final result through the
 * result function.
 *
 * With a list (client-only sessions, moderator forwards) a send = list push, then topic
 * publish; a retry after a successful push only re-publishes. A push whose answer was
 * lost is pushed again: the list may then hold the message twice, and readers drop the
 * repeat by id. Without a list (moderated sessions) a send = publish on the input topic. */
#ifndef MIM_LIB_OUTBOX_H
#define MIM_LIB_OUTBOX_H

#include <momento/client.h>
#include <momento/list.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct mim_outbox mim_outbox;

/* Final result of one message (id is 32 hex digits). Runs on the client's event thread,
 * or in the thread of mim_outbox_send (a start that failed at once) or of
 * mim_outbox_close (messages not sent before the flush deadline). */
typedef void (*mim_outbox_result_fn)(void *owner, const char *id, mim_status status,
                                     const char *detail);

typedef struct mim_outbox_config {
  mim_client *client;
  const char *cache;
  const char *list;  /* push here first; NULL = publish only (moderated input) */
  const char *topic; /* then publish here */
  const char *what;  /* names a message in logs and errors: "send" (NULL), "forward" */
  mim_list_write_options write_options;
  uint32_t limit;                 /* messages queued at most (> 0) */
  int64_t send_timeout_ms;        /* no new attempt once a message is older than this */
  mim_outbox_result_fn on_result; /* may be NULL */
  void *owner;
} mim_outbox_config;

/* MIM_ERR_NO_MEMORY. Strings of cfg are copied (what is not: a string literal). */
mim_status mim_outbox_new(const mim_outbox_config *cfg, mim_outbox **out);

/* Queues json (ownership taken, also on error) of message id. An envelope longer than
 * the client's max_topic_payload_bytes is refused at once (MIM_ERR_INVALID_ARGUMENT, the
 * sizes and the option in the detail; no result call). When wait_ms > 0 and
 * no earlier message is being retried, blocks until the first attempt has finished, but
 * at most wait_ms (a hung network must not hold the caller): its success gives MIM_OK
 * (and a result MIM_OK later), a failure worth retrying gives MIM_OK (queued; the
 * result comes later), any other failure is returned (detail set) and has no result
 * call. When wait_ms passes first, or wait_ms is 0, returns MIM_OK once queued (the
 * result comes later). MIM_ERR_RESOURCE_EXHAUSTED when `limit` messages are queued;
 * MIM_ERR_CANCELLED after close began. */
mim_status mim_outbox_send(mim_outbox *ob, const char *id, char *json, size_t len, int64_t wait_ms);

/* Waits up to flush_ms for the queue to empty, then reports each message still queued
 * with MIM_ERR_CANCELLED, waits for the call in flight (bounded by its deadline) and
 * frees. NULL is ignored. Must not be called on the event thread. */
void mim_outbox_close(mim_outbox *ob, int64_t flush_ms);

/* mim_outbox_close with the flush ending at `until` (CLOCK_MONOTONIC, from cmn_deadline_after_ms in
 * common/clock.h): several outboxes closed one after another share one flush time. */
void mim_outbox_close_until(mim_outbox *ob, struct timespec until);

/* True for statuses a send is retried on. Also retried, a few times: UNAUTHENTICATED
 * when the client fetches its tokens from a token URL (the refusal makes it fetch a
 * fresh one). */
bool mim_outbox_retryable(mim_status status);

#endif
