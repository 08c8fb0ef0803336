/*
 * libmomento-im: Momento Topics (publish / subscribe).
 *
 * Publishing is fire-and-forget and not retried by the library (a retry could deliver a
 * value twice). A subscription is a server stream that the library keeps alive: when it
 * ends or fails with a retryable status, or when no item (not even a heartbeat) arrives
 * within the heartbeat timeout, it re-subscribes with exponential backoff and jitter,
 * resuming at the last seen sequence number + 1 within the last seen sequence page, so
 * the server can replay what was missed; when it cannot, a discontinuity is reported.
 *
 * All subscription callbacks run on the client's event thread, one at a time, never
 * after mim_topic_unsubscribe has returned.
 */
#ifndef MOMENTO_TOPICS_H
#define MOMENTO_TOPICS_H

#include <momento/client.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mim_subscription mim_subscription;

/* Publishes a UTF-8 text / binary value on a topic. Blocking (client default deadline).
 * Text is a C string: the value is its bytes up to the terminating NUL, so it cannot
 * hold a NUL byte; a value with NUL bytes inside goes as binary, which sends exactly
 * len bytes. Errors: as for list calls; MIM_ERR_INVALID_ARGUMENT also for a topic name
 * over 255 bytes or not valid UTF-8 (README "Names"), and for text that is not valid
 * UTF-8 (use binary for arbitrary bytes). */
MIM_API mim_status mim_topic_publish_text(mim_client *client, const char *cache, const char *topic,
                                          const char *text);
MIM_API mim_status mim_topic_publish_binary(mim_client *client, const char *cache,
                                            const char *topic, const void *data, size_t len);

/* Async publish; cb (may be NULL) runs once on the event thread; detail valid only
 * during the callback. */
typedef void (*mim_publish_cb)(void *user, mim_status status, const char *detail);
MIM_API mim_status mim_topic_publish_text_async(mim_client *client, const char *cache,
                                                const char *topic, const char *text,
                                                mim_publish_cb cb, void *user);
MIM_API mim_status mim_topic_publish_binary_async(mim_client *client, const char *cache,
                                                  const char *topic, const void *data, size_t len,
                                                  mim_publish_cb cb, void *user);

/* One received value. All pointers are valid only during the callback. The value is
 * data/len, exactly as on the wire, text too: text from another publisher may hold NUL
 * bytes (U+0000 is valid UTF-8), so use len, never strlen. */
typedef struct mim_topic_item {
  uint64_t sequence;        /* topic sequence number (grows by one per message) */
  uint64_t sequence_page;   /* topic incarnation */
  const char *publisher_id; /* token id of the publisher: the trusted sender identity
                               ("" when the server sent none, or one with a NUL inside,
                               which no token id has) */
  bool is_binary;           /* false: data is valid UTF-8 text (text that is not valid
                               UTF-8 on the wire is delivered as binary) */
  const uint8_t *data;      /* len bytes, plus a NUL after them for convenience */
  size_t len;
} mim_topic_item;

typedef enum mim_subscription_state {
  MIM_SUB_CONNECTING = 0,   /* first attempt under way */
  MIM_SUB_CONNECTED = 1,    /* the server confirmed the (re)subscription */
  MIM_SUB_RECONNECTING = 2, /* stream lost; waiting for backoff or a new stream */
  MIM_SUB_CLOSED = 3        /* ended for good (unsubscribe or non-retryable error) */
} mim_subscription_state;

typedef struct mim_subscription_callbacks {
  size_t struct_size; /* sizeof(mim_subscription_callbacks): MIM_SUBSCRIPTION_CALLBACKS_INIT */
  /* A value. Required. */
  void (*on_item)(void *user, const mim_topic_item *item);
  /* Values between last_sequence + 1 and new_sequence - 1 could not be delivered;
   * new_sequence is the number of the next value this subscription will deliver (the
   * wire's new_topic_sequence + 1). After a topic reset the page changes and numbering
   * restarts, so new_sequence may be below last_sequence. When a stream was lost before
   * any value or discontinuity had been seen (and no resume_at was given), the library
   * cannot tell what it missed: it re-subscribes live only and reports
   * on_discontinuity(0, first_sequence, page) before the first value of the new stream
   * when that value is not the topic's first. Optional. */
  void (*on_discontinuity)(void *user, uint64_t last_sequence, uint64_t new_sequence,
                           uint64_t new_sequence_page);
  /* The server's keep-alive on an idle stream. Optional. */
  void (*on_heartbeat)(void *user);
  /* State changes; `status`/`detail` say why a stream was lost or closed (MIM_OK else). */
  void (*on_state)(void *user, mim_subscription_state state, mim_status status, const char *detail);
  void *user;
} mim_subscription_callbacks;

/* No callbacks yet, struct_size set; on_item must still be filled in. */
#define MIM_SUBSCRIPTION_CALLBACKS_INIT                                                            \
  { .struct_size = sizeof(mim_subscription_callbacks) }

typedef struct mim_subscribe_options {
  size_t struct_size;           /* sizeof(mim_subscribe_options): MIM_SUBSCRIBE_OPTIONS_INIT */
  uint64_t resume_at;           /* 0 = live only; else resume at this sequence number */
  uint64_t sequence_page;       /* page the resume_at belongs to */
  int64_t heartbeat_timeout_ms; /* silence that counts as a dead stream; 0 = 30000 */
  /* Re-subscribe delays: attempt n (0-based since the last confirmed stream) waits a
   * uniformly random time in [0, min(max, initial * 2^n)] ("full jitter"); after the
   * server throttled the re-subscribe (MIM_ERR_RESOURCE_EXHAUSTED with a cause for which
   * mim_limit_cause_is_throttling) in [500, max(500, min(max, 500 * 2^(n+1)))] instead.
   * Any other RESOURCE_EXHAUSTED (topic_subscriptions_limit_exceeded: the namespace has
   * as many subscriptions as it allows) ends the subscription: on_state(MIM_SUB_CLOSED)
   * with that status, the cause in the detail (mim_limit_cause_of). */
  int64_t backoff_initial_ms; /* 0 = 100 */
  int64_t backoff_max_ms;     /* 0 = 5000 */
} mim_subscribe_options;

#define MIM_SUBSCRIBE_OPTIONS_INIT                                                                 \
  { .struct_size = sizeof(mim_subscribe_options) }

/* Subscribes and waits until the server confirmed the subscription (its first item) or
 * the client's default deadline passed. From that moment no value published to the
 * topic can be missed. On MIM_OK, on_state(MIM_SUB_CONNECTED) and the callbacks of the
 * confirming item have already run (possibly before *out was set). options may be NULL.
 * *out is owned by the caller: release it with mim_topic_unsubscribe.
 * Errors: MIM_ERR_INVALID_ARGUMENT (names, as for mim_topic_publish_text),
 * MIM_ERR_NOT_FOUND (cache), MIM_ERR_PERMISSION_DENIED, MIM_ERR_UNAUTHENTICATED,
 * MIM_ERR_DEADLINE_EXCEEDED, MIM_ERR_UNAVAILABLE, ... (no subscription exists then and no
 * callback runs). Must not be called from a callback. */
MIM_API mim_status mim_topic_subscribe(mim_client *client, const char *cache, const char *topic,
                                       const mim_subscribe_options *options,
                                       const mim_subscription_callbacks *callbacks,
                                       mim_subscription **out);

/* Like mim_topic_subscribe but returns at once; confirmation arrives as
 * on_state(MIM_SUB_CONNECTED), a failure of the first attempt as on_state(MIM_SUB_CLOSED)
 * with its status (MIM_ERR_DEADLINE_EXCEEDED when not confirmed within the client's
 * default deadline). May be called from a callback. */
MIM_API mim_status mim_topic_subscribe_async(mim_client *client, const char *cache,
                                             const char *topic,
                                             const mim_subscribe_options *options,
                                             const mim_subscription_callbacks *callbacks,
                                             mim_subscription **out);

/* Last sequence number / page delivered (0 before the first item; after a
 * discontinuity, new_sequence - 1 and its page, so the gap counts as consumed).
 * Thread-safe. 0 for a NULL sub. */
MIM_API uint64_t mim_subscription_last_sequence(const mim_subscription *sub);
MIM_API uint64_t mim_subscription_sequence_page(const mim_subscription *sub);

/* Ends the subscription and frees it. When it returns, no callback of this subscription
 * is running or will run. From inside one of its own callbacks it returns at once and
 * the subscription is freed after that callback returns. NULL is ignored. */
MIM_API void mim_topic_unsubscribe(mim_subscription *sub);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_TOPICS_H */
