/*
 * Momento Topics over /cache_client.pubsub.Pubsub: unary Publish and a kept-alive
 * Subscribe stream per subscription.
 *
 * Threading model of a subscription
 * ---------------------------------
 * Everything that drives a subscription (starting streams, reading items, the heartbeat
 * watchdog, reconnect backoff, teardown) runs on the client's event thread, as transport
 * stream callbacks or timers; only the first stream and its confirmation deadline are
 * started by the subscribing thread, under sub->mu, which every handler takes first.
 * Timers are only ever cancelled on the event thread, because from another thread a
 * timer handle may already be freed (its callback returned) by the time we use it.
 *
 * Shared with other threads, under sub->mu: `closing` (no user callback may start once it
 * is set), `cb_running` (a user callback is executing), the state, the result of the first
 * attempt (for the blocking subscribe) and the teardown hand-shake. User callbacks are
 * always invoked with sub->mu released.
 *
 * mim_topic_unsubscribe:
 *  - on the event thread (inside any callback): sets closing and tears down inline
 *    (cancel stream and timers). If it is inside one of this subscription's callbacks the
 *    memory stays alive through that handler's reference and is freed afterwards.
 *  - on another thread: sets closing, waits until no user callback of this subscription
 *    is running, then posts a teardown timer and waits for it, so nothing of the
 *    subscription is left pending in the transport (mim_client_free may follow at once).
 * Memory is reference counted: the owner, the live stream, each pending timer.
 *
 * Resume: after an item the library resumes at its sequence + 1 in its page. If the
 * subscription was lost before it ever saw an item or a discontinuity (and no resume_at
 * was given), it does not know where it was: it re-subscribes live only, and when the
 * first item of that new stream has a sequence above 1 it first reports
 * on_discontinuity(0, seq, page) as a conservative "values may have been missed" signal.
 */
#include "backoff.h"
#include "client_internal.h"
#include "clock.h"
#include "error.h"
#include "pb.h"
#include "pb_call.h"
#include "stats.h"
#include "struct_size.h"
#include "utf8.h"

#include <cachepubsub.pb-c.h>
#include <common.pb-c.h>
#include <momento/topics.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PUBLISH_PATH "/cache_client.pubsub.Pubsub/Publish"
#define SUBSCRIBE_PATH "/cache_client.pubsub.Pubsub/Subscribe"

#define DEFAULT_HEARTBEAT_TIMEOUT_MS 30000
#define DEFAULT_BACKOFF_INITIAL_MS 100
#define DEFAULT_BACKOFF_MAX_MS 5000
#define DETAIL_LEN 256

/* ---- validation ---- */

static mim_status check_target(const mim_client *c, const char *cache, const char *topic) {
  mim_clear_error();
  if (!c)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  mim_status st = mim_check_cache_name(cache);
  return st == MIM_OK ? mim_check_topic_name(topic) : st;
}

/* ---- publish ---- */

/* The response is common._Empty: nothing in it is read. */
static const mim_pb_method publish_method = {MIM_HOST_CACHE, PUBLISH_PATH, NULL, false};

/* A publish request and the value it points at, in the caller's storage. */
typedef struct publish_msg {
  CacheClient__Pubsub__TopicValue value;
  CacheClient__Pubsub__PublishRequest req;
} publish_msg;

/* Fills m; value is text when is_text (data NUL-terminated) else bytes. */
static const ProtobufCMessage *publish_request(const char *cache, const char *topic, bool is_text,
                                               const void *data, size_t len, publish_msg *m) {
  CacheClient__Pubsub__TopicValue v = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__INIT;
  if (is_text) {
    v.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT;
    v.text = (char *)data; /* protobuf-c only reads it */
  } else {
    v.kind_case = CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY;
    v.binary.len = len;
    v.binary.data = (uint8_t *)data;
  }
  CacheClient__Pubsub__PublishRequest req = CACHE_CLIENT__PUBSUB____PUBLISH_REQUEST__INIT;
  m->value = v;
  m->req = req;
  m->req.cache_name = (char *)cache;
  m->req.topic = (char *)topic;
  m->req.value = &m->value;
  return &m->req.base;
}

static mim_status check_publish(const mim_client *c, const char *cache, const char *topic,
                                bool is_text, const void *data, size_t len) {
  mim_status st = check_target(c, cache, topic);
  if (st != MIM_OK)
    return st;
  if (is_text) {
    if (!data)
      return mim_fail(MIM_ERR_INVALID_ARGUMENT, "text is NULL");
    size_t bad = cmn_utf8_invalid_at(data, strlen(data));
    if (bad != SIZE_MAX)
      return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                      "text is not valid UTF-8 (byte %zu); publish it as binary", bad);
  } else if (!data && len > 0) {
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "data is NULL but len is %zu", len);
  }
  return MIM_OK;
}

static mim_status publish_sync(mim_client *c, const char *cache, const char *topic, bool is_text,
                               const void *data, size_t len) {
  mim_status st = check_publish(c, cache, topic, is_text, data, len);
  if (st != MIM_OK)
    return st;
  publish_msg m;
  return mim_pb_call(c, &publish_method, cache,
                     publish_request(cache, topic, is_text, data, len, &m), NULL);
}

MIM_API mim_status mim_topic_publish_text(mim_client *client, const char *cache, const char *topic,
                                          const char *text) {
  return publish_sync(client, cache, topic, true, text, 0);
}

MIM_API mim_status mim_topic_publish_binary(mim_client *client, const char *cache,
                                            const char *topic, const void *data, size_t len) {
  return publish_sync(client, cache, topic, false, data, len);
}

static void publish_done(const mim_pb_pending *call, mim_status st, const char *detail,
                         const ProtobufCMessage *resp) {
  (void)resp; /* common._Empty */
  mim_publish_cb cb = (mim_publish_cb)call->user_fn;
  if (cb)
    cb(call->user, st, detail);
}

static mim_status publish_async(mim_client *c, const char *cache, const char *topic, bool is_text,
                                const void *data, size_t len, mim_publish_cb cb, void *user) {
  mim_status st = check_publish(c, cache, topic, is_text, data, len);
  if (st != MIM_OK)
    return st;
  publish_msg m;
  return mim_pb_call_async(c, &publish_method, cache,
                           publish_request(cache, topic, is_text, data, len, &m), publish_done,
                           (mim_pb_user_fn)cb, user);
}

MIM_API mim_status mim_topic_publish_text_async(mim_client *client, const char *cache,
                                                const char *topic, const char *text,
                                                mim_publish_cb cb, void *user) {
  return publish_async(client, cache, topic, true, text, 0, cb, user);
}

MIM_API mim_status mim_topic_publish_binary_async(mim_client *client, const char *cache,
                                                  const char *topic, const void *data, size_t len,
                                                  mim_publish_cb cb, void *user) {
  return publish_async(client, cache, topic, false, data, len, cb, user);
}

/* ---- subscription state ---- */

struct mim_subscription {
  mim_transport *t;
  mim_client *client; /* outlives the subscription; asked for a fresh token */
  char *cache;
  char *topic;
  mim_subscription_callbacks cb;
  int64_t hb_timeout_ms;
  int64_t backoff_initial_ms;
  int64_t backoff_max_ms;
  int64_t confirm_timeout_ms; /* first attempt: the client's default deadline */
  atomic_int refs;
  atomic_uint_fast64_t last_seq; /* what the accessors report */
  atomic_uint_fast64_t last_page;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  /* Guarded by mu. */
  mim_subscription_state state;
  bool closing;    /* unsubscribed: no user callback may start */
  bool cb_running; /* a user callback is executing on the event thread */
  bool sync_first; /* blocking subscribe: a failed first attempt is returned, not reported */
  bool first_done; /* the first attempt was confirmed or failed */
  mim_status first_status;
  char first_detail[DETAIL_LEN];
  bool teardown_done;

  /* Event thread only. */
  mim_call *call;
  mim_timer *backoff_timer, *watchdog_timer;
  bool ever_confirmed;     /* some stream was confirmed: later failures reconnect */
  bool stream_confirmed;   /* the current stream delivered its first item */
  bool watchdog_tripped;   /* we cancelled the current stream for silence */
  mim_status stream_error; /* we cancelled the current stream for a protocol error */
  bool have_position;      /* resume_next/resume_page are meaningful */
  uint64_t resume_next;
  uint64_t resume_page;
  bool blind_stream; /* current stream re-subscribed live-only after a loss */
  int attempt;       /* failed attempts since the last confirmation */
  int64_t last_rx_ms;
  cmn_rng rng;
  uint8_t *scratch; /* NUL-terminated copy of a binary value */
  size_t scratch_cap;
};

static void sub_ref(mim_subscription *s) {
  atomic_fetch_add(&s->refs, 1);
}

static void sub_destroy(mim_subscription *s) {
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->cache);
  free(s->topic);
  free(s->scratch);
  free(s);
}

static void sub_unref(mim_subscription *s) {
  if (atomic_fetch_sub(&s->refs, 1) == 1)
    sub_destroy(s);
}

/* Drops a reference that cannot be the last because the caller holds another one (a
 * timer or stream that never started, a cancelled timer). Never frees: s stays valid
 * for the caller, which the code after these calls relies on. */
static void sub_unref_not_last(mim_subscription *s) {
  atomic_fetch_sub(&s->refs, 1);
}

/* Lets one user callback run unless the subscription is closing, and marks it running
 * so a foreign unsubscribe can wait for it. Called on the event thread without mu. */
static bool cb_begin(mim_subscription *s) {
  pthread_mutex_lock(&s->mu);
  bool ok = !s->closing;
  if (ok)
    s->cb_running = true;
  pthread_mutex_unlock(&s->mu);
  return ok;
}

static void cb_end(mim_subscription *s) {
  pthread_mutex_lock(&s->mu);
  s->cb_running = false;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void notify_state(mim_subscription *s, mim_subscription_state st, mim_status status,
                         const char *detail) {
  if (!s->cb.on_state || !cb_begin(s))
    return;
  s->cb.on_state(s->cb.user, st, status, detail ? detail : "");
  cb_end(s);
}

static void notify_heartbeat(mim_subscription *s) {
  if (!s->cb.on_heartbeat || !cb_begin(s))
    return;
  s->cb.on_heartbeat(s->cb.user);
  cb_end(s);
}

static void notify_discontinuity(mim_subscription *s, uint64_t last, uint64_t next, uint64_t page) {
  if (!s->cb.on_discontinuity || !cb_begin(s))
    return;
  s->cb.on_discontinuity(s->cb.user, last, next, page);
  cb_end(s);
}

static void notify_item(mim_subscription *s, const mim_topic_item *item) {
  if (!cb_begin(s))
    return;
  s->cb.on_item(s->cb.user, item);
  cb_end(s);
}

/* ---- timers (event thread) ---- */

static void watchdog_fired(void *user);
static void backoff_fired(void *user);

/* Arms a timer holding one reference; on failure nothing is armed. */
static bool arm_timer(mim_subscription *s, int64_t delay_ms, void (*cb)(void *), mim_timer **slot) {
  sub_ref(s);
  if (mim_transport_timer(s->t, delay_ms, cb, s, slot) != MIM_OK) {
    *slot = NULL;
    sub_unref_not_last(s); /* the caller holds one */
    return false;
  }
  return true;
}

/* Cancels a pending timer of ours from the event thread (it cannot be running then).
 * Callers run in a handler or the owner's call, which holds a reference of its own. */
static void disarm_timer(mim_subscription *s, mim_timer **slot) {
  if (*slot && mim_timer_cancel(*slot))
    sub_unref_not_last(s);
  *slot = NULL;
}

static int64_t current_silence_limit(const mim_subscription *s) {
  return s->ever_confirmed ? s->hb_timeout_ms : s->confirm_timeout_ms;
}

static void arm_watchdog(mim_subscription *s, int64_t delay_ms) {
  if (!arm_timer(s, delay_ms, watchdog_fired, &s->watchdog_timer))
    mim_log(MIM_LOG_WARN, "topics: could not arm the heartbeat watchdog for %s", s->topic);
}

/* ---- stream ---- */

static void stream_message(void *user, const uint8_t *msg, size_t len);
static void stream_closed(void *user, mim_status status, const char *detail);

/* Starts one Subscribe stream and (re)arms the watchdog: until the first confirmation
 * it is the deadline of the first attempt, then the heartbeat timeout. On MIM_OK the
 * stream holds a reference. */
static mim_status start_stream(mim_subscription *s) {
  CacheClient__Pubsub__SubscriptionRequest req = CACHE_CLIENT__PUBSUB____SUBSCRIPTION_REQUEST__INIT;
  req.cache_name = s->cache;
  req.topic = s->topic;
  s->blind_stream = s->ever_confirmed && !s->have_position;
  if (s->have_position) {
    req.resume_at_topic_sequence_number = s->resume_next;
    req.sequence_page = s->resume_page;
  }
  mim_pb_buf buf;
  mim_status st = mim_pb_pack(&req.base, &buf);
  if (st != MIM_OK)
    return st;
  mim_stream_callbacks cbs = {stream_message, stream_closed, s};
  s->stream_confirmed = false;
  s->watchdog_tripped = false;
  s->stream_error = MIM_OK;
  sub_ref(s);
  st = mim_transport_stream(s->t, MIM_HOST_CACHE, SUBSCRIBE_PATH, s->cache, buf.data, buf.len, 0,
                            &cbs, &s->call);
  if (st == MIM_OK) /* a stream started after a confirmed one is a re-subscribe */
    mim_stats_subscribe(s->client, buf.len, s->ever_confirmed);
  mim_pb_buf_release(&buf);
  if (st != MIM_OK) {
    s->call = NULL;
    sub_unref_not_last(s); /* the stream never started; the caller holds one */
    return st;
  }
  s->last_rx_ms = cmn_mono_ms();
  disarm_timer(s, &s->watchdog_timer);
  arm_watchdog(s, current_silence_limit(s));
  return MIM_OK;
}

/* Ends the subscription for good (non-retryable status or failed first attempt). */
static void close_for_good(mim_subscription *s, mim_status status, const char *detail) {
  disarm_timer(s, &s->watchdog_timer);
  disarm_timer(s, &s->backoff_timer);
  pthread_mutex_lock(&s->mu);
  bool report = !(s->sync_first && !s->ever_confirmed);
  s->state = MIM_SUB_CLOSED;
  if (!s->first_done) {
    s->first_done = true;
    s->first_status = status;
    snprintf(s->first_detail, sizeof s->first_detail, "%s", detail ? detail : "");
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (report)
    notify_state(s, MIM_SUB_CLOSED, status, detail);
}

static bool retryable(mim_status st) {
  switch (st) {
  case MIM_OK: /* the server ended the stream: keep the subscription alive */
  case MIM_ERR_UNAVAILABLE:
  case MIM_ERR_DEADLINE_EXCEEDED:
  case MIM_ERR_INTERNAL:
  case MIM_ERR_UNKNOWN:
  case MIM_ERR_RESOURCE_EXHAUSTED:
  case MIM_ERR_CANCELLED: /* e.g. the server cancelled it on shutdown */
  case MIM_ERR_PROTOCOL:
    return true;
  default:
    return false;
  }
}

/* Exponential backoff with full jitter: uniform in [0, min(max, initial * 2^attempt)];
 * after a throttling refusal never below MIM_THROTTLE_FLOOR_MS. */
static int64_t backoff_delay(mim_subscription *s, bool throttle) {
  int64_t delay = throttle ? cmn_backoff_floor_jitter_ms(&s->rng, MIM_THROTTLE_FLOOR_MS,
                                                         s->backoff_max_ms, (unsigned)s->attempt)
                           : cmn_backoff_full_jitter_ms(&s->rng, s->backoff_initial_ms,
                                                        s->backoff_max_ms, (unsigned)s->attempt);
  if (s->attempt < 62)
    s->attempt++;
  return delay;
}

static void schedule_reconnect(mim_subscription *s, mim_status status, const char *detail) {
  disarm_timer(s, &s->watchdog_timer);
  pthread_mutex_lock(&s->mu);
  bool changed = s->state != MIM_SUB_RECONNECTING;
  s->state = MIM_SUB_RECONNECTING;
  pthread_mutex_unlock(&s->mu);
  int64_t delay = backoff_delay(s, mim_throttled(status, detail));
  mim_log(MIM_LOG_INFO, "topics: stream of %s lost (%s: %s); re-subscribing in %lld ms (backoff)",
          s->topic, mim_status_name(status), detail ? detail : "", (long long)delay);
  if (!arm_timer(s, delay, backoff_fired, &s->backoff_timer)) {
    /* Only when the client is being freed (or out of memory): nothing can retry. */
    close_for_good(s, MIM_ERR_CANCELLED, "could not schedule a re-subscribe");
    return;
  }
  if (changed)
    notify_state(s, MIM_SUB_RECONNECTING, status, detail);
}

/* A stream attempt failed or ended: decide between reconnecting and closing. */
static void handle_stream_end(mim_subscription *s, mim_status status, const char *detail) {
  mim_stats_stream_end(s->client, status, detail);
  char buf[DETAIL_LEN];
  if (s->watchdog_tripped) {
    status = s->ever_confirmed ? MIM_ERR_UNAVAILABLE : MIM_ERR_DEADLINE_EXCEEDED;
    snprintf(buf, sizeof buf, "%s within %lld ms",
             s->ever_confirmed ? "no item or heartbeat" : "subscription not confirmed",
             (long long)current_silence_limit(s));
    detail = buf;
  } else if (s->stream_error != MIM_OK) {
    status = s->stream_error;
    detail = "undecodable subscription item";
  } else if (status == MIM_OK && !s->ever_confirmed) {
    status = MIM_ERR_UNAVAILABLE;
    detail = "stream ended before the subscription was confirmed";
  }
  /* RESOURCE_EXHAUSTED is worth a re-subscribe only when the server throttles: the
   * subscription limit (or a cause we do not know) would refuse every retry, so the
   * subscription ends with it instead of looping. A rejected token is worth a retry when
   * the client can fetch a fresh one (the transport already asked for it). */
  bool retry = (retryable(status) &&
                (status != MIM_ERR_RESOURCE_EXHAUSTED || mim_throttled(status, detail))) ||
               (status == MIM_ERR_UNAUTHENTICATED && mim_client_refreshes_tokens(s->client));
  if (!s->ever_confirmed || !retry)
    close_for_good(s, status, detail);
  else
    schedule_reconnect(s, status, detail);
}

static void stream_closed(void *user, mim_status status, const char *detail) {
  mim_subscription *s = user;
  pthread_mutex_lock(&s->mu);
  s->call = NULL;
  bool closing = s->closing;
  pthread_mutex_unlock(&s->mu);
  if (!closing)
    handle_stream_end(s, status, detail);
  sub_unref(s); /* the stream's reference */
}

static void backoff_fired(void *user) {
  mim_subscription *s = user;
  pthread_mutex_lock(&s->mu);
  s->backoff_timer = NULL;
  bool closing = s->closing;
  pthread_mutex_unlock(&s->mu);
  if (!closing) {
    mim_status st = start_stream(s);
    if (st != MIM_OK)
      handle_stream_end(s, st, mim_last_error_detail());
  }
  sub_unref(s);
}

static void watchdog_fired(void *user) {
  mim_subscription *s = user;
  pthread_mutex_lock(&s->mu);
  bool closing = s->closing;
  pthread_mutex_unlock(&s->mu);
  s->watchdog_timer = NULL;
  if (!closing && s->call && !s->watchdog_tripped) {
    int64_t limit = current_silence_limit(s);
    int64_t quiet = cmn_mono_ms() - s->last_rx_ms;
    if (quiet < limit) {
      arm_watchdog(s, limit - quiet); /* something arrived since: wait for the rest */
    } else {
      mim_log(MIM_LOG_WARN, "topics: %s silent for %lld ms; restarting the stream", s->topic,
              (long long)quiet);
      s->watchdog_tripped = true;
      mim_call_cancel(s->call); /* stream_closed follows and reconnects */
    }
  }
  sub_unref(s);
}

/* ---- items (event thread) ---- */

static void confirm_stream(mim_subscription *s) {
  s->stream_confirmed = true;
  if (!s->ever_confirmed) {
    s->ever_confirmed = true;
    /* From now on silence is measured against the heartbeat timeout, not the deadline. */
    disarm_timer(s, &s->watchdog_timer);
    arm_watchdog(s, s->hb_timeout_ms);
  }
  s->attempt = 0; /* a confirmed stream resets the backoff */
  pthread_mutex_lock(&s->mu);
  s->state = MIM_SUB_CONNECTED;
  pthread_mutex_unlock(&s->mu);
  notify_state(s, MIM_SUB_CONNECTED, MIM_OK, "");
}

/* Wakes a blocking subscribe once the confirming item has been fully delivered, so the
 * caller sees CONNECTED and that item's callbacks before mim_topic_subscribe returns. */
static void first_attempt_succeeded(mim_subscription *s) {
  pthread_mutex_lock(&s->mu);
  if (!s->first_done) {
    s->first_done = true;
    s->first_status = MIM_OK;
    pthread_cond_broadcast(&s->cv);
  }
  pthread_mutex_unlock(&s->mu);
}

static const uint8_t *nul_terminated(mim_subscription *s, const uint8_t *data, size_t len) {
  if (len + 1 > s->scratch_cap) {
    uint8_t *p = realloc(s->scratch, len + 1);
    if (!p)
      return NULL;
    s->scratch = p;
    s->scratch_cap = len + 1;
  }
  if (len)
    memcpy(s->scratch, data, len);
  s->scratch[len] = 0;
  return s->scratch;
}

/* Where the strings of an item sit in a _SubscriptionItem on the wire. */
static const uint32_t TEXT_PATH[] = {1, 2, 1};   /* item.value.text */
static const uint32_t PUBLISHER_PATH[] = {1, 3}; /* item.publisher_id */

/* A string field with its length from the wire: protobuf-c's C string `decoded` stops
 * at the first NUL. The wire bytes are used only when they agree with it up to there;
 * else (no NUL in it, or an encoding the finder does not follow) decoded is right. */
static size_t wire_string(const uint8_t *msg, size_t len, const uint32_t *path, size_t depth,
                          const char *decoded, const uint8_t **bytes) {
  size_t c_len = strlen(decoded);
  const uint8_t *p = NULL;
  size_t n = 0;
  *bytes = (const uint8_t *)decoded;
  if (mim_pb_find_bytes(msg, len, path, depth, &p, &n) && n > c_len && p[c_len] == 0 &&
      memcmp(p, decoded, c_len) == 0) {
    *bytes = p;
    return n;
  }
  return c_len;
}

/* The trusted sender id: one with a NUL inside is not a token id the server made, and
 * cutting it at the NUL could make it look like another one. */
static const char *publisher_of(const mim_subscription *s, const uint8_t *msg, size_t len,
                                const char *decoded) {
  if (!decoded)
    return "";
  const uint8_t *bytes;
  if (wire_string(msg, len, PUBLISHER_PATH, 2, decoded, &bytes) == strlen(decoded))
    return decoded;
  mim_log(MIM_LOG_WARN,
          "topics: a value on %s has a publisher id with a NUL inside; "
          "delivered without one",
          s->topic);
  return "";
}

/* Fills the value of item from it (its text with the length on the wire); false when
 * out of memory. */
static bool item_value(mim_subscription *s, const CacheClient__Pubsub__TopicValue *v,
                       const uint8_t *msg, size_t len, mim_topic_item *item) {
  if (v && v->kind_case == CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_BINARY) {
    item->is_binary = true;
    item->len = v->binary.len;
    item->data = nul_terminated(s, v->binary.data, v->binary.len);
    return item->data != NULL;
  }
  const char *text =
      v && v->kind_case == CACHE_CLIENT__PUBSUB____TOPIC_VALUE__KIND_TEXT && v->text ? v->text : "";
  const uint8_t *bytes;
  item->len = wire_string(msg, len, TEXT_PATH, 3, text, &bytes);
  item->data = bytes == (const uint8_t *)text ? bytes : nul_terminated(s, bytes, item->len);
  if (!item->data)
    return false;
  /* The promise is "text is UTF-8": a foreign publisher's bad text arrives as bytes. */
  if (cmn_utf8_invalid_at(item->data, item->len) != SIZE_MAX) {
    mim_log(MIM_LOG_DEBUG, "topics: value %llu on %s is not valid UTF-8; delivered as binary",
            (unsigned long long)item->sequence, s->topic);
    item->is_binary = true;
  }
  return true;
}

static void handle_item(mim_subscription *s, const CacheClient__Pubsub__TopicItem *it,
                        const uint8_t *msg, size_t len) {
  uint64_t seq = it->topic_sequence_number, page = it->sequence_page;
  /* A replay may overlap what we already delivered: drop duplicates within a page. */
  if (s->have_position && page == s->resume_page && seq < s->resume_next)
    return;
  if (s->blind_stream) {
    s->blind_stream = false;
    if (seq > 1)
      notify_discontinuity(s, 0, seq, page);
  }
  s->have_position = true;
  s->resume_next = seq + 1;
  s->resume_page = page;
  atomic_store(&s->last_seq, seq);
  atomic_store(&s->last_page, page);
  mim_topic_item item = {.sequence = seq,
                         .sequence_page = page,
                         .publisher_id = publisher_of(s, msg, len, it->publisher_id)};
  if (!item_value(s, it->value, msg, len, &item)) {
    mim_log(MIM_LOG_ERROR, "topics: out of memory; dropped value %llu on %s",
            (unsigned long long)seq, s->topic);
    notify_discontinuity(s, seq - 1, seq + 1, page); /* so the subscriber can recover it */
    return;
  }
  notify_item(s, &item);
}

/* On the wire new_topic_sequence is where the stream is now positioned (one less than the
 * next value; the official SDKs store it as "last seen"). The callback gets the next
 * value's number instead, so that exactly last + 1 .. new - 1 are the lost ones. */
static void handle_discontinuity(mim_subscription *s, const CacheClient__Pubsub__Discontinuity *d) {
  uint64_t position = d->new_topic_sequence;
  s->blind_stream = false; /* the server told us exactly what was lost */
  s->have_position = true;
  s->resume_next = position + 1;
  s->resume_page = d->new_sequence_page;
  /* The gap counts as consumed, so a later resume starts after it. */
  atomic_store(&s->last_seq, position);
  atomic_store(&s->last_page, d->new_sequence_page);
  notify_discontinuity(s, d->last_topic_sequence, position + 1, d->new_sequence_page);
}

static void stream_message(void *user, const uint8_t *msg, size_t len) {
  mim_subscription *s = user;
  pthread_mutex_lock(&s->mu);
  bool closing = s->closing;
  pthread_mutex_unlock(&s->mu);
  if (closing || s->watchdog_tripped || s->stream_error != MIM_OK)
    return;
  s->last_rx_ms = cmn_mono_ms();
  ProtobufCMessage *m = NULL;
  if (mim_pb_unpack(&cache_client__pubsub____subscription_item__descriptor, msg, len, &m) !=
      MIM_OK) {
    mim_log(MIM_LOG_WARN, "topics: undecodable item on %s; restarting the stream", s->topic);
    s->stream_error = MIM_ERR_PROTOCOL;
    mim_call_cancel(s->call);
    return;
  }
  sub_ref(s); /* a callback may unsubscribe; keep s alive until we are done */
  if (!s->stream_confirmed)
    confirm_stream(s);
  const CacheClient__Pubsub__SubscriptionItem *item = (const void *)m;
  mim_stats_stream_message(s->client, len,
                           item->kind_case == CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM);
  switch (item->kind_case) {
  case CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_ITEM:
    handle_item(s, item->item, msg, len);
    break;
  case CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_DISCONTINUITY:
    handle_discontinuity(s, item->discontinuity);
    break;
  case CACHE_CLIENT__PUBSUB____SUBSCRIPTION_ITEM__KIND_HEARTBEAT:
    notify_heartbeat(s);
    break;
  default: /* a kind newer than us: it still proved the stream alive */
    break;
  }
  first_attempt_succeeded(s);
  mim_pb_free(m);
  sub_unref(s);
}

/* ---- teardown ---- */

/* Event thread: cancels the stream and every pending timer. The stream's close callback
 * still runs later and drops its reference. */
static void teardown(mim_subscription *s) {
  if (s->call)
    mim_call_cancel(s->call);
  disarm_timer(s, &s->backoff_timer);
  disarm_timer(s, &s->watchdog_timer);
}

static void teardown_fired(void *user) {
  mim_subscription *s = user;
  teardown(s);
  pthread_mutex_lock(&s->mu);
  s->teardown_done = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  sub_unref(s);
}

MIM_API void mim_topic_unsubscribe(mim_subscription *s) {
  if (!s)
    return;
  bool on_event_thread = mim_transport_on_event_thread(s->t);
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  s->state = MIM_SUB_CLOSED;
  if (on_event_thread) {
    /* Nothing else of ours can run now; a handler we are inside holds a reference. */
    pthread_mutex_unlock(&s->mu);
    teardown(s);
    sub_unref(s);
    return;
  }
  while (s->cb_running)
    pthread_cond_wait(&s->cv, &s->mu);
  sub_ref(s);
  bool posted = mim_transport_timer(s->t, 0, teardown_fired, s, NULL) == MIM_OK;
  if (posted) {
    while (!s->teardown_done)
      pthread_cond_wait(&s->cv, &s->mu);
  } else {
    /* Only while the client is being freed: its shutdown cancels the stream anyway. */
    mim_log(MIM_LOG_ERROR, "topics: could not post the teardown of %s", s->topic);
    if (s->call)
      mim_call_cancel(s->call); /* safe under mu: the close handler clears it under mu */
  }
  pthread_mutex_unlock(&s->mu);
  if (!posted)
    sub_unref_not_last(s); /* the teardown timer's, never handed over */
  sub_unref(s);
}

/* ---- subscribe ---- */

static int64_t or_default(int64_t v, int64_t def) {
  return v > 0 ? v : def;
}

/* A zeroed subscription with copies of cache and topic, or NULL (out of memory). */
static mim_subscription *sub_alloc(const char *cache, const char *topic) {
  mim_subscription *s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->cache = strdup(cache);
  s->topic = strdup(topic);
  if (!s->cache || !s->topic) {
    free(s->cache);
    free(s->topic);
    free(s);
    return NULL;
  }
  return s;
}

/* Checks the arguments (out included) and allocates the subscription with the owner's
 * reference; NULL with *st set on failure. */
static mim_subscription *sub_new(mim_client *c, const char *cache, const char *topic,
                                 const mim_subscribe_options *caller_options,
                                 const mim_subscription_callbacks *caller_cbs,
                                 mim_subscription **out, mim_status *st) {
  *st = check_target(c, cache, topic);
  if (*st != MIM_OK)
    return NULL;
  if (!out) {
    *st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "out is NULL");
    return NULL;
  }
  mim_subscription_callbacks cbs_copy = {0};
  mim_subscribe_options o_copy = {0};
  const mim_subscription_callbacks *cbs = &cbs_copy;
  const mim_subscribe_options *o = caller_options ? &o_copy : NULL;
  *st = caller_cbs ? mim_struct_copy_in(&cbs_copy, sizeof cbs_copy, caller_cbs,
                                        MIM_SIZE_THROUGH(mim_subscription_callbacks, user),
                                        "subscribe: callbacks", "MIM_SUBSCRIPTION_CALLBACKS_INIT")
                   : MIM_OK;
  if (*st == MIM_OK && caller_options)
    *st = mim_struct_copy_in(&o_copy, sizeof o_copy, caller_options,
                             MIM_SIZE_THROUGH(mim_subscribe_options, backoff_max_ms),
                             "subscribe: options", "MIM_SUBSCRIBE_OPTIONS_INIT");
  if (*st != MIM_OK)
    return NULL;
  if (!caller_cbs || !cbs->on_item) {
    *st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "callbacks with on_item are required");
    return NULL;
  }
  mim_subscription *s = sub_alloc(cache, topic);
  if (!s) {
    *st = mim_fail(MIM_ERR_NO_MEMORY, "subscribe: out of memory");
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  cmn_cond_init_monotonic(&s->cv); /* the first-confirmation wait has a deadline */
  atomic_init(&s->refs, 1);        /* the owner's */
  atomic_init(&s->last_seq, 0);
  atomic_init(&s->last_page, 0);
  s->t = mim_client_transport(c);
  s->client = c;
  s->cb = *cbs;
  s->hb_timeout_ms = or_default(o ? o->heartbeat_timeout_ms : 0, DEFAULT_HEARTBEAT_TIMEOUT_MS);
  s->backoff_initial_ms = or_default(o ? o->backoff_initial_ms : 0, DEFAULT_BACKOFF_INITIAL_MS);
  s->backoff_max_ms = or_default(o ? o->backoff_max_ms : 0, DEFAULT_BACKOFF_MAX_MS);
  if (s->backoff_max_ms < s->backoff_initial_ms)
    s->backoff_max_ms = s->backoff_initial_ms;
  s->confirm_timeout_ms = mim_client_deadline_ms(c);
  if (o && o->resume_at > 0) {
    s->have_position = true;
    s->resume_next = o->resume_at;
    s->resume_page = o->sequence_page;
  }
  cmn_rng_seed(&s->rng);
  s->state = MIM_SUB_CONNECTING;
  return s;
}

/* Starts the first stream and its confirmation deadline from the calling thread; mu
 * makes every handler see the handles (they all take mu first). */
static mim_status sub_start(mim_subscription *s) {
  pthread_mutex_lock(&s->mu);
  mim_status st = start_stream(s);
  pthread_mutex_unlock(&s->mu);
  return st;
}

MIM_API mim_status mim_topic_subscribe_async(mim_client *client, const char *cache,
                                             const char *topic,
                                             const mim_subscribe_options *options,
                                             const mim_subscription_callbacks *callbacks,
                                             mim_subscription **out) {
  if (out)
    *out = NULL;
  mim_status st;
  mim_subscription *s = sub_new(client, cache, topic, options, callbacks, out, &st);
  if (!s)
    return st;
  st = sub_start(s);
  if (st != MIM_OK) {
    sub_destroy(s);
    return st;
  }
  *out = s;
  return MIM_OK;
}

static bool first_attempt_done(void *arg) {
  return ((mim_subscription *)arg)->first_done;
}

MIM_API mim_status mim_topic_subscribe(mim_client *client, const char *cache, const char *topic,
                                       const mim_subscribe_options *options,
                                       const mim_subscription_callbacks *callbacks,
                                       mim_subscription **out) {
  if (out)
    *out = NULL;
  if (client && mim_client_in_callback(client))
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "mim_topic_subscribe called from a callback; use mim_topic_subscribe_async");
  mim_status st;
  mim_subscription *s = sub_new(client, cache, topic, options, callbacks, out, &st);
  if (!s)
    return st;
  s->sync_first = true;
  st = sub_start(s);
  if (st != MIM_OK) {
    sub_destroy(s);
    return st;
  }
  /* The watchdog enforces the deadline on the event thread (and reports its own detail);
   * waiting a little longer here only guards against one that could not be armed. */
  struct timespec until = cmn_deadline_after_ms(s->confirm_timeout_ms + 1000);
  char detail[DETAIL_LEN] = "";
  pthread_mutex_lock(&s->mu);
  /* In loop mode on the loop thread this runs the loop. */
  if (!mim_client_wait_locked(client, &s->mu, &s->cv, first_attempt_done, s, &until)) {
    s->closing = true; /* from now on no callback may run: we report a failure */
    s->first_done = true;
    s->first_status = MIM_ERR_DEADLINE_EXCEEDED;
    snprintf(s->first_detail, sizeof s->first_detail, "subscription not confirmed in time");
  }
  st = s->first_status;
  snprintf(detail, sizeof detail, "%s", s->first_detail);
  pthread_mutex_unlock(&s->mu);
  if (st != MIM_OK) {
    mim_topic_unsubscribe(s);
    return mim_fail_with_detail(st, detail[0] ? detail : mim_strerror(st));
  }
  *out = s;
  return MIM_OK;
}

MIM_API uint64_t mim_subscription_last_sequence(const mim_subscription *sub) {
  return sub ? atomic_load(&((mim_subscription *)sub)->last_seq) : 0;
}

MIM_API uint64_t mim_subscription_sequence_page(const mim_subscription *sub) {
  return sub ? atomic_load(&((mim_subscription *)sub)->last_page) : 0;
}
