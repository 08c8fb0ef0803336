/* The moderator of the server-mediated pattern: subscribes to "<chat>-input", runs the
 * user's filter on each message, and forwards what it accepts to list <chat> and topic
 * <chat>, keeping the message's id, sender name and timestamp.
 *
 * Items arrive on the client's event thread, where blocking calls are not allowed, so
 * forwarding is a chain of async calls: list push back, then (from its completion)
 * publish. Push comes first for the same reason as in mim_send: a joiner that fetched
 * the list before the push is subscribed already and sees the publish.
 *
 * One chain at a time per chat, in input order (later inputs wait in a queue): two
 * chains in flight could complete in either order, so list and topic would reorder a
 * sender's messages (mim_send keeps them in order up to "<chat>-input"). */
#include "envelope.h"
#include "error.h"

#include <momento/im.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_HISTORY_CAP 100u
/* Ids recently forwarded per chat: a repeated input (a client retrying a publish) is not
 * stored twice. */
#define FORWARD_DEDUP_WINDOW 4096u

typedef struct forward forward;

typedef struct mod_chat {
  mim_moderator *mod;
  char *chat;
  char *input_topic;
  mim_subscription *sub;
  mim_idset forwarded; /* event thread only */
  /* Under mod->mu: whether a chain is in flight, and the forwards waiting for it. */
  bool busy;
  forward *queue_head, *queue_tail;
} mod_chat;

struct mim_moderator {
  mim_client *client;
  char *cache;
  uint32_t history_cap;
  mim_moderation_fn filter;
  void *user;
  size_t n_chats;
  mod_chat *chats;
  atomic_bool stopping;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inflight; /* forwards (queued or in their push, publish chain) not finished */
};

/* One message on its way to list and topic. */
struct forward {
  mim_moderator *mod;
  mod_chat *chat;
  char *json;
  size_t len;
  forward *next; /* in chat->queue */
};

static bool forward_push(forward *f);

/* Ends f's chain and starts the chat's next queued forward, if any (in a loop, not by
 * recursion, when pushes cannot even be started). */
static void forward_done(forward *f) {
  while (f) {
    mim_moderator *m = f->mod;
    mod_chat *c = f->chat;
    free(f->json);
    free(f);
    pthread_mutex_lock(&m->mu);
    f = c->queue_head;
    if (f) {
      c->queue_head = f->next;
      if (!c->queue_head)
        c->queue_tail = NULL;
    } else {
      c->busy = false;
    }
    m->inflight--;
    pthread_cond_broadcast(&m->cv);
    /* Without a next forward this is the last touch: mim_moderator_stop may free m now
     * (with one, inflight still counts it). */
    pthread_mutex_unlock(&m->mu);
    if (f && forward_push(f))
      return;
  }
}

static void on_published(void *user, mim_status status, const char *detail) {
  forward *f = user;
  if (status != MIM_OK)
    mim_log(MIM_LOG_WARN, "moderator: publish on %s failed: %s %s", f->chat->chat,
            mim_status_name(status), detail);
  forward_done(f);
}

static void on_pushed(void *user, mim_status status, const char *detail, uint32_t new_length) {
  forward *f = user;
  (void)new_length;
  if (status != MIM_OK) {
    mim_log(MIM_LOG_WARN, "moderator: push to list %s failed: %s %s", f->chat->chat,
            mim_status_name(status), detail);
    forward_done(f);
    return;
  }
  mim_status st = mim_topic_publish_text_async(f->mod->client, f->mod->cache, f->chat->chat,
                                               f->json, on_published, f);
  if (st != MIM_OK) {
    mim_log(MIM_LOG_WARN, "moderator: publish on %s not started: %s", f->chat->chat,
            mim_status_name(st));
    forward_done(f);
  }
}

/* Starts f's chain with the list push; false (f not finished yet) when it could not. */
static bool forward_push(forward *f) {
  mim_moderator *m = f->mod;
  mim_list_write_options wo = {.refresh_ttl = true, .truncate_to = m->history_cap};
  mim_status st = mim_list_push_back_async(m->client, m->cache, f->chat->chat, f->json, f->len, &wo,
                                           on_pushed, f);
  if (st != MIM_OK)
    mim_log(MIM_LOG_WARN, "moderator: push to %s not started: %s", f->chat->chat,
            mim_status_name(st));
  return st == MIM_OK;
}

/* Forwards an envelope after the chat's earlier ones; takes ownership of json. */
static void forward_start(mim_moderator *m, mod_chat *c, char *json, size_t len) {
  forward *f = malloc(sizeof *f);
  if (!f) {
    free(json);
    mim_log(MIM_LOG_ERROR, "moderator: out of memory; dropped a message for %s", c->chat);
    return;
  }
  *f = (forward){.mod = m, .chat = c, .json = json, .len = len};
  pthread_mutex_lock(&m->mu);
  m->inflight++;
  bool queued = c->busy;
  if (queued) {
    if (c->queue_tail)
      c->queue_tail->next = f;
    else
      c->queue_head = f;
    c->queue_tail = f;
  }
  c->busy = true;
  pthread_mutex_unlock(&m->mu);
  if (!queued && !forward_push(f))
    forward_done(f);
}

/* Runs the filter; returns the envelope to forward (malloc'd) or NULL to drop. */
static char *apply_filter(mim_moderator *m, const mod_chat *c, const mim_envelope *env,
                          const mim_topic_item *item, size_t *len) {
  mim_message msg = {.kind = MIM_MESSAGE_CHAT,
                     .id = env->id,
                     .chat = c->chat,
                     .from = env->from,
                     .publisher_id = item->publisher_id ? item->publisher_id : "",
                     .text = env->text,
                     .timestamp_ms = env->ts,
                     .sequence = item->sequence,
                     .from_history = false,
                     .raw = item->data,
                     .raw_len = item->len};
  char *new_text = NULL;
  mim_moderation_verdict v = m->filter(&msg, &new_text, m->user);
  const char *text = env->text;
  if (v == MIM_MODERATION_REWRITE && new_text)
    text = new_text;
  char *json = NULL;
  mim_status st = MIM_OK;
  if (v == MIM_MODERATION_ACCEPT || v == MIM_MODERATION_REWRITE)
    st = mim_envelope_build(env->id, env->from, text, env->ts, &json, len);
  else if (v != MIM_MODERATION_REJECT)
    mim_log(MIM_LOG_WARN, "moderator: unknown verdict %d; message %s dropped", (int)v, env->id);
  if (st != MIM_OK)
    mim_log(MIM_LOG_WARN, "moderator: message %s dropped: %s", env->id, mim_last_error_detail());
  free(new_text);
  return json;
}

static void on_input(void *user, const mim_topic_item *item) {
  mod_chat *c = user;
  mim_moderator *m = c->mod;
  if (atomic_load(&m->stopping))
    return;
  mim_envelope env;
  const char *reason = NULL;
  if (!mim_envelope_parse(item->data, item->len, &env, &reason)) {
    /* Only envelopes reach the chat: raw input has no id, sender or timestamp to keep. */
    mim_log(MIM_LOG_DEBUG, "moderator: dropped foreign input on %s (%zu bytes): %s", c->input_topic,
            item->len, reason);
    return;
  }
  if (mim_idset_contains(&c->forwarded, env.id)) {
    mim_log(MIM_LOG_DEBUG, "moderator: dropped repeated message %s on %s", env.id, c->input_topic);
    mim_envelope_clear(&env);
    return;
  }
  size_t len = 0;
  char *json = apply_filter(m, c, &env, item, &len);
  if (mim_idset_add(&c->forwarded, env.id, NULL) != MIM_OK)
    mim_log(MIM_LOG_WARN, "moderator: out of memory remembering message ids");
  mim_envelope_clear(&env);
  if (json)
    forward_start(m, c, json, len);
}

static void on_input_state(void *user, mim_subscription_state state, mim_status status,
                           const char *detail) {
  mod_chat *c = user;
  if (state == MIM_SUB_RECONNECTING || (state == MIM_SUB_CLOSED && status != MIM_OK))
    mim_log(MIM_LOG_WARN, "moderator: subscription to %s: %s %s", c->input_topic,
            mim_status_name(status), detail);
}

static void on_input_gap(void *user, uint64_t last, uint64_t next, uint64_t page) {
  mod_chat *c = user;
  (void)page;
  /* Inputs are transient: what the server no longer has cannot be moderated. */
  mim_log(MIM_LOG_WARN, "moderator: lost inputs on %s between %llu and %llu", c->input_topic,
          (unsigned long long)last, (unsigned long long)next);
}

/* ---- lifetime ---- */

static void moderator_free(mim_moderator *m) {
  for (size_t i = 0; m->chats && i < m->n_chats; i++) {
    free(m->chats[i].chat);
    free(m->chats[i].input_topic);
    mim_idset_free(&m->chats[i].forwarded);
  }
  free(m->chats);
  free(m->cache);
  pthread_mutex_destroy(&m->mu);
  pthread_cond_destroy(&m->cv);
  free(m);
}

/* A new moderator (not subscribed yet), or NULL (detail set) when out of memory. */
static mim_moderator *moderator_new(mim_client *client, const char *cache,
                                    const char *const *chat_ids, size_t n, uint32_t cap,
                                    mim_moderation_fn filter, void *user) {
  mim_moderator *m = calloc(1, sizeof *m);
  if (!m) {
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->cv, NULL);
  atomic_init(&m->stopping, false);
  m->client = client;
  m->history_cap = cap ? cap : DEFAULT_HISTORY_CAP;
  m->filter = filter;
  m->user = user;
  m->cache = strdup(cache);
  m->chats = calloc(n, sizeof *m->chats);
  bool ok = m->cache && m->chats;
  for (size_t i = 0; ok && i < n; i++) {
    mod_chat *c = &m->chats[i];
    size_t len = strlen(chat_ids[i]) + sizeof "-input";
    c->mod = m;
    c->chat = strdup(chat_ids[i]);
    c->input_topic = malloc(len);
    m->n_chats++;
    ok = c->chat && c->input_topic && mim_idset_init(&c->forwarded, FORWARD_DEDUP_WINDOW) == MIM_OK;
    if (c->input_topic)
      snprintf(c->input_topic, len, "%s-input", chat_ids[i]);
  }
  if (!ok) {
    moderator_free(m);
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  return m;
}

static mim_status check_start_args(mim_client *client, const char *cache,
                                   const char *const *chat_ids, size_t n, mim_moderation_fn filter,
                                   mim_moderator **out) {
  if (!client || !cache || !*cache || !chat_ids || n == 0 || !filter || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_moderator_start: NULL or empty argument");
  for (size_t i = 0; i < n; i++)
    if (!chat_ids[i] || !*chat_ids[i])
      return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_moderator_start: chat %zu NULL or empty", i);
  return MIM_OK;
}

MIM_API mim_status mim_moderator_start(mim_client *client, const char *cache,
                                       const char *const *chat_ids, size_t n_chats,
                                       uint32_t history_cap, mim_moderation_fn filter, void *user,
                                       mim_moderator **out) {
  mim_clear_error();
  mim_status st = check_start_args(client, cache, chat_ids, n_chats, filter, out);
  if (st != MIM_OK)
    return st;
  mim_moderator *m = moderator_new(client, cache, chat_ids, n_chats, history_cap, filter, user);
  if (!m)
    return MIM_ERR_NO_MEMORY;
  for (size_t i = 0; i < n_chats && st == MIM_OK; i++) {
    mod_chat *c = &m->chats[i];
    mim_subscription_callbacks cbs = {.on_item = on_input,
                                      .on_discontinuity = on_input_gap,
                                      .on_state = on_input_state,
                                      .user = c};
    st = mim_topic_subscribe(client, cache, c->input_topic, NULL, &cbs, &c->sub);
  }
  if (st != MIM_OK) {
    char detail[256];
    snprintf(detail, sizeof detail, "%s", mim_last_error_detail());
    mim_moderator_stop(m);
    return mim_fail_with_detail(st, detail);
  }
  *out = m;
  return MIM_OK;
}

MIM_API void mim_moderator_stop(mim_moderator *moderator) {
  mim_moderator *m = moderator;
  if (!m)
    return;
  atomic_store(&m->stopping, true);
  for (size_t i = 0; i < m->n_chats; i++) {
    mim_topic_unsubscribe(m->chats[i].sub);
    m->chats[i].sub = NULL;
  }
  /* Let started forwards finish so list and topic stay consistent (each ends within the
   * client's deadline). */
  pthread_mutex_lock(&m->mu);
  while (m->inflight > 0)
    pthread_cond_wait(&m->cv, &m->mu);
  pthread_mutex_unlock(&m->mu);
  moderator_free(m);
}
