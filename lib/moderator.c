/* The moderator of the server-mediated pattern: subscribes to "<chat>-input", runs the
 * user's filter on each message, and forwards what it accepts to list <chat> and topic
 * <chat>, keeping the message's id, sender name and timestamp.
 *
 * Forwarding is the outbox's job (outbox.h), one outbox per chat, the same chain as
 * mim_send's in client-only mode: list push, then publish (push first for the same reason:
 * a joiner that fetched the list before the push is subscribed already and sees the
 * publish), retried with backoff when the server is briefly away, each outcome reported
 * once. Items arrive on the client's event thread, where blocking is not allowed, so
 * inputs are queued without waiting for their first attempt.
 *
 * One forward at a time per chat, in input order (the outbox sends its head only): two
 * chains in flight could complete in either order, so list and topic would reorder a
 * sender's messages (mim_send keeps them in order up to "<chat>-input").
 *
 * Senders (docs/PROTOCOL.md 3.2, 4.4): what it forwards carries "pub", the publisher
 * token id Momento reported for the input; it remembers id -> pub of the messages it
 * forwarded and of those the list held at start, and forwards an edit or a delete only
 * from the message's own publisher. */
#include "chat_defaults.h"
#include "chat_signal.h"
#include "client_internal.h"
#include "clock.h"
#include "envelope.h"
#include "error.h"
#include "outbox.h"
#include "rate_table.h"
#include "struct_size.h"

#include <momento/im.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ids recently forwarded per chat: a repeated input (a client retrying a publish) is not
 * stored twice. */
#define FORWARD_DEDUP_WINDOW 4096u

typedef struct mod_chat {
  mim_moderator *mod;
  char *chat;
  char *input_topic;
  mim_subscription *sub;
  mim_idset forwarded; /* event thread only */
  mim_idset senders;   /* message id -> its pub (malloc'd); event thread only once subscribed */
  mim_outbox *outbox;  /* this chat's forwards, in input order */
  mim_rate_table signal_rate; /* relayed signals per publisher (event thread only) */
} mod_chat;

struct mim_moderator {
  mim_client *client;
  char *cache;
  mim_moderator_options options;
  mim_moderation_fn filter;
  void *user;
  size_t n_chats;
  mod_chat *chats;
  atomic_bool stopping;

  /* A stop from a callback runs on another thread: it must see what start wrote (the
   * subscriptions), and one asked before start returned is start's to do. */
  pthread_mutex_t mu;
  bool started;    /* mim_moderator_start_with_options has returned it */
  bool stop_asked; /* mim_moderator_stop was called from a callback before that */

  mim_live live; /* tracked by the client while the application owns the moderator */
};

/* The one report of an accepted input: from the outbox, or for one that never got there. */
static void report_forward(mod_chat *c, const char *id, mim_status status, const char *detail) {
  mim_moderator *m = c->mod;
  if (m->options.on_forward_result)
    m->options.on_forward_result(m, c->chat, id, status, detail ? detail : "", m->user);
}

/* (The outbox has logged a failure already.) */
static void on_forward_result(void *owner, const char *id, mim_status status, const char *detail) {
  report_forward(owner, id, status, detail);
}

/* Queues an accepted envelope after the chat's earlier ones; takes ownership of json. */
static void forward(mod_chat *c, const char *id, char *json, size_t len) {
  /* Never wait here: this is the event thread, which runs the attempt itself. */
  mim_status st = mim_outbox_send(c->outbox, id, json, len, 0);
  if (st == MIM_OK)
    return;
  mim_log(MIM_LOG_WARN, "moderator: message %s for %s dropped: %s", id, c->chat,
          mim_last_error_detail());
  report_forward(c, id, st, mim_last_error_detail());
}

/* What the filter sees of a msg or an edit (an edit: edited true, id the event's). */
static void filter_view(const mod_chat *c, const mim_envelope *env, const mim_topic_item *item,
                        mim_message *msg) {
  const char *pub = item->publisher_id ? item->publisher_id : "";
  *msg = (mim_message){.kind = MIM_MESSAGE_CHAT,
                       .id = env->id,
                       .chat = c->chat,
                       .from = env->from,
                       .publisher_id = pub,
                       .text = env->text,
                       .timestamp_ms = env->ts,
                       .sequence = item->sequence,
                       .raw = item->data,
                       .raw_len = item->len,
                       .version = env->v,
                       .sender_id = pub,
                       .sender_trusted = true,
                       .reply_to = env->type == MIM_ENV_MSG && env->ref ? env->ref : "",
                       .edited = env->type == MIM_ENV_EDIT,
                       .edited_ms = env->type == MIM_ENV_EDIT ? env->ts : 0};
}

/* Runs the filter on msg and edit texts (delete and react pass); returns the envelope
 * to forward (malloc'd, with pub) or NULL to drop. An accepted message whose envelope
 * cannot be built gets its one report here. */
static char *apply_filter(mim_moderator *m, mod_chat *c, mim_envelope *env,
                          const mim_topic_item *item, size_t *len) {
  mim_moderation_verdict v = MIM_MODERATION_ACCEPT;
  char *new_text = NULL;
  if (env->type == MIM_ENV_MSG || env->type == MIM_ENV_EDIT) {
    mim_message msg;
    filter_view(c, env, item, &msg);
    v = m->filter(&msg, &new_text, m->user);
  }
  char *text = env->text;
  if (v == MIM_MODERATION_REWRITE && new_text)
    env->text = new_text;
  /* The trusted sender replaces whatever the input claimed. */
  free(env->pub);
  env->pub = item->publisher_id && *item->publisher_id ? strdup(item->publisher_id) : NULL;
  char *json = NULL;
  mim_status st = MIM_OK;
  if (v == MIM_MODERATION_ACCEPT || v == MIM_MODERATION_REWRITE)
    st = mim_envelope_build_v2(env, &json, len);
  else if (v != MIM_MODERATION_REJECT)
    mim_log(MIM_LOG_WARN, "moderator: unknown verdict %d; message %s dropped", (int)v, env->id);
  if (st != MIM_OK) {
    mim_log(MIM_LOG_WARN, "moderator: message %s dropped: %s", env->id, mim_last_error_detail());
    report_forward(c, env->id, st, mim_last_error_detail());
  }
  env->text = text;
  free(new_text);
  return json;
}

/* Remembers the sender of a message that reaches the list (bounded, oldest dropped). */
static void remember_sender(mod_chat *c, const char *id, const char *pub) {
  char *copy = strdup(pub ? pub : "");
  bool added = false;
  if (!copy || mim_idset_put(&c->senders, id, copy, &added) != MIM_OK || !added)
    free(copy);
}

/* docs/PROTOCOL.md 4.4: an edit or delete only from the message's own publisher. */
static bool author_ok(const mod_chat *c, const mim_envelope *env, const mim_topic_item *item) {
  if (env->type != MIM_ENV_EDIT && env->type != MIM_ENV_DELETE)
    return true;
  const char *pub = mim_idset_get(&c->senders, env->ref);
  const char *from = item->publisher_id ? item->publisher_id : "";
  if (pub && strcmp(pub, from) == 0)
    return true;
  mim_log(MIM_LOG_DEBUG, "moderator: dropped an event on %s for message %s: %s", c->input_topic,
          env->ref, pub ? "not from its author" : "message unknown");
  return false;
}

/* ---- typing and presence signals (docs/PROTOCOL.md section 5) ---- */

/* Signals a publisher may have relayed: 2 a second, bursts of 5. A member sends under
 * one a second (heartbeats, early "here", typing every 3 s): more is a flood. */
#define SIGNAL_RATE_PER_SECOND 2.0
#define SIGNAL_RATE_BURST 5.0

/* Relays a signal to topic <chat> with "pub" set to the trusted publisher id: never
 * stored, not filtered, not de-duplicated. false: not a signal (handle it as a message). */
static bool relay_signal(mod_chat *c, const mim_topic_item *item) {
  mim_signal sig;
  const char *reason = NULL;
  mim_signal_parse_result r = mim_signal_parse(item->data, item->len, &sig, &reason);
  if (r == MIM_SIGNAL_BAD)
    mim_log(MIM_LOG_DEBUG, "moderator: dropped a signal on %s: %s", c->input_topic, reason);
  if (r != MIM_SIGNAL_OK)
    return r == MIM_SIGNAL_BAD;
  const char *pub = item->publisher_id ? item->publisher_id : "";
  char *json = NULL;
  size_t len = 0;
  mim_status st = MIM_ERR_RESOURCE_EXHAUSTED;
  if (mim_rate_table_take(&c->signal_rate, pub, cmn_mono_ms())) {
    free(sig.pub);
    sig.pub = strdup(pub);
    st = sig.pub ? mim_signal_build(&sig, &json, &len) : MIM_ERR_NO_MEMORY;
  }
  if (st == MIM_OK) /* fire and forget: a lost signal is made up by the next one */
    st = mim_topic_publish_text_async(c->mod->client, c->mod->cache, c->chat, json, NULL, NULL);
  if (st != MIM_OK)
    mim_log(MIM_LOG_DEBUG, "moderator: signal on %s not relayed: %s", c->input_topic,
            st == MIM_ERR_RESOURCE_EXHAUSTED ? "publisher over its signal rate"
                                             : mim_status_name(st));
  free(json);
  mim_signal_clear(&sig);
  return true;
}

static void on_input(void *user, const mim_topic_item *item) {
  mod_chat *c = user;
  mim_moderator *m = c->mod;
  if (atomic_load(&m->stopping) || relay_signal(c, item))
    return;
  mim_envelope env;
  const char *reason = NULL;
  if (!mim_envelope_parse(item->data, item->len, &env, &reason)) {
    /* Only stored envelopes reach the chat: raw input has no id, sender or timestamp to
     * keep; signals and later types are not ours to store. */
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
  char *json = author_ok(c, &env, item) ? apply_filter(m, c, &env, item, &len) : NULL;
  if (mim_idset_add(&c->forwarded, env.id, NULL) != MIM_OK)
    mim_log(MIM_LOG_WARN, "moderator: out of memory remembering message ids");
  if (json && env.type == MIM_ENV_MSG)
    remember_sender(c, env.id, env.pub);
  if (json)
    forward(c, env.id, json, len);
  mim_envelope_clear(&env);
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
    mim_outbox_close(m->chats[i].outbox, 0);
    free(m->chats[i].chat);
    free(m->chats[i].input_topic);
    mim_idset_free(&m->chats[i].forwarded);
    mim_idset_free(&m->chats[i].senders);
    mim_rate_table_free(&m->chats[i].signal_rate);
  }
  free(m->chats);
  free(m->cache);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* The caller's options (NULL: defaults) with every 0 replaced by its default. */
static mim_status effective_options(const mim_moderator_options *o, mim_moderator_options *out) {
  mim_moderator_options e = {.struct_size = sizeof e};
  if (o) {
    mim_status st = mim_struct_copy_in(
        &e, sizeof e, o, MIM_SIZE_THROUGH(mim_moderator_options, on_forward_result),
        "mim_moderator_start_with_options: options", "MIM_MODERATOR_OPTIONS_INIT");
    if (st != MIM_OK)
      return st;
  }
  e.history_cap = e.history_cap ? e.history_cap : MIM_DEFAULT_HISTORY_CAP;
  e.outbox_limit = e.outbox_limit ? e.outbox_limit : MIM_DEFAULT_OUTBOX_LIMIT;
  e.flush_timeout_ms = e.flush_timeout_ms ? e.flush_timeout_ms : MIM_DEFAULT_FLUSH_TIMEOUT_MS;
  e.send_timeout_ms = e.send_timeout_ms ? e.send_timeout_ms : MIM_DEFAULT_SEND_TIMEOUT_MS;
  *out = e;
  return MIM_OK;
}

/* The chat's outbox: push to list <chat> (capped), then publish on topic <chat>. */
static mim_status chat_outbox(mim_moderator *m, mod_chat *c) {
  mim_outbox_config cfg = {.client = m->client,
                           .cache = m->cache,
                           .list = c->chat,
                           .topic = c->chat,
                           .what = "forward",
                           .write_options = {.struct_size = sizeof(mim_list_write_options),
                                             .refresh_ttl = true,
                                             .truncate_to = m->options.history_cap},
                           .limit = m->options.outbox_limit,
                           .send_timeout_ms = m->options.send_timeout_ms,
                           .on_result = on_forward_result,
                           .owner = c};
  return mim_outbox_new(&cfg, &c->outbox);
}

/* Fills chat i of m; false when out of memory (what was set is freed with m). */
static bool chat_init(mim_moderator *m, size_t i, const char *chat_id) {
  mod_chat *c = &m->chats[i];
  c->mod = m;
  c->chat = strdup(chat_id);
  c->input_topic = mim_chat_input_topic(chat_id);
  mim_rate_table_init(&c->signal_rate, SIGNAL_RATE_PER_SECOND, SIGNAL_RATE_BURST);
  m->n_chats++;
  bool ok = c->chat && c->input_topic &&
            mim_idset_init(&c->forwarded, FORWARD_DEDUP_WINDOW) == MIM_OK &&
            mim_idset_init(&c->senders, (size_t)m->options.history_cap + FORWARD_DEDUP_WINDOW) ==
                MIM_OK &&
            chat_outbox(m, c) == MIM_OK;
  c->senders.free_value = free;
  return ok;
}

/* The senders of the messages the list holds at start (before the subscription, so the
 * event thread does not run for this chat yet). A failure only costs edits and deletes
 * of those older messages: logged, not fatal. */
static void learn_senders(mim_moderator *m, mod_chat *c) {
  mim_list_values *v = NULL;
  if (mim_list_fetch(m->client, m->cache, c->chat, NULL, &v) != MIM_OK) {
    mim_log(MIM_LOG_WARN,
            "moderator: could not read list %s (%s): edits and deletions of its "
            "messages will be dropped",
            c->chat, mim_last_error_detail());
    return;
  }
  for (size_t i = 0; i < v->count; i++) {
    mim_envelope env;
    if (!mim_envelope_parse(v->values[i].data, v->values[i].len, &env, NULL))
      continue;
    if (env.type == MIM_ENV_MSG && env.pub)
      remember_sender(c, env.id, env.pub);
    mim_envelope_clear(&env);
  }
  mim_list_values_free(v);
}

/* A new moderator (not subscribed yet), or NULL (detail set) when out of memory. */
static mim_moderator *moderator_new(mim_client *client, const char *cache,
                                    const char *const *chat_ids, size_t n,
                                    const mim_moderator_options *options, mim_moderation_fn filter,
                                    void *user) {
  /* options are the effective ones already (see effective_options) */
  mim_moderator *m = calloc(1, sizeof *m);
  if (!m) {
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  atomic_init(&m->stopping, false);
  pthread_mutex_init(&m->mu, NULL);
  m->client = client;
  m->options = *options;
  m->filter = filter;
  m->user = user;
  m->cache = strdup(cache);
  m->chats = calloc(n, sizeof *m->chats);
  bool ok = m->cache && m->chats;
  for (size_t i = 0; ok && i < n; i++)
    ok = chat_init(m, i, chat_ids[i]);
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
  if (!client)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  if (!chat_ids || n == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "chat_ids is %s",
                    chat_ids ? "empty (n_chats 0)" : "NULL");
  if (!filter || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is NULL", filter ? "out" : "filter");
  mim_status st = mim_check_name("cache", cache);
  for (size_t i = 0; i < n && st == MIM_OK; i++)
    if (!chat_ids[i] || !*chat_ids[i])
      st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "chat_ids[%zu] is %s", i,
                    chat_ids[i] ? "empty" : "NULL");
  if (st != MIM_OK)
    return st;
  /* Each chat's list, topic and "<chat>-input" topic, before any subscription starts. */
  st = mim_check_cache_name(cache);
  for (size_t i = 0; i < n && st == MIM_OK; i++)
    st = mim_check_chat_names("mim_moderator_start", chat_ids[i], true);
  return st;
}

static void stop_now(mim_moderator *m);

/* mim_client_free stops a moderator the application did not. */
static void close_tracked(mim_live *live) {
  stop_now((mim_moderator *)((char *)live - offsetof(mim_moderator, live)));
}

MIM_API mim_status mim_moderator_start_with_options(mim_client *client, const char *cache,
                                                    const char *const *chat_ids, size_t n_chats,
                                                    const mim_moderator_options *options,
                                                    mim_moderation_fn filter, void *user,
                                                    mim_moderator **out) {
  mim_clear_error();
  mim_status st = check_start_args(client, cache, chat_ids, n_chats, filter, out);
  mim_moderator_options eff;
  if (st == MIM_OK)
    st = effective_options(options, &eff);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_moderator *m = moderator_new(client, cache, chat_ids, n_chats, &eff, filter, user);
  if (!m)
    return mim_arg_in(__func__, MIM_ERR_NO_MEMORY);
  for (size_t i = 0; i < n_chats && st == MIM_OK; i++) {
    mod_chat *c = &m->chats[i];
    learn_senders(m, c);
    mim_subscription_callbacks cbs = {.struct_size = sizeof cbs,
                                      .on_item = on_input,
                                      .on_discontinuity = on_input_gap,
                                      .on_state = on_input_state,
                                      .user = c};
    st = mim_topic_subscribe(client, cache, c->input_topic, NULL, &cbs, &c->sub);
    if (st == MIM_OK)
      mim_subscription_internal(c->sub);
  }
  pthread_mutex_lock(&m->mu);
  m->started = true;
  bool stop_asked = m->stop_asked;
  pthread_mutex_unlock(&m->mu);
  if (st == MIM_OK && stop_asked)
    st = mim_fail(MIM_ERR_CANCELLED,
                  "mim_moderator_stop was called from a callback during the start");
  if (st != MIM_OK) {
    char detail[256];
    snprintf(detail, sizeof detail, "%s", mim_last_error_detail());
    stop_now(m);
    return mim_fail_with_detail(st, detail);
  }
  *out = m;
  mim_client_track(client, &m->live, MIM_LIVE_MODERATOR, close_tracked);
  return MIM_OK;
}

MIM_API mim_status mim_moderator_start(mim_client *client, const char *cache,
                                       const char *const *chat_ids, size_t n_chats,
                                       uint32_t history_cap, mim_moderation_fn filter, void *user,
                                       mim_moderator **out) {
  /* Checked here too, so that an argument error names the function the caller called. */
  mim_clear_error();
  mim_status st = check_start_args(client, cache, chat_ids, n_chats, filter, out);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_moderator_options o;
  mim_moderator_options_init(&o);
  o.history_cap = history_cap;
  return mim_moderator_start_with_options(client, cache, chat_ids, n_chats, &o, filter, user, out);
}

static void stop_now(mim_moderator *m) {
  atomic_store(&m->stopping, true);
  pthread_mutex_lock(&m->mu); /* (from a job: what start wrote is visible after this) */
  pthread_mutex_unlock(&m->mu);
  for (size_t i = 0; i < m->n_chats; i++) {
    mim_topic_unsubscribe(m->chats[i].sub);
    m->chats[i].sub = NULL;
  }
  /* No input comes any more: flush the forwards queued, every chat within one flush time,
   * so list and topic stay consistent; the outboxes report what is left. */
  struct timespec until = cmn_deadline_after_ms(m->options.flush_timeout_ms);
  for (size_t i = 0; i < m->n_chats; i++) {
    mim_outbox_close_until(m->chats[i].outbox, until);
    m->chats[i].outbox = NULL;
  }
  moderator_free(m);
}

static void stop_job(void *arg) {
  stop_now(arg);
}

MIM_API void mim_moderator_stop(mim_moderator *moderator) {
  mim_moderator *m = moderator;
  if (!m)
    return;
  mim_client_untrack(m->client, &m->live);
  /* In loop mode on the loop thread outside callbacks its waits drive the loop. */
  if (!mim_client_in_callback(m->client)) {
    stop_now(m);
    return;
  }
  /* From a callback: the stop waits for the event thread, so it runs on a thread of its
   * own; the filter is not called any more from now on. */
  if (atomic_exchange(&m->stopping, true))
    return;
  pthread_mutex_lock(&m->mu);
  bool started = m->started;
  m->stop_asked = true;
  pthread_mutex_unlock(&m->mu);
  if (!started)
    return; /* start is still subscribing: it stops and returns MIM_ERR_CANCELLED */
  if (mim_client_run_detached(m->client, stop_job, m) != MIM_OK)
    mim_log(MIM_LOG_ERROR, "mim_moderator_stop from a callback: %s; the moderator is not freed",
            mim_last_error_detail());
}
