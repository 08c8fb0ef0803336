/* The outbox of a session or of a moderated chat: see outbox.h.
 *
 * Threading. The queue is shared by the caller threads (mim_outbox_send, close) and the
 * event thread (completions, backoff timers), so it is guarded by mu. Only the head is
 * ever in flight. `busy` says an attempt or a backoff timer for the head is
 * outstanding; `tokens` counts the chains of callbacks (caller kick, push, publish,
 * timer) still to come that will touch the outbox: close waits for zero before
 * freeing. The head is never freed while busy. */
#include "outbox.h"

#include "backoff.h"
#include "client_internal.h"
#include "clock.h"
#include "envelope.h"
#include "error.h"
#include "stats.h"

#include <momento/topics.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_BASE_MS 50
#define BACKOFF_MAX_MS 2000
/* UNAUTHENTICATED retries of one message (client with a token URL): the backoffs add up
 * to ~3 s at most (~1.6 s on average), time enough for a fresh token; a vendor that keeps handing
 * out tokens the server refuses is not waited for until the send timeout. */
#define MAX_AUTH_RETRIES 6
/* A server throttling us (Momento's operations or throughput rate, per second) is not
 * helped by a quick retry: these backoffs start at half a second. Their cap stays that
 * of the other retries, because close (mim_leave) waits for a pending backoff timer. */
#define THROTTLE_MAX_MS BACKOFF_MAX_MS

/* A mim_outbox_send waiting for the first attempt of its message (on its stack). */
typedef struct waiter {
  bool done;
  mim_status status; /* MIM_OK: sent or queued for retry */
  char detail[256];
} waiter;

typedef struct entry {
  struct entry *next;
  char id[MIM_ENVELOPE_ID_SIZE];
  char *json;
  size_t len;
  bool pushed; /* the list push succeeded: only the publish is left */
  unsigned failures;
  unsigned auth_failures; /* of them UNAUTHENTICATED */
  unsigned throttles;     /* of them refusals for the operations or throughput rate */
  int64_t enqueued_ms;
  waiter *waiter; /* NULL when nobody waits (any more) */
} entry;

struct mim_outbox {
  mim_client *client;
  char *cache, *list, *topic;
  const char *what;
  mim_list_write_options wo;
  uint32_t limit;
  int64_t send_timeout_ms;
  mim_outbox_result_fn on_result;
  void *owner;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  entry *head, *tail;
  size_t count;
  bool busy;
  bool failing; /* the head failed at least once and is being retried */
  bool closed;
  int tokens;
  cmn_rng rng; /* backoff jitter */
};

bool mim_outbox_retryable(mim_status st) {
  return st == MIM_ERR_UNAVAILABLE || st == MIM_ERR_DEADLINE_EXCEEDED || st == MIM_ERR_CANCELLED ||
         st == MIM_ERR_INTERNAL || st == MIM_ERR_UNKNOWN;
}

/* Full-jitter exponential backoff: a delay in [0, d], d = min(max, base * 2^(failures-1)). */
static int64_t backoff_ms_locked(mim_outbox *ob, unsigned failures) {
  return cmn_backoff_full_jitter_ms(&ob->rng, BACKOFF_BASE_MS, BACKOFF_MAX_MS, failures - 1);
}

static void attempt_done(mim_outbox *ob, mim_status st, const char *detail);

/* A refused token is worth a retry only when the client can replace it: with a token
 * URL the transport has already asked for a fresh one when the call was refused, so the
 * retry after the backoff goes out with it. Counts the failure (mu held). */
static bool auth_retryable_locked(mim_outbox *ob, entry *e, mim_status st) {
  return st == MIM_ERR_UNAUTHENTICATED && mim_client_refreshes_tokens(ob->client) &&
         ++e->auth_failures <= MAX_AUTH_RETRIES;
}

/* Starts the next step of the head's send (holding a token). */
static void issue(mim_outbox *ob, entry *e);

static void on_publish(void *user, mim_status st, const char *detail) {
  attempt_done(user, st, detail);
}

static void on_push(void *user, mim_status st, const char *detail, uint32_t new_length) {
  (void)new_length;
  mim_outbox *ob = user;
  if (st != MIM_OK) {
    attempt_done(ob, st, detail);
    return;
  }
  pthread_mutex_lock(&ob->mu);
  bool closed = ob->closed;
  entry *e = ob->head;
  if (!closed)
    e->pushed = true;
  pthread_mutex_unlock(&ob->mu);
  if (closed)
    attempt_done(ob, MIM_ERR_CANCELLED, "the outbox closed");
  else
    issue(ob, e);
}

static void issue(mim_outbox *ob, entry *e) {
  mim_status st;
  if (ob->list && !e->pushed)
    st = mim_list_push_back_async(ob->client, ob->cache, ob->list, e->json, e->len, &ob->wo,
                                  on_push, ob);
  else
    st = mim_topic_publish_text_async(ob->client, ob->cache, ob->topic, e->json, on_publish, ob);
  if (st != MIM_OK)
    attempt_done(ob, st, mim_last_error_detail()); /* no callback will come */
}

/* Passes the caller's token to an attempt of the head when one can start; otherwise
 * gives the token back. */
static void continue_with_token(mim_outbox *ob) {
  pthread_mutex_lock(&ob->mu);
  entry *e = NULL;
  if (!ob->closed && !ob->busy && ob->head) {
    ob->busy = true;
    e = ob->head;
  } else {
    ob->tokens--;
    pthread_cond_broadcast(&ob->cv);
  }
  pthread_mutex_unlock(&ob->mu);
  if (e)
    issue(ob, e);
}

static void on_timer(void *user) {
  mim_outbox *ob = user;
  pthread_mutex_lock(&ob->mu);
  ob->busy = false;
  pthread_mutex_unlock(&ob->mu);
  continue_with_token(ob);
}

/* RESOURCE_EXHAUSTED for a rate (not a size, not an unknown cause): worth a slow retry.
 * Counts the throttle (mu held). */
static bool throttled_locked(entry *e, mim_status st, const char *detail) {
  if (!mim_throttled(st, detail))
    return false;
  e->throttles++;
  return true;
}

/* Schedules the next attempt of the head (mu held). false when no timer can be set. */
static bool schedule_retry_locked(mim_outbox *ob, entry *e, bool throttled) {
  int64_t delay = throttled ? cmn_backoff_floor_jitter_ms(&ob->rng, MIM_THROTTLE_FLOOR_MS,
                                                          THROTTLE_MAX_MS, e->throttles - 1)
                            : backoff_ms_locked(ob, e->failures);
  /* Not cancelled by close (a timer pointer may dangle once it has run): close waits
   * for it instead, at most BACKOFF_MAX_MS. */
  return mim_transport_timer(mim_client_transport(ob->client), delay, on_timer, ob, NULL) == MIM_OK;
}

static void pop_head_locked(mim_outbox *ob) {
  ob->head = ob->head->next;
  if (!ob->head)
    ob->tail = NULL;
  ob->count--;
  ob->busy = false;
  ob->failing = false;
  pthread_cond_broadcast(&ob->cv);
}

/* Wakes the mim_outbox_send waiting for e, if any (mu held). */
static void answer_locked(mim_outbox *ob, entry *e, mim_status st, const char *detail) {
  if (!e->waiter)
    return;
  e->waiter->status = st;
  snprintf(e->waiter->detail, sizeof e->waiter->detail, "%s", detail ? detail : "");
  e->waiter->done = true;
  e->waiter = NULL;
  pthread_cond_broadcast(&ob->cv);
}

static void attempt_done(mim_outbox *ob, mim_status st, const char *detail) {
  pthread_mutex_lock(&ob->mu);
  if (ob->closed) {
    /* close has reported the head already: only the token is left to return. */
    ob->busy = false;
    ob->tokens--;
    pthread_cond_broadcast(&ob->cv);
    pthread_mutex_unlock(&ob->mu);
    return;
  }
  entry *e = ob->head;
  if (st != MIM_OK) {
    e->failures++;
    bool in_time = cmn_mono_ms() - e->enqueued_ms < ob->send_timeout_ms;
    bool throttled = throttled_locked(e, st, detail);
    bool retryable = throttled || mim_outbox_retryable(st) || auth_retryable_locked(ob, e, st);
    if (retryable && in_time && schedule_retry_locked(ob, e, throttled)) {
      mim_stats_retry(ob->client);
      mim_log(MIM_LOG_INFO, "%s %s: %s%s, retry %u", ob->what, e->id, mim_status_name(st),
              throttled ? " (throttled)" : "", e->failures);
      ob->failing = true;
      /* Callers waiting for a first attempt behind (or of) this one now only wait for
       * the retry: tell them their message is queued. */
      for (entry *w = e; w; w = w->next)
        answer_locked(ob, w, MIM_OK, "");
      pthread_mutex_unlock(&ob->mu); /* the timer holds the token now */
      return;
    }
  }
  pop_head_locked(ob);
  /* A first attempt that failed for good is the waiting mim_send's to return. */
  bool report = !(e->waiter && st != MIM_OK);
  answer_locked(ob, e, st, detail);
  pthread_mutex_unlock(&ob->mu);
  if (report) {
    if (st != MIM_OK)
      mim_log(MIM_LOG_WARN, "%s %s failed after %u attempts: %s", ob->what, e->id, e->failures,
              mim_status_name(st));
    if (ob->on_result)
      ob->on_result(ob->owner, e->id, st, detail ? detail : "");
  }
  free(e->json);
  free(e);
  continue_with_token(ob);
}

mim_status mim_outbox_new(const mim_outbox_config *cfg, mim_outbox **out) {
  mim_outbox *ob = calloc(1, sizeof *ob);
  if (!ob)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  ob->client = cfg->client;
  ob->cache = strdup(cfg->cache);
  ob->topic = strdup(cfg->topic);
  ob->list = cfg->list ? strdup(cfg->list) : NULL;
  ob->what = cfg->what ? cfg->what : "send";
  ob->wo = cfg->write_options;
  ob->limit = cfg->limit;
  ob->send_timeout_ms = cfg->send_timeout_ms;
  ob->on_result = cfg->on_result;
  ob->owner = cfg->owner;
  cmn_rng_seed(&ob->rng);
  pthread_mutex_init(&ob->mu, NULL);
  cmn_cond_init_monotonic(&ob->cv); /* close waits on it with a deadline */
  if (!ob->cache || !ob->topic || (cfg->list && !ob->list)) {
    mim_outbox_close(ob, 0);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  }
  *out = ob;
  return MIM_OK;
}

/* Appends a new entry (mu held). */
static mim_status enqueue_locked(mim_outbox *ob, entry *e) {
  if (ob->closed)
    return mim_fail(MIM_ERR_CANCELLED, "%s %s: the outbox is closing", ob->what, e->id);
  if (ob->count >= ob->limit)
    return mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "%s %s: outbox full (%u messages queued)", ob->what,
                    e->id, (unsigned)ob->limit);
  if (ob->tail)
    ob->tail->next = e;
  else
    ob->head = e;
  ob->tail = e;
  ob->count++;
  return MIM_OK;
}

/* Waits for w (mu held) until `until`. On timeout the message stays queued and its
 * waiter is detached, so its outcome goes to the result function like any other. e is
 * alive while w is not done: an entry is freed only after its waiter was answered. */
static void wait_first_attempt_locked(mim_outbox *ob, entry *e, waiter *w,
                                      const struct timespec *until) {
  while (!w->done) {
    if (pthread_cond_timedwait(&ob->cv, &ob->mu, until) != 0 && !w->done) {
      e->waiter = NULL;
      w->done = true;
      w->status = MIM_OK;
    }
  }
}

/* The topic refuses a payload over its limit for good (hosted Momento: 4 KB, hard):
 * better said now, before anything is queued, than as a failed send later. The envelope
 * is published as it is, so its length is the payload. */
static mim_status check_payload(const mim_outbox *ob, const char *id, size_t len) {
  size_t max = mim_client_max_topic_payload(ob->client);
  if (len <= max)
    return MIM_OK;
  return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                  "%s %s: the message envelope is %zu bytes, over the topic payload limit of %zu "
                  "bytes (hosted Momento's is 4 KB; mim_client_options.max_topic_payload_bytes "
                  "sets it)",
                  ob->what, id, len, max);
}

mim_status mim_outbox_send(mim_outbox *ob, const char *id, char *json, size_t len,
                           int64_t wait_ms) {
  mim_status size_st = check_payload(ob, id, len);
  if (size_st != MIM_OK) {
    free(json);
    return size_st;
  }
  entry *e = calloc(1, sizeof *e);
  if (!e) {
    free(json);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  }
  snprintf(e->id, sizeof e->id, "%s", id);
  e->json = json;
  e->len = len;
  e->enqueued_ms = cmn_mono_ms();
  struct timespec until = cmn_deadline_after_ms(wait_ms);
  pthread_mutex_lock(&ob->mu);
  mim_status st = enqueue_locked(ob, e);
  if (st != MIM_OK) {
    pthread_mutex_unlock(&ob->mu);
    free(json);
    free(e);
    return st;
  }
  /* Behind a message being retried the first attempt may be far away: do not wait. */
  waiter w = {.done = false};
  bool waiting = wait_ms > 0 && !ob->failing;
  e->waiter = waiting ? &w : NULL;
  ob->tokens++;
  pthread_mutex_unlock(&ob->mu);
  continue_with_token(ob); /* e may be freed from here on unless w is still waited for */
  if (!waiting)
    return MIM_OK;
  pthread_mutex_lock(&ob->mu);
  wait_first_attempt_locked(ob, e, &w, &until);
  pthread_mutex_unlock(&ob->mu);
  return w.status == MIM_OK ? MIM_OK : mim_fail_with_detail(w.status, w.detail);
}

void mim_outbox_close(mim_outbox *ob, int64_t flush_ms) {
  mim_outbox_close_until(ob, cmn_deadline_after_ms(flush_ms));
}

static bool queue_empty(void *arg) {
  return ((mim_outbox *)arg)->head == NULL;
}

static bool no_tokens(void *arg) {
  return ((mim_outbox *)arg)->tokens == 0;
}

void mim_outbox_close_until(mim_outbox *ob, struct timespec until) {
  if (!ob)
    return;
  pthread_mutex_lock(&ob->mu);
  /* In loop mode on the loop thread these waits run the loop. */
  (void)mim_client_wait_locked(ob->client, &ob->mu, &ob->cv, queue_empty, ob, &until);
  ob->closed = true;
  for (entry *e = ob->head; e; e = e->next) /* (misuse: a mim_send still waiting) */
    answer_locked(ob, e, MIM_ERR_CANCELLED, "the outbox is closing");
  entry *left = ob->head;
  ob->head = ob->tail = NULL;
  ob->count = 0;
  pthread_mutex_unlock(&ob->mu);
  /* Nothing is dropped silently: each message still queued gets its result. The one in
   * flight may still reach the server. */
  for (entry *e = left; e; e = e->next) {
    mim_log(MIM_LOG_WARN, "%s %s not completed before the outbox closed", ob->what, e->id);
    if (ob->on_result)
      ob->on_result(ob->owner, e->id, MIM_ERR_CANCELLED,
                    "closed (leave or stop) before the message was sent (flush timeout)");
  }
  pthread_mutex_lock(&ob->mu);
  (void)mim_client_wait_locked(ob->client, &ob->mu, &ob->cv, no_tokens, ob, NULL);
  pthread_mutex_unlock(&ob->mu);
  while (left) {
    entry *next = left->next;
    free(left->json);
    free(left);
    left = next;
  }
  pthread_mutex_destroy(&ob->mu);
  pthread_cond_destroy(&ob->cv);
  free(ob->cache);
  free(ob->list);
  free(ob->topic);
  free(ob);
}
