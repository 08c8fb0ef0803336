/* The IM session: join (subscribe, then fetch history), send, history, remove, leave;
 * the history + live merge and its gap-fill after reconnects live in merge.c, which
 * this file feeds with subscription events and list fetches.
 *
 * Threading. Everything that merges and delivers messages runs on the client's event
 * thread, which runs callbacks one at a time: subscription callbacks and list fetch
 * completions. So the merge (which takes no lock, see merge.h) is only ever called from
 * that thread and needs no lock: the event thread is what serializes it. The mutex
 * guards what the caller's threads share with it: the count of fetches in flight
 * (mim_leave waits for it to drop to zero) and the join handshake.
 *
 * Send. mim_send hands the envelope to the session's outbox (outbox.c), which sends one
 * message at a time and retries transient failures; a retry may store or publish a
 * message twice, which the merge's id set (and mim_history) hides from readers. */
#include "chat_defaults.h"
#include "client_internal.h"
#include "clock.h"
#include "envelope.h"
#include "error.h"
#include "fold.h"
#include "merge.h"
#include "message.h"
#include "outbox.h"
#include "presence.h"
#include "read.h"
#include "struct_size.h"

#include <momento/im.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LEFT_IN_JOIN "mim_leave was called from a callback during the join"

struct mim_session {
  mim_client *client;
  char *cache;
  char *chat;
  char *input_topic; /* "<chat>-input" */
  char *display_name;
  mim_chat_mode mode;
  uint32_t history_cap;
  uint32_t initial_history; /* values the join fetch asks for (the newest) */
  uint64_t ttl_ms;
  void (*on_event)(mim_session *, mim_subscription_state, mim_status, const char *, void *);
  mim_on_message on_message;
  void *user;
  mim_subscription *sub;
  atomic_bool closing; /* set by mim_leave: deliver nothing more */
  mim_outbox *outbox;  /* sends (see outbox.h) */
  void (*on_send_result)(mim_session *, const char *, mim_status, const char *, void *);
  uint32_t flush_timeout_ms;

  pthread_mutex_t mu;
  pthread_cond_t cv;
  int inflight;       /* list fetches whose completion has not finished */
  bool join_done;     /* the join fetch completed (join_status says how) */
  bool join_returned; /* mim_join has taken its result: a leave from a callback is deferred
                       * to a thread; before that, mim_join does it */
  bool leave_asked;   /* mim_leave was called from a callback */
  mim_status join_status;
  char join_detail[256];
  /* mim_join_async: the completion, and whether it has been called (both under mu). */
  mim_join_done_fn on_joined;
  bool join_reported;
  mim_timer *join_timer; /* async: the join's bound; event thread only once armed */

  /* Event-thread state (see the top of the file). */
  mim_merge merge;
  mim_status close_status; /* the subscription closed before the join completed */

  /* mim_history_before (any thread): where from the end (1 = the newest value) the oldest
   * value the session showed last sits: the join's oldest, then each page's. Only a
   * guess at where the next before_id is (0 = none). */
  atomic_size_t page_hint;

  mim_live live; /* tracked by the client while the application owns the session */

  /* ---- events: own messages, senders, the fold (docs/PROTOCOL.md 3, 4) ---- */
  char *user_id; /* the "uid" we write */
  mim_on_update on_update;
  /* fold_mu guards fold, own and my_pub: the event thread changes the fold (and reads
   * it without the lock, being its only writer); senders add to own; mim_history and
   * the author check of mim_edit / mim_delete read under it. */
  pthread_mutex_t fold_mu;
  mim_fold fold;
  mim_idset own; /* ids this session sent (bounded: OWN_IDS) */
  /* Moderated: the token id the moderator recorded on our messages ("" = none seen). */
  char my_pub[MIM_ENVELOPE_MAX_UID_LEN];
  /* Typing and presence (presence.h): signals never reach the merge. */
  mim_presence *presence;
  mim_on_presence on_presence;
  mim_read *read; /* read markers: the record of delivered messages (read.h) */
};

/* Own ids remembered for `mine`: the outbox's default limit plus a delivery window. */
#define OWN_IDS 8192u

/* ---- messages ---- */

static const char *or_empty(const char *s) {
  return s ? s : "";
}

MIM_API void mim_message_list_free(mim_message_list *list) {
  if (!list)
    return;
  for (size_t i = 0; i < list->count; i++)
    mim_message_free_packed(&list->messages[i]);
  free(list->messages);
  free(list);
}

/* ---- delivery (event thread) ---- */

static void emit_event(mim_session *s, mim_subscription_state state, mim_status status,
                       const char *detail) {
  if (s->on_event && !atomic_load(&s->closing))
    s->on_event(s, state, status, or_empty(detail), s->user);
}

static void deliver(mim_session *s, const mim_message *m) {
  if (atomic_load(&s->closing))
    return;
  mim_read_note(s->read, m);
  s->on_message(s, m, s->user);
}

/* Moderated: learns our trusted id from our own messages (for the author check). */
static void note_own_sender_locked(mim_session *s, const mim_message *m) {
  size_t n = strlen(m->sender_id);
  if (m->mine && m->sender_trusted && n < sizeof s->my_pub)
    memcpy(s->my_pub, m->sender_id, n + 1);
}

/* A msg: folds in what is known of it (held events), then on_message. */
static void deliver_msg(mim_session *s, const mim_message *m) {
  mim_message view = *m;
  pthread_mutex_lock(&s->fold_mu);
  mim_fold_reserve(&s->fold, mim_merge_capacity(&s->merge));
  if (mim_fold_message(&s->fold, &view) != MIM_OK)
    mim_log(MIM_LOG_WARN, "chat %s: out of memory keeping the state of %s", s->chat, m->id);
  view.mine = mim_idset_contains(&s->own, m->id);
  note_own_sender_locked(s, &view);
  pthread_mutex_unlock(&s->fold_mu);
  deliver(s, &view);
}

/* An edit, delete or react: on_update when it changed a delivered message. */
static void deliver_event(mim_session *s, const mim_message *m, const mim_envelope *env) {
  mim_message current;
  mim_update_kind what = MIM_UPDATE_EDITED;
  pthread_mutex_lock(&s->fold_mu);
  mim_fold_result res = mim_fold_event(&s->fold, env, m, &current, &what);
  if (res == MIM_FOLD_CHANGED)
    current.mine = mim_idset_contains(&s->own, current.id);
  pthread_mutex_unlock(&s->fold_mu);
  if (res == MIM_FOLD_CHANGED && what == MIM_UPDATE_DELETED)
    mim_read_forget(s->read, current.id); /* a deleted message is not unread */
  if (res == MIM_FOLD_CHANGED && s->on_update && !atomic_load(&s->closing))
    s->on_update(s, &current, what, s->user);
}

/* Before a fetched batch: its events for messages not delivered yet are folded into
 * them, so a joiner sees the state rather than a replay of changes. */
static void merge_prepare(void *user, const mim_envelope *env) {
  mim_session *s = user;
  pthread_mutex_lock(&s->fold_mu);
  mim_fold_prepare(&s->fold, env);
  pthread_mutex_unlock(&s->fold_mu);
}

/* The merge's sink: every stored value once, foreign ones as they are. */
static void merge_deliver(void *user, const mim_message *m, const mim_envelope *env) {
  mim_session *s = user;
  if (!env)
    deliver(s, m);
  else if (env->type == MIM_ENV_MSG)
    deliver_msg(s, m);
  else
    deliver_event(s, m, env);
}

static void merge_report(void *user, mim_status status, const char *detail) {
  emit_event(user, MIM_SUB_CONNECTED, status, detail);
}

/* ---- fetches (join and gap-fill) ---- */

static void start_fetch(mim_session *s);
static void finish_async_join(mim_session *s);

/* Ends the join (event thread): mim_join wakes up and returns status. */
static void join_finished_locked(mim_session *s, mim_status status, const char *detail) {
  s->join_done = true;
  s->join_status = status;
  snprintf(s->join_detail, sizeof s->join_detail, "%s", or_empty(detail));
  pthread_cond_broadcast(&s->cv);
}

static void on_fetch(void *user, mim_status status, const char *detail,
                     const mim_list_values *values) {
  mim_session *s = user;
  bool joining = !mim_merge_joined(&s->merge);
  if (joining && status == MIM_OK && values) /* the oldest it shows: where paging starts */
    atomic_store(&s->page_hint, values->count);
  if (joining && status == MIM_OK && s->close_status != MIM_OK) {
    status = s->close_status;
    detail = "the subscription closed while joining";
  }
  if (mim_merge_fetch_done(&s->merge, status, detail, values) && !atomic_load(&s->closing))
    start_fetch(s);
  bool async = s->on_joined != NULL; /* read now: a mim_join may free s below */
  pthread_mutex_lock(&s->mu);
  if (joining)
    join_finished_locked(s, status, detail);
  s->inflight--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu); /* last touch unless async: mim_leave/mim_join may free s */
  /* An async join's session is freed only by finish_async_join or after it (leave). */
  if (async && joining)
    finish_async_join(s);
}

/* The newest values a fetch asks for (0 = the whole list): the join's initial_history
 * (the merge delivers live values that are not in it as usual, so nothing published
 * after the subscription was confirmed is missed); a gap-fill's tail as the merge says. */
static size_t fetch_window(const mim_session *s, bool joining) {
  size_t n = joining ? (s->initial_history < s->history_cap ? s->initial_history : 0)
                     : mim_merge_fetch_window(&s->merge);
  return n > INT32_MAX ? 0 : n;
}

/* Starts a fetch (event thread): the join's of the newest initial_history values, a
 * gap-fill's of a tail or the whole list (see mim_merge_fetch_window); live items are
 * buffered until it completes. One at a time: a trigger during a fetch asks for another
 * one after it. */
static void start_fetch(mim_session *s) {
  if (!mim_merge_fetch_begin(&s->merge))
    return;
  pthread_mutex_lock(&s->mu);
  s->inflight++;
  pthread_mutex_unlock(&s->mu);
  bool joining = !mim_merge_joined(&s->merge); /* a failed start leaves it unjoined */
  size_t window = fetch_window(s, joining);
  mim_list_range range = {.has_start = true, .start = -(int32_t)window};
  mim_status st =
      mim_list_fetch_async(s->client, s->cache, s->chat, window ? &range : NULL, on_fetch, s);
  if (st == MIM_OK)
    return;
  /* No completion will run: undo, and deliver what was buffered. */
  const char *detail = mim_last_error_detail();
  mim_merge_fetch_not_started(&s->merge, st, detail);
  pthread_mutex_lock(&s->mu);
  if (joining)
    join_finished_locked(s, st, detail);
  s->inflight--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (joining)
    finish_async_join(s);
}

/* ---- subscription callbacks (event thread) ---- */

static void on_item(void *user, const mim_topic_item *item) {
  mim_session *s = user;
  if (atomic_load(&s->closing) || mim_presence_on_item(s->presence, item->data, item->len))
    return;
  mim_merge_live(&s->merge, item);
}

static void on_discontinuity(void *user, uint64_t last, uint64_t next, uint64_t page) {
  mim_session *s = user;
  if (mim_merge_discontinuity(&s->merge, last, next, page) && !atomic_load(&s->closing))
    start_fetch(s);
}

static void on_state(void *user, mim_subscription_state state, mim_status status,
                     const char *detail) {
  mim_session *s = user;
  emit_event(s, state, status, detail);
  if (atomic_load(&s->closing)) {
    finish_async_join(s); /* on_event may have left during an async join */
    return;
  }
  if (mim_merge_state(&s->merge, state)) {
    start_fetch(s);
  } else if (state == MIM_SUB_CLOSED && !mim_merge_joined(&s->merge)) {
    s->close_status = status != MIM_OK ? status : MIM_ERR_UNAVAILABLE;
    if (!mim_merge_fetching(&s->merge)) {
      pthread_mutex_lock(&s->mu);
      join_finished_locked(s, s->close_status, detail);
      pthread_mutex_unlock(&s->mu);
      finish_async_join(s);
    }
  }
}

/* ---- lifetime ---- */

/* The caller's options (NULL: defaults) as this library's struct, in *copy. */
static mim_status join_options_in(const mim_join_options *in, mim_join_options *copy,
                                  const mim_join_options **out, const char *fn) {
  *out = NULL;
  if (!in)
    return MIM_OK;
  char what[48];
  snprintf(what, sizeof what, "%s: options", fn);
  mim_status st = mim_struct_copy_in(copy, sizeof *copy, in,
                                     MIM_SIZE_THROUGH(mim_join_options, initial_history), what,
                                     "MIM_JOIN_OPTIONS_INIT");
  if (st == MIM_OK)
    *out = copy;
  return st;
}

static void session_free(mim_session *s) {
  mim_outbox_close(s->outbox, 0);
  mim_presence_free(s->presence);
  mim_merge_free(&s->merge);
  mim_fold_free(&s->fold);
  mim_idset_free(&s->own);
  pthread_mutex_destroy(&s->fold_mu);
  free(s->user_id);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->cache);
  free(s->chat);
  free(s->input_topic);
  free(s->display_name);
  mim_read_free(s->read);
  free(s);
}

static void on_outbox_result(void *owner, const char *id, mim_status status, const char *detail) {
  mim_session *s = owner;
  if (s->on_send_result)
    s->on_send_result(s, id, status, detail, s->user);
}

/* Client-only: push to list <chat> (capped, with TTL), then publish on topic <chat>.
 * Push before publish: a joiner that fetched the list before our push is subscribed
 * already and gets the publish; one that fetched after sees it in the list.
 * Moderated: publish on "<chat>-input" only. */
static mim_status session_outbox(mim_session *s, const mim_join_options *o) {
  bool moderated = s->mode == MIM_CHAT_MODERATED;
  mim_outbox_config cfg = {
      .client = s->client,
      .cache = s->cache,
      .list = moderated ? NULL : s->chat,
      .topic = moderated ? s->input_topic : s->chat,
      .write_options = {.struct_size = sizeof(mim_list_write_options),
                        .ttl_ms = s->ttl_ms,
                        .refresh_ttl = true,
                        .truncate_to = s->history_cap},
      .limit = o && o->outbox_limit ? o->outbox_limit : MIM_DEFAULT_OUTBOX_LIMIT,
      .send_timeout_ms = o && o->send_timeout_ms ? o->send_timeout_ms : MIM_DEFAULT_SEND_TIMEOUT_MS,
      .on_result = on_outbox_result,
      .owner = s};
  return mim_outbox_new(&cfg, &s->outbox);
}

/* The user id we write: user_id, else the display name when it can be one (1..128
 * bytes); else none (""): readers then go by the display name, as for version 1. */
static const char *default_user_id(const mim_join_options *o) {
  if (o && o->user_id)
    return o->user_id;
  const char *name = o && o->display_name ? o->display_name : "anonymous";
  size_t n = strlen(name);
  return n > 0 && n <= MIM_ENVELOPE_MAX_UID_LEN ? name : "";
}

/* The events part of a new session (session_free undoes it, also when it failed). */
static mim_status session_events_init(mim_session *s, const mim_join_options *o) {
  pthread_mutex_init(&s->fold_mu, NULL);
  bool moderated = s->mode == MIM_CHAT_MODERATED;
  s->on_update = o ? o->on_update : NULL;
  s->user_id = strdup(default_user_id(o));
  mim_status st = mim_fold_init(&s->fold, (size_t)s->history_cap + 4096u, moderated);
  if (st == MIM_OK)
    st = mim_idset_init(&s->own, OWN_IDS);
  return st == MIM_OK && s->user_id ? MIM_OK : MIM_ERR_NO_MEMORY;
}

/* The presence table's reports, until the session closes. */
static void presence_emit(void *user, mim_presence_change change, const mim_member *member) {
  mim_session *s = user;
  if (s->on_presence && !atomic_load(&s->closing))
    s->on_presence(s, change, member, s->user);
}

/* Typing signals always; presence when on_presence is set. */
static mim_status session_presence(mim_session *s, const mim_join_options *o) {
  s->on_presence = o ? o->on_presence : NULL;
  mim_presence_config cfg = {.client = s->client,
                             .cache = s->cache,
                             .topic = s->mode == MIM_CHAT_MODERATED ? s->input_topic : s->chat,
                             .from = s->display_name,
                             .uid = s->user_id[0] ? s->user_id : s->display_name,
                             .moderated = s->mode == MIM_CHAT_MODERATED,
                             .enabled = s->on_presence != NULL,
                             .heartbeat_ms = o ? o->presence_heartbeat_ms : 0,
                             .emit = presence_emit,
                             .user = s};
  return mim_presence_new(&cfg, &s->presence);
}

/* A new session, or NULL (detail set) when out of memory. */
static mim_session *session_new(mim_client *client, const char *cache, const char *chat_id,
                                const mim_join_options *o, mim_on_message on_message, void *user) {
  mim_session *s = calloc(1, sizeof *s);
  if (!s) {
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&s->mu, NULL);
  cmn_cond_init_monotonic(&s->cv); /* wait_join waits on it with a deadline */
  atomic_init(&s->closing, false);
  atomic_init(&s->page_hint, 0);
  s->client = client;
  s->on_message = on_message;
  s->user = user;
  s->mode = o ? o->mode : MIM_CHAT_CLIENT_ONLY;
  s->history_cap = o && o->history_cap ? o->history_cap : MIM_DEFAULT_HISTORY_CAP;
  s->initial_history = o && o->initial_history ? o->initial_history : MIM_DEFAULT_INITIAL_HISTORY;
  s->ttl_ms = o ? o->history_ttl_ms : 0;
  s->on_event = o ? o->on_event : NULL;
  s->cache = strdup(cache);
  s->chat = strdup(chat_id);
  s->display_name = strdup(o && o->display_name ? o->display_name : "anonymous");
  s->input_topic = mim_chat_input_topic(chat_id);
  const char *uid = default_user_id(o); /* the "uid" we write is our marker's field */
  if (s->display_name)
    s->read = mim_read_new(chat_id, *uid ? uid : s->display_name);
  s->on_send_result = o ? o->on_send_result : NULL;
  s->flush_timeout_ms =
      o && o->flush_timeout_ms ? o->flush_timeout_ms : MIM_DEFAULT_FLUSH_TIMEOUT_MS;
  mim_merge_sink sink = {
      .deliver = merge_deliver, .prepare = merge_prepare, .report = merge_report, .user = s};
  if (session_events_init(s, o) != MIM_OK || !s->cache || !s->chat || !s->display_name ||
      !s->input_topic || !s->read ||
      mim_merge_init(&s->merge, s->chat, s->history_cap, &sink) != MIM_OK ||
      session_outbox(s, o) != MIM_OK || session_presence(s, o) != MIM_OK) {
    session_free(s);
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  s->merge.moderated = s->mode == MIM_CHAT_MODERATED; /* senders: docs/PROTOCOL.md 3.2 */
  return s;
}

static bool no_fetch_inflight(void *arg) {
  return ((mim_session *)arg)->inflight == 0;
}

/* Stops all callbacks: no delivery after this returns. */
static void session_quiesce(mim_session *s) {
  atomic_store(&s->closing, true);
  mim_topic_unsubscribe(s->sub);
  s->sub = NULL;
  pthread_mutex_lock(&s->mu);
  /* Each fetch has the client's deadline: this ends. */
  (void)mim_client_wait_locked(s->client, &s->mu, &s->cv, no_fetch_inflight, s, NULL);
  pthread_mutex_unlock(&s->mu);
}

/* Which argument is missing, by its name in im.h (the caller names the function). */
static mim_status check_join_pointers(mim_client *client, const char *cache, const char *chat_id,
                                      mim_on_message on_message, const void *out) {
  if (!client)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  mim_status st = mim_check_name("cache", cache);
  if (st == MIM_OK)
    st = mim_check_name("chat_id", chat_id);
  if (st == MIM_OK && !on_message)
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "on_message is NULL");
  if (st == MIM_OK && !out)
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "out is NULL");
  return st;
}

/* An explicit user id must fit docs/PROTOCOL.md 3.4 (the default is checked where it is
 * taken: see default_user_id). */
static mim_status check_user_id(const mim_join_options *o) {
  if (!o || !o->user_id)
    return MIM_OK;
  size_t n = strlen(o->user_id);
  if (n == 0 || n > MIM_ENVELOPE_MAX_UID_LEN ||
      !mim_utf8_text_valid((const uint8_t *)o->user_id, n))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "options->user_id must be 1..%u bytes of UTF-8 (it is %zu bytes)",
                    MIM_ENVELOPE_MAX_UID_LEN, n);
  return MIM_OK;
}

static mim_status check_join_args(const char *fn, mim_client *client, const char *cache,
                                  const char *chat_id, const mim_join_options *o,
                                  mim_on_message on_message, const void *out) {
  mim_status st = check_join_pointers(client, cache, chat_id, on_message, out);
  if (st != MIM_OK)
    return st;
  if (o && o->mode != MIM_CHAT_CLIENT_ONLY && o->mode != MIM_CHAT_MODERATED)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "options->mode: unknown chat mode %d", (int)o->mode);
  /* Every name the session will send, "<chat>-input" included: one the server refuses
   * would otherwise fail each mim_send long after a join that looked fine. */
  st = mim_check_cache_name(cache);
  if (st == MIM_OK)
    st = mim_check_chat_names(fn, chat_id, o && o->mode == MIM_CHAT_MODERATED);
  if (st != MIM_OK)
    return st;
  if (o && o->display_name &&
      !mim_utf8_text_valid((const uint8_t *)o->display_name, strlen(o->display_name)))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "options->display_name is not valid UTF-8");
  return check_user_id(o);
}

/* How long a join may take: the subscribe and the fetch each have the client's deadline;
 * this only guards against a lower layer that never answers. */
static int64_t join_bound_ms(mim_client *client) {
  return 3 * mim_client_deadline_ms(client) + 5000;
}

static bool join_is_done(void *arg) {
  return ((mim_session *)arg)->join_done;
}

/* Waits for the join to finish (in loop mode on the loop thread: drives the loop). The
 * subscribe and the fetch each have the client's deadline; the bound here only guards
 * against a lower layer that never answers. */
static mim_status wait_join(mim_session *s, char *detail, size_t detail_size) {
  struct timespec until = cmn_deadline_after_ms(join_bound_ms(s->client));
  pthread_mutex_lock(&s->mu);
  if (!mim_client_wait_locked(s->client, &s->mu, &s->cv, join_is_done, s, &until))
    join_finished_locked(s, MIM_ERR_DEADLINE_EXCEEDED, "join did not complete in time");
  mim_status st = s->join_status;
  snprintf(detail, detail_size, "%s", s->join_detail);
  pthread_mutex_unlock(&s->mu);
  return st;
}

static void leave_now(mim_session *s);

/* mim_client_free leaves a session the application did not. */
static void close_tracked(mim_live *live) {
  leave_now((mim_session *)((char *)live - offsetof(mim_session, live)));
}

/* The application owns s from now on: mim_client_free leaves it if the application
 * does not. Its subscription is the session's own. */
static void session_owned(mim_session *s) {
  mim_client_track(s->client, &s->live, MIM_LIVE_SESSION, close_tracked);
}

/* The bound of an async join, as wait_join's for mim_join (event thread). */
static void join_timed_out(void *user) {
  mim_session *s = user;
  s->join_timer = NULL; /* it has fired: finish_async_join must not cancel it */
  pthread_mutex_lock(&s->mu);
  bool fire = !s->join_done;
  if (fire)
    join_finished_locked(s, MIM_ERR_DEADLINE_EXCEEDED, "join did not complete in time");
  pthread_mutex_unlock(&s->mu);
  if (fire)
    finish_async_join(s);
}

/* Creates the session and subscribes. Live items are buffered until the history is
 * delivered. The join fetch starts on the event thread when the subscription is
 * confirmed (on_state CONNECTED), so every piece of merge state stays on that thread. */
static mim_status join_start(mim_client *client, const char *cache, const char *chat_id,
                             const mim_join_options *options, mim_on_message on_message, void *user,
                             mim_join_done_fn on_joined, mim_session **out) {
  mim_session *s = session_new(client, cache, chat_id, options, on_message, user);
  if (!s)
    return MIM_ERR_NO_MEMORY;
  s->on_joined = on_joined; /* before subscribing: callbacks read it */
  mim_status st = MIM_OK;
  if (on_joined) /* armed first, so no callback can run before join_timer is set */
    st = mim_transport_timer(mim_client_transport(client), join_bound_ms(client), join_timed_out, s,
                             &s->join_timer);
  mim_subscription_callbacks cbs = {.struct_size = sizeof cbs,
                                    .on_item = on_item,
                                    .on_discontinuity = on_discontinuity,
                                    .on_state = on_state,
                                    .user = s};
  if (st == MIM_OK)
    st = mim_topic_subscribe_async(client, cache, chat_id, NULL, &cbs, &s->sub);
  if (st == MIM_OK)
    mim_subscription_internal(s->sub);
  if (st != MIM_OK) {
    if (s->join_timer)
      (void)mim_timer_cancel(s->join_timer); /* seconds away: it has not run */
    session_free(s);
    return st; /* detail set by subscribe */
  }
  *out = s;
  return MIM_OK;
}

MIM_API mim_status mim_join(mim_client *client, const char *cache, const char *chat_id,
                            const mim_join_options *caller_options, mim_on_message on_message,
                            void *user, mim_session **out) {
  mim_clear_error();
  mim_join_options copy;
  const mim_join_options *options;
  mim_status st = join_options_in(caller_options, &copy, &options, "mim_join");
  if (st == MIM_OK)
    st = check_join_args(__func__, client, cache, chat_id, options, on_message, out);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  if (mim_client_in_callback(client))
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "mim_join called from a callback (it would wait for itself); use "
                    "mim_join_async");
  mim_session *s = NULL;
  st = join_start(client, cache, chat_id, options, on_message, user, NULL, &s);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  char detail[sizeof s->join_detail];
  st = wait_join(s, detail, sizeof detail);
  /* Before join_returned: until then a leave from a callback is left to us, so s cannot
   * be freed under this call; after it, a callback's leave may free s at any moment. */
  if (st == MIM_OK) {
    mim_presence_start(s->presence);
    session_owned(s);
  }
  pthread_mutex_lock(&s->mu);
  s->join_returned = true;
  bool left = s->leave_asked;
  pthread_mutex_unlock(&s->mu);
  if (left) {
    mim_client_untrack(s->client, &s->live);
    leave_now(s);
    return mim_arg_in(__func__, mim_fail(MIM_ERR_CANCELLED, LEFT_IN_JOIN));
  }
  if (st != MIM_OK) {
    session_quiesce(s);
    session_free(s);
    return mim_fail_with_detail(st, detail);
  }
  *out = s;
  return MIM_OK;
}

MIM_API mim_status mim_join_async(mim_client *client, const char *cache, const char *chat_id,
                                  const mim_join_options *caller_options, mim_on_message on_message,
                                  mim_join_done_fn on_joined, void *user) {
  mim_clear_error();
  mim_session *s = NULL;
  mim_join_options copy;
  const mim_join_options *options;
  mim_status st = join_options_in(caller_options, &copy, &options, "mim_join_async");
  if (st == MIM_OK)
    st = check_join_args(__func__, client, cache, chat_id, options, on_message, &s);
  if (st == MIM_OK && !on_joined)
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_join_async: NULL on_joined");
  if (st == MIM_OK)
    st = join_start(client, cache, chat_id, options, on_message, user, on_joined, &s);
  return mim_arg_in(__func__, st);
}

/* The whole leave; not on the event thread (it waits for it). */
static void leave_now(mim_session *s) {
  mim_presence_stop(s->presence); /* "left" goes while still subscribed */
  /* Flush first (the subscription does not matter for it), reporting what is left. A hung
   * server costs the flush and one call deadline, "left" being in flight meanwhile. */
  mim_outbox_close(s->outbox, s->flush_timeout_ms);
  s->outbox = NULL;
  mim_presence_drain(s->presence);
  session_quiesce(s);
  session_free(s);
}

static void leave_job(void *arg) {
  leave_now(arg);
}

/* Hands the rest of a leave to a job (the caller is a callback on the event thread). */
static void leave_later(mim_session *s) {
  if (mim_client_run_detached(s->client, leave_job, s) != MIM_OK)
    mim_log(MIM_LOG_ERROR, "mim_leave from a callback: %s; the session of chat %s is not freed",
            mim_last_error_detail(), s->chat);
}

/* Event thread, once the join of a mim_join_async session has finished (no-op for
 * mim_join sessions and after the first call). Calls the completion; a failed or left
 * join is then freed by a job, since freeing waits for the event thread. */
static void finish_async_join(mim_session *s) {
  if (!s->on_joined)
    return;
  pthread_mutex_lock(&s->mu);
  bool fire = s->join_done && !s->join_reported;
  s->join_reported = s->join_reported || fire;
  mim_status st = s->leave_asked ? MIM_ERR_CANCELLED : s->join_status;
  char detail[sizeof s->join_detail];
  snprintf(detail, sizeof detail, "%s", s->leave_asked ? LEFT_IN_JOIN : s->join_detail);
  pthread_mutex_unlock(&s->mu);
  if (!fire)
    return;
  /* Serialized with the timer on this thread: it has not run, or it is what calls us. */
  if (s->join_timer)
    (void)mim_timer_cancel(s->join_timer);
  s->join_timer = NULL;
  if (st != MIM_OK)
    atomic_store(&s->closing, true); /* the completion is the last callback */
  /* The application may free the client as soon as it has seen the completion: the
   * leave job started below must already count for mim_client_free by then. */
  mim_client *client = s->client;
  mim_client_hold_jobs(client);
  /* Before the completion: from then on another thread of the application may leave s
   * (its mim_leave untracks first, so tracking after it would track a freed session). */
  if (st == MIM_OK) {
    mim_presence_start(s->presence);
    session_owned(s);
  }
  s->on_joined(s, st, st == MIM_OK ? "" : detail, s->user);
  pthread_mutex_lock(&s->mu);
  s->join_returned = st == MIM_OK && !s->leave_asked; /* the caller owns it from now on */
  bool free_it = !s->join_returned;
  pthread_mutex_unlock(&s->mu);
  if (free_it) {
    mim_client_untrack(client, &s->live);
    atomic_store(&s->closing, true);
    leave_later(s);
  }
  mim_client_release_jobs(client);
}

/* mim_leave on the event thread (from a callback): waiting there for the outbox, the
 * subscription or a fetch would wait for ourselves. Stop delivering at once; the rest
 * runs on a thread of its own, or in mim_join when the join has not returned yet (the
 * caller does not own the session before that). */
static void leave_deferred(mim_session *s) {
  atomic_store(&s->closing, true);
  pthread_mutex_lock(&s->mu);
  bool repeated = s->leave_asked;
  s->leave_asked = true;
  bool joined = s->join_returned;
  /* Nothing more is started for a closing session: wake mim_join now. */
  if (!joined && !s->join_done)
    join_finished_locked(s, MIM_ERR_CANCELLED, LEFT_IN_JOIN);
  pthread_mutex_unlock(&s->mu);
  if (repeated || !joined)
    return;
  leave_later(s);
}

MIM_API void mim_leave(mim_session *session) {
  if (!session)
    return;
  mim_client_untrack(session->client, &session->live);
  /* In loop mode on the loop thread outside callbacks the waits drive the loop. */
  if (mim_client_in_callback(session->client))
    leave_deferred(session);
  else
    leave_now(session);
}

/* ---- history, send, remove ---- */

static mim_status check_session(const mim_session *s, const char *what) {
  if (!s)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s: NULL session", what);
  return MIM_OK;
}

/* The state fields of src (a fold's view) into dst. */
static void copy_state(mim_message *dst, const mim_message *src) {
  dst->text = src->text;
  dst->edited = src->edited;
  dst->edited_ms = src->edited_ms;
  dst->deleted = src->deleted;
  dst->n_reactions = src->n_reactions;
  dst->reactions = src->reactions;
}

/* Folds the events of the page into its messages (each stored id once). */
static mim_status fold_page(const mim_session *s, const mim_list_values *values, mim_fold *page) {
  mim_idset seen;
  mim_status st = mim_idset_init(&seen, values->count + 1);
  for (size_t i = 0; i < values->count && st == MIM_OK; i++) {
    const mim_bytes *v = &values->values[i];
    mim_envelope env;
    bool added = false;
    if (!mim_envelope_parse(v->data, v->len, &env, NULL))
      continue;
    st = mim_idset_add(&seen, env.id, &added);
    mim_message m, current;
    mim_update_kind what;
    mim_message_fill(&m, &env, s->chat, "", v->data, v->len, 0, true);
    mim_message_fill_sender(&m, &env, s->mode == MIM_CHAT_MODERATED);
    if (st == MIM_OK && added && env.type == MIM_ENV_MSG)
      st = mim_fold_message(page, &m);
    else if (st == MIM_OK && added)
      (void)mim_fold_event(page, &env, &m, &current, &what);
    mim_envelope_clear(&env);
  }
  mim_idset_free(&seen);
  return st;
}

/* One msg of a page, packed, with its state: the session's when it knows the message
 * (it may have seen events outside the page), else what the page's events made of it. */
static bool pack_msg(mim_session *s, const mim_fold *page, const mim_envelope *env,
                     const mim_bytes *v, mim_message *m) {
  mim_message_fill(m, env, s->chat, "", v->data, v->len, 0, true);
  mim_message_fill_sender(m, env, s->mode == MIM_CHAT_MODERATED);
  mim_message state;
  pthread_mutex_lock(&s->fold_mu);
  if (mim_fold_view(&s->fold, env->id, s->chat, &state) ||
      mim_fold_view(page, env->id, s->chat, &state))
    copy_state(m, &state);
  m->mine = mim_idset_contains(&s->own, env->id);
  bool packed = mim_message_pack(m); /* copies the state while the lock keeps it */
  pthread_mutex_unlock(&s->fold_mu);
  return packed;
}

/* Turns fetched list values into an owned message list (oldest first): the messages
 * (foreign values too) with the events folded in; events, signals and unknown types are
 * not listed. */
static mim_status values_to_list(mim_session *s, const mim_list_values *values,
                                 mim_message_list **out) {
  mim_message_list *list = calloc(1, sizeof *list);
  if (!list)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  if (values->count) {
    list->messages = calloc(values->count, sizeof *list->messages);
    if (!list->messages) {
      free(list);
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    }
  }
  /* A send retried after its push's answer was lost leaves the message twice in the
   * list: keep the first copy only. */
  mim_idset seen;
  mim_fold page;
  mim_status st = mim_fold_init(&page, values->count + 1, s->mode == MIM_CHAT_MODERATED);
  if (st == MIM_OK)
    st = mim_idset_init(&seen, values->count + 1);
  if (st == MIM_OK)
    st = fold_page(s, values, &page);
  for (size_t i = 0; i < values->count && st == MIM_OK; i++) {
    const mim_bytes *v = &values->values[i];
    mim_envelope env;
    bool ok = mim_message_parse(s->chat, v->data, v->len, &env), added = false;
    if (ok && (st = mim_idset_add(&seen, env.id, &added)) != MIM_OK) {
      mim_envelope_clear(&env);
      break;
    }
    mim_message *m = &list->messages[list->count];
    bool listed = ok ? added && env.type == MIM_ENV_MSG : env.type == MIM_ENV_FOREIGN;
    if (listed && !ok)
      mim_message_fill(m, NULL, s->chat, "", v->data, v->len, 0, true);
    bool packed = !listed || (ok ? pack_msg(s, &page, &env, v, m) : mim_message_pack(m));
    if (ok)
      mim_envelope_clear(&env);
    if (!packed)
      st = MIM_ERR_NO_MEMORY;
    else if (listed)
      list->count++;
  }
  mim_idset_free(&seen);
  mim_fold_free(&page);
  if (st != MIM_OK) {
    mim_message_list_free(list);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  }
  *out = list;
  return MIM_OK;
}

MIM_API mim_status mim_history(mim_session *session, size_t last_n, mim_message_list **out) {
  mim_clear_error();
  mim_status st = check_session(session, "mim_history");
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  if (!out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_history: NULL out");
  mim_list_range range = {0};
  if (last_n > 0) {
    /* Negative start counts from the end; more than the list holds gives all of it. */
    range.has_start = true;
    range.start = last_n >= (size_t)INT32_MAX ? -INT32_MAX : -(int32_t)last_n;
  }
  mim_list_values *values = NULL;
  st = mim_list_fetch(session->client, session->cache, session->chat, last_n ? &range : NULL,
                      &values);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  st = values_to_list(session, values, out);
  mim_list_values_free(values);
  return mim_arg_in(__func__, st);
}

/* ---- paging back (mim_history_before) ---- */

#define HISTORY_PAGE_MAX 1000000u
/* Values fetched beyond twice the page when looking for before_id without a hint. */
#define HISTORY_PAGE_SLACK 20u
/* With a hint (where the session's oldest shown value was): values fetched beyond the
 * page on the older side (messages pushed since move before_id that way) and on the
 * newer side (a removal moves it this way). */
#define HINT_OUTER_SLACK 10u
#define HINT_INNER_SLACK 2u

/* Fetched values and where they sit: `skip` newer values of the list follow them. */
typedef struct list_view {
  mim_list_values *v;
  size_t skip;
  bool at_start; /* the view begins at the list's first value */
} list_view;

/* The values at positions skip + 1 .. from_end counted from the end (1 = the newest); the
 * whole list when from_end does not fit a range (skip is then 0). */
static mim_status fetch_view(const mim_session *s, size_t from_end, size_t skip, list_view *out) {
  bool whole = from_end > INT32_MAX;
  mim_list_range range = {.has_start = true,
                          .start = whole ? 0 : -(int32_t)from_end,
                          .has_end = skip > 0,
                          .end = -(int32_t)skip};
  out->skip = whole ? 0 : skip;
  out->v = NULL;
  mim_status st = mim_list_fetch(s->client, s->cache, s->chat, whole ? NULL : &range, &out->v);
  out->at_start = st == MIM_OK && (whole || out->v->count < from_end - skip);
  return st;
}

/* Index of the first value of v that is the chat message id, or -1. */
static long index_of(const mim_session *s, const mim_list_values *v, const char *id) {
  for (size_t i = 0; i < v->count; i++) {
    mim_envelope env;
    if (!mim_message_parse(s->chat, v->values[i].data, v->values[i].len, &env))
      continue;
    bool hit = strcmp(env.id, id) == 0;
    mim_envelope_clear(&env);
    if (hit)
      return (long)i;
  }
  return -1;
}

/* The page before_id (NULL: the end) asks for, when the view holds it: `count` values
 * before it, or all of them back to the list's start. *done false: look elsewhere. */
static mim_status page_from_view(mim_session *s, const list_view *view, const char *before_id,
                                 size_t count, mim_message_list **out, bool *more, bool *done) {
  const mim_list_values *v = view->v;
  long at = before_id ? index_of(s, v, before_id) : (long)v->count;
  *done = at >= 0 && ((size_t)at >= count || view->at_start);
  if (!*done)
    return MIM_OK;
  size_t end = (size_t)at, start = end > count ? end - count : 0;
  mim_list_values slice = {.found = v->found, .count = end - start, .values = v->values + start};
  mim_status st = values_to_list(s, &slice, out);
  if (st != MIM_OK)
    return st;
  if (more)
    *more = start > 0 || !view->at_start;
  atomic_store(&s->page_hint, end > start ? view->skip + v->count - start : 0);
  return MIM_OK;
}

/* One fetch, and the page when it holds it. */
static mim_status try_view(mim_session *s, size_t from_end, size_t skip, const char *before_id,
                           size_t count, mim_message_list **out, bool *more, list_view *view,
                           bool *done) {
  mim_status st = fetch_view(s, from_end, skip, view);
  if (st == MIM_OK)
    st = page_from_view(s, view, before_id, count, out, more, done);
  mim_list_values_free(view->v);
  return st;
}

/* First where the session's last page (or the join) ended, as the usual caller pages
 * back from the oldest message it shows; then tails of growing size until before_id is
 * in one with `count` values before it, or the tail is the whole list. */
static mim_status page_before(mim_session *s, const char *before_id, size_t count,
                              mim_message_list **out, bool *more) {
  list_view view;
  bool done = false;
  size_t hint = atomic_load(&s->page_hint);
  if (before_id && hint > 0) {
    size_t skip = hint > HINT_INNER_SLACK ? hint - 1 - HINT_INNER_SLACK : 0;
    mim_status st = try_view(s, hint + count + HINT_OUTER_SLACK, skip, before_id, count, out, more,
                             &view, &done);
    if (st != MIM_OK || done)
      return st;
  }
  size_t window = before_id ? 2 * count + HISTORY_PAGE_SLACK : count;
  for (;;) {
    mim_status st = try_view(s, window, 0, before_id, count, out, more, &view, &done);
    if (st != MIM_OK || done)
      return st;
    if (view.at_start)
      return mim_fail(MIM_ERR_NOT_FOUND, "mim_history_before: no message with that id in the "
                                         "history (truncated away or removed)");
    window *= 4; /* past INT32_MAX: the whole list, which ends the loop */
  }
}

MIM_API mim_status mim_history_before(mim_session *session, const char *before_id, size_t count,
                                      mim_message_list **out, bool *more) {
  mim_clear_error();
  mim_status st = check_session(session, "mim_history_before");
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  if (!out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_history_before: NULL out");
  if (count == 0 || count > HISTORY_PAGE_MAX)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_history_before: count %zu not in 1..%u", count,
                    HISTORY_PAGE_MAX);
  return mim_arg_in(
      __func__, page_before(session, before_id && *before_id ? before_id : NULL, count, out, more));
}

/* ---- sending: messages and events (docs/PROTOCOL.md 3, 4) ---- */

/* A string argument of an envelope: valid UTF-8 of min..max bytes (max 0: any). */
static mim_status check_text_arg(const char *fn, const char *what, const char *v, size_t min,
                                 size_t max) {
  if (!v)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s: NULL %s", fn, what);
  size_t n = strlen(v);
  if (n < min || (max && n > max))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s: %s must be %zu..%zu bytes (it is %zu)", fn, what,
                    min, max, n);
  if (!mim_utf8_text_valid((const uint8_t *)v, n))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s: %s is not valid UTF-8", fn, what);
  return MIM_OK;
}

/* Sends in (our id, sender and time filled in here) through the outbox, as mim_send
 * documents; in->id is the caller's or a new one. */
static mim_status send_envelope(mim_session *s, const mim_envelope *in,
                                char id_out[MIM_MESSAGE_ID_SIZE]) {
  char id[MIM_ENVELOPE_ID_SIZE];
  if (in->id)
    snprintf(id, sizeof id, "%s", in->id); /* at most 32 bytes: checked by the caller */
  else if (mim_envelope_new_id(id) != MIM_OK)
    return MIM_ERR_INTERNAL;
  mim_envelope built = *in;
  mim_envelope *e = &built;
  e->id = id;
  e->v = 2;
  e->from = s->display_name;
  e->uid = *s->user_id ? s->user_id : NULL;
  e->ts = cmn_wall_ms();
  char *json = NULL;
  size_t len = 0;
  mim_status st = mim_envelope_build_v2(e, &json, &len);
  if (st != MIM_OK)
    return st;
  /* Known as ours before the outbox runs: our own echo may come back at once. */
  pthread_mutex_lock(&s->fold_mu);
  if (mim_idset_add(&s->own, e->id, NULL) != MIM_OK)
    mim_log(MIM_LOG_WARN, "chat %s: out of memory remembering our id", s->chat);
  pthread_mutex_unlock(&s->fold_mu);
  /* On the event thread (a callback) waiting for the attempt would deadlock; in loop mode
   * mim_send never waits (the outcome comes through on_send_result). Elsewhere the wait
   * is short: a hung network must not hold the caller (the outbox goes on). */
  bool no_wait = mim_client_loop_mode(s->client) ||
                 mim_transport_on_event_thread(mim_client_transport(s->client));
  st = mim_outbox_send(s->outbox, e->id, json, len, no_wait ? 0 : MIM_SEND_WAIT_MS);
  if (st == MIM_OK && id_out)
    snprintf(id_out, MIM_MESSAGE_ID_SIZE, "%s", e->id);
  return st;
}

MIM_API mim_status mim_message_id_new(char out[MIM_MESSAGE_ID_SIZE]) {
  mim_clear_error();
  if (!out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_message_id_new: NULL out");
  return mim_envelope_new_id(out);
}

/* The caller's options (NULL: defaults) into *o. */
static mim_status send_options_in(const char *fn, const mim_send_options *in, mim_send_options *o) {
  memset(o, 0, sizeof *o);
  if (!in)
    return MIM_OK;
  char what[48];
  snprintf(what, sizeof what, "%s: options", fn);
  mim_status st = mim_struct_copy_in(o, sizeof *o, in, MIM_SIZE_THROUGH(mim_send_options, reply_to),
                                     what, "MIM_SEND_OPTIONS_INIT");
  if (st == MIM_OK && o->id) /* it must fit id_out */
    st = check_text_arg(fn, "options->id", o->id, 1, MIM_MESSAGE_ID_SIZE - 1);
  if (st == MIM_OK && o->reply_to && *o->reply_to)
    st = check_text_arg(fn, "options->reply_to", o->reply_to, 1, MIM_ENVELOPE_MAX_ID_LEN);
  return st;
}

/* mim_send and mim_send_with_options, errors named after fn. */
static mim_status send_msg(const char *fn, mim_session *session, const char *text,
                           const mim_send_options *options, char id_out[MIM_MESSAGE_ID_SIZE]) {
  mim_clear_error();
  mim_status st = check_session(session, fn);
  mim_send_options o;
  if (st == MIM_OK)
    st = check_text_arg(fn, "text", text, 0, 0);
  if (st == MIM_OK)
    st = send_options_in(fn, options, &o);
  if (st != MIM_OK)
    return mim_arg_in(fn, st);
  mim_envelope e = {.type = MIM_ENV_MSG,
                    .id = (char *)o.id,
                    .text = (char *)text,
                    .ref = o.reply_to && *o.reply_to ? (char *)o.reply_to : NULL};
  return mim_arg_in(fn, send_envelope(session, &e, id_out));
}

MIM_API mim_status mim_send_with_options(mim_session *session, const char *text,
                                         const mim_send_options *options,
                                         char id_out[MIM_MESSAGE_ID_SIZE]) {
  return send_msg(__func__, session, text, options, id_out);
}

MIM_API mim_status mim_send(mim_session *session, const char *text,
                            char id_out[MIM_MESSAGE_ID_SIZE]) {
  return send_msg(__func__, session, text, NULL, id_out);
}

/* mim_edit / mim_delete: refused when the session knows the message and it is not ours
 * (its readers would ignore the event; docs/PROTOCOL.md 4.3). */
static mim_status check_author(mim_session *s, const char *fn, const char *message_id) {
  mim_message m;
  pthread_mutex_lock(&s->fold_mu);
  bool known = mim_fold_view(&s->fold, message_id, s->chat, &m);
  const char *me = s->mode == MIM_CHAT_MODERATED ? s->my_pub : s->user_id;
  bool other = known && *me && strcmp(m.sender_id, me) != 0;
  pthread_mutex_unlock(&s->fold_mu);
  if (other)
    return mim_fail(MIM_ERR_PERMISSION_DENIED, "%s: message %s was sent by another user", fn,
                    message_id);
  return MIM_OK;
}

/* The checks every event function makes before building its envelope. */
static mim_status check_event(mim_session *s, const char *fn, const char *message_id) {
  mim_status st = check_session(s, fn);
  if (st == MIM_OK)
    st = check_text_arg(fn, "message_id", message_id, 1, MIM_ENVELOPE_MAX_ID_LEN);
  return st;
}

MIM_API mim_status mim_edit(mim_session *session, const char *message_id, const char *new_text,
                            char event_id_out[MIM_MESSAGE_ID_SIZE]) {
  mim_clear_error();
  mim_status st = check_event(session, "mim_edit", message_id);
  if (st == MIM_OK)
    st = check_text_arg("mim_edit", "new_text", new_text, 0, 0);
  if (st == MIM_OK)
    st = check_author(session, "mim_edit", message_id);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_envelope e = {.type = MIM_ENV_EDIT, .ref = (char *)message_id, .text = (char *)new_text};
  return mim_arg_in(__func__, send_envelope(session, &e, event_id_out));
}

MIM_API mim_status mim_delete(mim_session *session, const char *message_id,
                              char event_id_out[MIM_MESSAGE_ID_SIZE]) {
  mim_clear_error();
  mim_status st = check_event(session, "mim_delete", message_id);
  if (st == MIM_OK)
    st = check_author(session, "mim_delete", message_id);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_envelope e = {.type = MIM_ENV_DELETE, .ref = (char *)message_id};
  return mim_arg_in(__func__, send_envelope(session, &e, event_id_out));
}

MIM_API mim_status mim_react(mim_session *session, const char *message_id, const char *key, bool on,
                             char event_id_out[MIM_MESSAGE_ID_SIZE]) {
  mim_clear_error();
  mim_status st = check_event(session, "mim_react", message_id);
  if (st == MIM_OK)
    st = check_text_arg("mim_react", "key", key, 1, MIM_ENVELOPE_MAX_KEY_LEN);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_envelope e = {.type = MIM_ENV_REACT, .ref = (char *)message_id, .key = (char *)key, .on = on};
  return mim_arg_in(__func__, send_envelope(session, &e, event_id_out));
}

/* Appends v to *found unless an equal value is there already. */
static mim_status add_distinct(mim_bytes **found, size_t *n, const mim_bytes *v) {
  for (size_t i = 0; i < *n; i++)
    if ((*found)[i].len == v->len && memcmp((*found)[i].data, v->data, v->len) == 0)
      return MIM_OK;
  mim_bytes *p = realloc(*found, (*n + 1) * sizeof *p);
  if (!p)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  p[(*n)++] = *v;
  *found = p;
  return MIM_OK;
}

MIM_API mim_status mim_remove_message(mim_session *session, const char *message_id) {
  mim_clear_error();
  mim_status st = check_session(session, "mim_remove_message");
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  st = mim_check_name("message_id", message_id);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_list_values *values = NULL;
  st = mim_list_fetch(session->client, session->cache, session->chat, NULL, &values);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  /* The list may hold the message under more than one byte form (e.g. re-encoded by
   * another writer): remove each distinct stored value carrying that id. */
  mim_bytes *found = NULL;
  size_t n = 0;
  for (size_t i = 0; i < values->count && st == MIM_OK; i++) {
    mim_envelope env;
    if (!mim_envelope_parse(values->values[i].data, values->values[i].len, &env, NULL))
      continue;
    if (strcmp(env.id, message_id) == 0)
      st = add_distinct(&found, &n, &values->values[i]);
    mim_envelope_clear(&env);
  }
  for (size_t i = 0; i < n && st == MIM_OK; i++)
    st = mim_list_remove_value(session->client, session->cache, session->chat, found[i].data,
                               found[i].len, NULL);
  free(found);
  mim_list_values_free(values);
  if (st == MIM_OK && n == 0)
    return mim_fail(MIM_ERR_NOT_FOUND, "no message with that id in the history");
  return mim_arg_in(__func__, st);
}

/* ---- typing and presence ---- */

MIM_API mim_status mim_set_typing(mim_session *session, bool typing) {
  mim_clear_error();
  mim_status st = check_session(session, "mim_set_typing");
  if (st == MIM_OK)
    st = mim_presence_set_typing(session->presence, typing);
  return mim_arg_in(__func__, st);
}

MIM_API mim_status mim_members(mim_session *session, mim_member_list **out) {
  mim_clear_error();
  mim_status st = check_session(session, "mim_members");
  if (st == MIM_OK && !out)
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_members: NULL out");
  if (st == MIM_OK)
    st = mim_presence_members(session->presence, out);
  return mim_arg_in(__func__, st);
}

/* ---- read markers (read.c) ---- */

void mim_session_read_target(mim_session *s, mim_read_target *out) {
  *out = (mim_read_target){
      .client = s->client, .cache = s->cache, .ttl_ms = s->ttl_ms, .read = s->read};
}
