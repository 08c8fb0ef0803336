/* The IM session: join (subscribe, then fetch history), the history + live merge with no
 * gap and no duplicate, send, history, remove, leave, and gap-fill after reconnects.
 *
 * Threading. Everything that merges and delivers messages runs on the client's event
 * thread, which runs callbacks one at a time: subscription callbacks and list fetch
 * completions. So the merge state (fetch flags, pending buffer, delivered-id set) is
 * only ever touched from that thread and needs no lock. The mutex guards what the
 * caller's threads share with it: the count of fetches in flight (mim_leave waits for it
 * to drop to zero) and the join handshake.
 *
 * Merge. While a fetch of the list is outstanding (the join fetch, or a refetch after a
 * discontinuity) live items are buffered. When the fetch completes, list
 * values whose id was not delivered yet are delivered (oldest first), then the buffered
 * live items whose id was not delivered yet, then live items flow directly, each checked
 * against the delivered set. Because the subscription is confirmed before the fetch, and
 * senders push to the list before publishing, every message is either in the fetched list
 * or arrives live afterwards: nothing is missed, and the id set removes the overlap.
 *
 * Send. mim_send hands the envelope to the session's outbox (outbox.c), which sends one
 * message at a time and retries transient failures; a retry may store or publish a
 * message twice, which the id set above (and mim_history) hides from readers. */
#include "client_internal.h"
#include "clock.h"
#include "envelope.h"
#include "error.h"
#include "outbox.h"

#include <momento/im.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_HISTORY_CAP 100u
/* Extra ids remembered beyond the list size: live messages delivered since, plus slack
 * for senders whose push and publish interleave with other senders. */
#define DEDUP_WINDOW 4096u
/* Live items buffered while a fetch is outstanding; beyond this they are dropped and
 * recovered from the list by another fetch. */
#define MAX_PENDING 65536u
#define DEFAULT_OUTBOX_LIMIT 1024u
#define DEFAULT_FLUSH_TIMEOUT_MS 2000u
#define DEFAULT_SEND_TIMEOUT_MS 60000u

struct mim_session {
  mim_client *client;
  char *cache;
  char *chat;
  char *input_topic; /* "<chat>-input" */
  char *display_name;
  mim_chat_mode mode;
  uint32_t history_cap;
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
  int inflight;   /* list fetches whose completion has not finished */
  bool join_done; /* the join fetch completed (join_status says how) */
  mim_status join_status;
  char join_detail[256];

  /* Event-thread state (see the top of the file). Live items are buffered in pending
   * until joined, and while a fetch is outstanding. */
  bool confirmed;       /* the subscription was confirmed once (join fetch started) */
  bool joined;          /* history of the join was delivered */
  bool fetching;        /* a list fetch is outstanding */
  bool refetch_wanted;  /* another fetch is needed after the current one */
  bool blind_reconnect; /* the stream was lost before any value: fetch at CONNECTED */
  /* Discontinuities since the last fetch started (gap_*), and those the outstanding
   * fetch must cover (fetch_gap_*): how many values the topic skipped, whether a gap
   * of unknown size was reported, and the id of the last message delivered before the
   * first of them (the anchor; "" = none or too long to keep): when the refetched list
   * still holds the anchor, it holds everything pushed after it, so the gap is covered. */
  uint64_t gap_missed, fetch_gap_missed;
  bool gap_unknown, fetch_gap_unknown;
  char gap_anchor[MIM_MESSAGE_ID_SIZE], fetch_gap_anchor[MIM_MESSAGE_ID_SIZE];
  char last_id[MIM_MESSAGE_ID_SIZE]; /* last chat message delivered ("" = none) */
  uint64_t page;                     /* sequence page of the last live value */
  mim_status close_status;           /* the subscription closed before the join completed */
  mim_message *pending;              /* packed messages (see pack_message) */
  size_t npending, pending_cap;
  mim_idset delivered;
};

/* ---- messages ---- */

static const char *or_empty(const char *s) {
  return s ? s : "";
}

/* Points the text of a foreign message at its bytes when they are printable text. */
static const char *foreign_text(const uint8_t *raw, size_t len) {
  return raw && mim_utf8_text_valid(raw, len) ? (const char *)raw : "";
}

/* Fills *m from a parsed envelope (env NULL = foreign). Pointers borrow from env/raw. */
static void fill_message(mim_message *m, const mim_envelope *env, const char *chat,
                         const char *publisher_id, const uint8_t *raw, size_t raw_len,
                         uint64_t sequence, bool from_history) {
  memset(m, 0, sizeof *m);
  m->kind = env ? MIM_MESSAGE_CHAT : MIM_MESSAGE_FOREIGN;
  m->id = env ? env->id : "";
  m->chat = chat;
  m->from = env ? env->from : "";
  m->publisher_id = or_empty(publisher_id);
  m->text = env ? env->text : foreign_text(raw, raw_len);
  m->timestamp_ms = env ? env->ts : 0;
  m->sequence = sequence;
  m->from_history = from_history;
  m->raw = raw ? raw : (const uint8_t *)"";
  m->raw_len = raw ? raw_len : 0;
}

static char *put_str(char **cursor, const char *s) {
  size_t n = strlen(s) + 1;
  char *at = *cursor;
  memcpy(at, s, n);
  *cursor += n;
  return at;
}

/* Copies *m into one malloc'd block that starts with the raw bytes, so freeing
 * (void *)m->raw frees the whole message. false when out of memory. */
static bool pack_message(mim_message *m) {
  size_t need = m->raw_len + 1 + strlen(m->id) + strlen(m->chat) + strlen(m->from) +
                strlen(m->publisher_id) + 5;
  bool text_is_raw = m->text == (const char *)m->raw;
  if (!text_is_raw)
    need += strlen(m->text) + 1;
  char *block = malloc(need);
  if (!block)
    return false;
  memcpy(block, m->raw, m->raw_len);
  block[m->raw_len] = '\0';
  char *cur = block + m->raw_len + 1;
  m->id = put_str(&cur, m->id);
  m->chat = put_str(&cur, m->chat);
  m->from = put_str(&cur, m->from);
  m->publisher_id = put_str(&cur, m->publisher_id);
  m->text = text_is_raw ? block : put_str(&cur, m->text);
  m->raw = (const uint8_t *)block;
  return true;
}

static void free_packed(mim_message *m) {
  free((void *)m->raw);
}

MIM_API void mim_message_list_free(mim_message_list *list) {
  if (!list)
    return;
  for (size_t i = 0; i < list->count; i++)
    free_packed(&list->messages[i]);
  free(list->messages);
  free(list);
}

/* Parses one value; logs why it is foreign. true with *env filled for an envelope. */
static bool parse_value(const char *chat, const uint8_t *data, size_t len, mim_envelope *env) {
  const char *reason = NULL;
  if (mim_envelope_parse(data, len, env, &reason))
    return true;
  mim_log(MIM_LOG_DEBUG, "chat %s: foreign value of %zu bytes: %s", chat, len, reason);
  return false;
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
  s->on_message(s, m, s->user);
}

/* Delivers a chat message unless its id was delivered already. */
static void deliver_once(mim_session *s, const mim_message *m) {
  if (m->kind == MIM_MESSAGE_CHAT) {
    bool added = false;
    if (mim_idset_add(&s->delivered, m->id, &added) != MIM_OK) {
      /* Delivered anyway: a possible duplicate beats a lost message. */
      mim_log(MIM_LOG_WARN, "chat %s: out of memory remembering a message id", s->chat);
    } else if (!added) {
      mim_log(MIM_LOG_DEBUG, "chat %s: duplicate of %s (%s) skipped", s->chat, m->id,
              m->from_history ? "history" : "live");
      return;
    }
    size_t n = strlen(m->id);
    if (n < sizeof s->last_id)
      memcpy(s->last_id, m->id, n + 1);
    else
      s->last_id[0] = '\0'; /* not an id we could look for later */
  }
  deliver(s, m);
}

/* After a fetch that followed a discontinuity: tells the user when messages of the gap
 * were probably lost. With an anchor (see struct mim_session): when the list no longer
 * holds it (truncated away, or the server lost the list: a restart without persistence).
 * Without one: when the topic skipped more values than the list keeps, or the list is
 * full and none of it had been delivered (the start of the gap was truncated away). */
static void report_lost_gap(mim_session *s, bool list_full_of_unknown, bool anchor_found) {
  bool gap = s->fetch_gap_missed > 0 || s->fetch_gap_unknown;
  if (!s->joined || !gap)
    return;
  bool lost = s->fetch_gap_anchor[0] ? !anchor_found
                                     : s->fetch_gap_missed > s->history_cap || list_full_of_unknown;
  if (!lost)
    return;
  char detail[200];
  if (s->fetch_gap_anchor[0] && s->fetch_gap_missed <= s->history_cap)
    snprintf(detail, sizeof detail,
             "the history no longer holds the last message delivered before the gap: "
             "messages may have been lost");
  else
    snprintf(detail, sizeof detail,
             "gap of %llu values%s larger than the history cap %u: some messages were lost",
             (unsigned long long)s->fetch_gap_missed, s->fetch_gap_unknown ? " (or more)" : "",
             (unsigned)s->history_cap);
  emit_event(s, MIM_SUB_CONNECTED, MIM_ERR_RESOURCE_EXHAUSTED, detail);
}

/* Delivers the list values not delivered yet, oldest first. Foreign values in the list
 * are delivered on the first (join) fetch only: they have no id to de-duplicate by. */
static void deliver_history(mim_session *s, const mim_list_values *values) {
  size_t cap = s->history_cap > values->count ? s->history_cap : values->count;
  mim_idset_reserve(&s->delivered, cap + DEDUP_WINDOW);
  bool any_known = false, anchor_found = false;
  size_t known_before = s->delivered.count;
  for (size_t i = 0; i < values->count; i++) {
    const mim_bytes *v = &values->values[i];
    mim_envelope env;
    mim_message m;
    if (parse_value(s->chat, v->data, v->len, &env)) {
      any_known = any_known || mim_idset_contains(&s->delivered, env.id);
      anchor_found =
          anchor_found || (s->fetch_gap_anchor[0] && !strcmp(env.id, s->fetch_gap_anchor));
      fill_message(&m, &env, s->chat, "", v->data, v->len, 0, true);
      deliver_once(s, &m);
      mim_envelope_clear(&env);
    } else if (!s->joined) {
      fill_message(&m, NULL, s->chat, "", v->data, v->len, 0, true);
      deliver(s, &m);
    }
  }
  report_lost_gap(s, known_before > 0 && !any_known && values->count >= s->history_cap,
                  anchor_found);
}

static void drain_pending(mim_session *s) {
  for (size_t i = 0; i < s->npending; i++) {
    deliver_once(s, &s->pending[i]);
    free_packed(&s->pending[i]);
  }
  s->npending = 0;
}

static void buffer_item(mim_session *s, const mim_message *m) {
  if (s->npending >= MAX_PENDING) {
    /* Recover it from the list with one more fetch instead of growing without bound. */
    s->refetch_wanted = true;
    mim_log(MIM_LOG_WARN, "chat %s: live buffer full; refetching", s->chat);
    return;
  }
  if (s->npending == s->pending_cap) {
    size_t n = s->pending_cap ? s->pending_cap * 2 : 64;
    mim_message *p = realloc(s->pending, n * sizeof *p);
    if (!p) {
      s->refetch_wanted = true;
      return;
    }
    s->pending = p;
    s->pending_cap = n;
  }
  mim_message copy = *m;
  if (!pack_message(&copy)) {
    s->refetch_wanted = true;
    return;
  }
  s->pending[s->npending++] = copy;
}

/* ---- fetches (join and gap-fill) ---- */

static void start_fetch(mim_session *s);

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
  bool joining = !s->joined;
  if (joining && status == MIM_OK && s->close_status != MIM_OK) {
    status = s->close_status;
    detail = "the subscription closed while joining";
  }
  if (status == MIM_OK) {
    deliver_history(s, values);
  } else if (!joining) {
    mim_log(MIM_LOG_WARN, "chat %s: history refetch failed: %s", s->chat, mim_status_name(status));
    emit_event(s, MIM_SUB_CONNECTED, status, detail);
  }
  if (status == MIM_OK || !joining) {
    s->joined = true;
    drain_pending(s);
  }
  s->fetching = false;
  if (s->joined && s->refetch_wanted && !atomic_load(&s->closing)) {
    s->refetch_wanted = false;
    start_fetch(s);
  }
  pthread_mutex_lock(&s->mu);
  if (joining)
    join_finished_locked(s, status, detail);
  s->inflight--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu); /* last touch: mim_leave/mim_join may free s now */
}

/* Starts a fetch of the whole list (event thread); live items are buffered until it
 * completes. One at a time: a trigger during a fetch asks for another one after it. */
static void start_fetch(mim_session *s) {
  if (s->fetching) {
    s->refetch_wanted = true;
    return;
  }
  s->fetching = true;
  s->fetch_gap_missed = s->gap_missed;
  s->fetch_gap_unknown = s->gap_unknown;
  memcpy(s->fetch_gap_anchor, s->gap_anchor, sizeof s->gap_anchor);
  s->gap_missed = 0;
  s->gap_unknown = false;
  s->gap_anchor[0] = '\0';
  pthread_mutex_lock(&s->mu);
  s->inflight++;
  pthread_mutex_unlock(&s->mu);
  mim_status st = mim_list_fetch_async(s->client, s->cache, s->chat, NULL, on_fetch, s);
  if (st == MIM_OK)
    return;
  /* No completion will run: undo, and deliver what was buffered. */
  const char *detail = mim_last_error_detail();
  s->fetching = false;
  if (s->joined) {
    emit_event(s, MIM_SUB_CONNECTED, st, detail);
    drain_pending(s);
  }
  pthread_mutex_lock(&s->mu);
  if (!s->joined)
    join_finished_locked(s, st, detail);
  s->inflight--;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

/* ---- subscription callbacks (event thread) ---- */

static void on_item(void *user, const mim_topic_item *item) {
  mim_session *s = user;
  if (atomic_load(&s->closing))
    return;
  mim_envelope env;
  bool ok = parse_value(s->chat, item->data, item->len, &env);
  mim_message m;
  fill_message(&m, ok ? &env : NULL, s->chat, item->publisher_id, item->data, item->len,
               item->sequence, false);
  s->page = item->sequence_page;
  if (!s->joined || s->fetching)
    buffer_item(s, &m);
  else
    deliver_once(s, &m);
  if (ok)
    mim_envelope_clear(&env);
}

static void on_discontinuity(void *user, uint64_t last, uint64_t next, uint64_t page) {
  mim_session *s = user;
  mim_log(MIM_LOG_INFO, "chat %s: discontinuity %llu -> %llu (page %llu); refetching history",
          s->chat, (unsigned long long)last, (unsigned long long)next, (unsigned long long)page);
  /* The anchor of the gaps the next fetch covers: the last message delivered before the
   * first of them. */
  if (s->gap_missed == 0 && !s->gap_unknown)
    memcpy(s->gap_anchor, s->last_id, sizeof s->last_id);
  /* Same page and a known position: the values in between are the gap. Otherwise
   * (first stream lost blind, topic reset: numbers of another page) its size is
   * unknown. */
  if (last > 0 && next > last && (s->page == 0 || page == s->page))
    s->gap_missed += next - last - 1;
  else
    s->gap_unknown = true;
  s->page = page;
  if (!atomic_load(&s->closing))
    start_fetch(s);
}

static void on_state(void *user, mim_subscription_state state, mim_status status,
                     const char *detail) {
  mim_session *s = user;
  emit_event(s, state, status, detail);
  if (atomic_load(&s->closing))
    return;
  /* A reconnect fetches only when the stream was lost before any value or discontinuity
   * (page still 0): it then resumes live only and nothing replays the gap. Otherwise the
   * resumed stream replays what was missed, in order, or reports a discontinuity, which
   * fetches; fetching here too would deliver the list's newest messages before the
   * older ones the replay is still bringing. */
  if (state == MIM_SUB_CONNECTED && !s->confirmed) {
    /* Confirmed: from now on nothing published is missed, so fetch the history. */
    s->confirmed = true;
    start_fetch(s);
  } else if (state == MIM_SUB_CONNECTED && s->blind_reconnect) {
    s->blind_reconnect = false;
    start_fetch(s);
  } else if (state == MIM_SUB_RECONNECTING) {
    s->blind_reconnect = s->page == 0;
  } else if (state == MIM_SUB_CLOSED && !s->joined) {
    s->close_status = status != MIM_OK ? status : MIM_ERR_UNAVAILABLE;
    if (!s->fetching) {
      pthread_mutex_lock(&s->mu);
      join_finished_locked(s, s->close_status, detail);
      pthread_mutex_unlock(&s->mu);
    }
  }
}

/* ---- lifetime ---- */

MIM_API void mim_join_options_init(mim_join_options *options) {
  if (options)
    memset(options, 0, sizeof *options);
}

static void session_free(mim_session *s) {
  mim_outbox_close(s->outbox, 0);
  for (size_t i = 0; i < s->npending; i++)
    free_packed(&s->pending[i]);
  free(s->pending);
  mim_idset_free(&s->delivered);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
  free(s->cache);
  free(s->chat);
  free(s->input_topic);
  free(s->display_name);
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
      .write_options = {.ttl_ms = s->ttl_ms, .refresh_ttl = true, .truncate_to = s->history_cap},
      .limit = o && o->outbox_limit ? o->outbox_limit : DEFAULT_OUTBOX_LIMIT,
      .send_timeout_ms = o && o->send_timeout_ms ? o->send_timeout_ms : DEFAULT_SEND_TIMEOUT_MS,
      .on_result = on_outbox_result,
      .owner = s};
  return mim_outbox_new(&cfg, &s->outbox);
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
  s->client = client;
  s->on_message = on_message;
  s->user = user;
  s->mode = o ? o->mode : MIM_CHAT_CLIENT_ONLY;
  s->history_cap = o && o->history_cap ? o->history_cap : DEFAULT_HISTORY_CAP;
  s->ttl_ms = o ? o->history_ttl_ms : 0;
  s->on_event = o ? o->on_event : NULL;
  size_t n = strlen(chat_id);
  s->cache = strdup(cache);
  s->chat = strdup(chat_id);
  s->display_name = strdup(o && o->display_name ? o->display_name : "anonymous");
  s->input_topic = malloc(n + sizeof "-input");
  if (s->input_topic)
    snprintf(s->input_topic, n + sizeof "-input", "%s-input", chat_id);
  s->on_send_result = o ? o->on_send_result : NULL;
  s->flush_timeout_ms = o && o->flush_timeout_ms ? o->flush_timeout_ms : DEFAULT_FLUSH_TIMEOUT_MS;
  if (!s->cache || !s->chat || !s->display_name || !s->input_topic ||
      mim_idset_init(&s->delivered, s->history_cap + DEDUP_WINDOW) != MIM_OK ||
      session_outbox(s, o) != MIM_OK) {
    session_free(s);
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  return s;
}

/* Stops all callbacks: no delivery after this returns. */
static void session_quiesce(mim_session *s) {
  atomic_store(&s->closing, true);
  mim_topic_unsubscribe(s->sub);
  s->sub = NULL;
  pthread_mutex_lock(&s->mu);
  while (s->inflight > 0)
    pthread_cond_wait(&s->cv, &s->mu);
  pthread_mutex_unlock(&s->mu);
}

static mim_status check_join_args(mim_client *client, const char *cache, const char *chat_id,
                                  const mim_join_options *o, mim_on_message on_message,
                                  mim_session **out) {
  if (!client || !cache || !*cache || !chat_id || !*chat_id || !on_message || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_join: NULL or empty argument");
  if (o && o->mode != MIM_CHAT_CLIENT_ONLY && o->mode != MIM_CHAT_MODERATED)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_join: unknown chat mode %d", (int)o->mode);
  if (o && o->display_name &&
      !mim_utf8_text_valid((const uint8_t *)o->display_name, strlen(o->display_name)))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_join: display name is not valid UTF-8");
  return MIM_OK;
}

/* Waits for the join to finish. The subscribe and the fetch each have the client's
 * deadline; the bound here only guards against a lower layer that never answers. */
static mim_status wait_join(mim_session *s, char *detail, size_t detail_size) {
  struct timespec until = cmn_deadline_after_ms(3 * mim_client_deadline_ms(s->client) + 5000);
  pthread_mutex_lock(&s->mu);
  while (!s->join_done) {
    if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0 && !s->join_done) {
      join_finished_locked(s, MIM_ERR_DEADLINE_EXCEEDED, "join did not complete in time");
      break;
    }
  }
  mim_status st = s->join_status;
  snprintf(detail, detail_size, "%s", s->join_detail);
  pthread_mutex_unlock(&s->mu);
  return st;
}

MIM_API mim_status mim_join(mim_client *client, const char *cache, const char *chat_id,
                            const mim_join_options *options, mim_on_message on_message, void *user,
                            mim_session **out) {
  mim_clear_error();
  mim_status st = check_join_args(client, cache, chat_id, options, on_message, out);
  if (st != MIM_OK)
    return st;
  mim_session *s = session_new(client, cache, chat_id, options, on_message, user);
  if (!s)
    return MIM_ERR_NO_MEMORY;
  /* Live items are buffered until the history is delivered. The join fetch starts on
   * the event thread when the subscription is confirmed (on_state CONNECTED), so every
   * piece of merge state stays on that thread. */
  mim_subscription_callbacks cbs = {
      .on_item = on_item, .on_discontinuity = on_discontinuity, .on_state = on_state, .user = s};
  st = mim_topic_subscribe_async(client, cache, chat_id, NULL, &cbs, &s->sub);
  if (st != MIM_OK) {
    session_free(s);
    return st; /* detail set by subscribe */
  }
  char detail[sizeof s->join_detail];
  st = wait_join(s, detail, sizeof detail);
  if (st != MIM_OK) {
    session_quiesce(s);
    session_free(s);
    return mim_fail_with_detail(st, detail);
  }
  *out = s;
  return MIM_OK;
}

MIM_API void mim_leave(mim_session *session) {
  if (!session)
    return;
  /* Flush first (the subscription does not matter for it), reporting what is left. */
  mim_outbox_close(session->outbox, session->flush_timeout_ms);
  session->outbox = NULL;
  session_quiesce(session);
  session_free(session);
}

/* ---- history, send, remove ---- */

static mim_status check_session(const mim_session *s, const char *what) {
  if (!s)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s: NULL session", what);
  return MIM_OK;
}

/* Turns fetched list values into an owned message list (oldest first). */
static mim_status values_to_list(const mim_session *s, const mim_list_values *values,
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
  if (mim_idset_init(&seen, values->count + 1) != MIM_OK) {
    mim_message_list_free(list);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  }
  mim_status st = MIM_OK;
  for (size_t i = 0; i < values->count && st == MIM_OK; i++) {
    const mim_bytes *v = &values->values[i];
    mim_envelope env;
    bool ok = parse_value(s->chat, v->data, v->len, &env);
    if (ok && mim_idset_contains(&seen, env.id)) {
      mim_envelope_clear(&env);
      continue;
    }
    if (ok)
      st = mim_idset_add(&seen, env.id, NULL);
    mim_message *m = &list->messages[list->count];
    fill_message(m, ok ? &env : NULL, s->chat, "", v->data, v->len, 0, true);
    bool packed = pack_message(m);
    if (ok)
      mim_envelope_clear(&env);
    if (!packed)
      st = MIM_ERR_NO_MEMORY;
    else
      list->count++;
  }
  mim_idset_free(&seen);
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
    return st;
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
    return st;
  st = values_to_list(session, values, out);
  mim_list_values_free(values);
  return st;
}

/* Builds the envelope of a new message from us. */
static mim_status new_envelope(const mim_session *s, const char *text,
                               char id[MIM_ENVELOPE_ID_SIZE], char **json, size_t *len) {
  if (!mim_utf8_text_valid((const uint8_t *)text, strlen(text)))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_send: text is not valid UTF-8");
  mim_status st = mim_envelope_new_id(id);
  if (st != MIM_OK)
    return st;
  return mim_envelope_build(id, s->display_name, text, cmn_wall_ms(), json, len);
}

MIM_API mim_status mim_send(mim_session *session, const char *text,
                            char id_out[MIM_MESSAGE_ID_SIZE]) {
  mim_clear_error();
  mim_status st = check_session(session, "mim_send");
  if (st != MIM_OK)
    return st;
  if (!text)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_send: NULL text");
  char id[MIM_ENVELOPE_ID_SIZE];
  char *json = NULL;
  size_t len = 0;
  st = new_envelope(session, text, id, &json, &len);
  if (st != MIM_OK)
    return st;
  /* On the event thread (a callback) waiting for the attempt would deadlock. */
  bool wait = !mim_transport_on_event_thread(mim_client_transport(session->client));
  st = mim_outbox_send(session->outbox, id, json, len, wait);
  if (st == MIM_OK && id_out)
    memcpy(id_out, id, MIM_ENVELOPE_ID_SIZE);
  return st;
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
    return st;
  if (!message_id || !*message_id)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_remove_message: NULL or empty id");
  mim_list_values *values = NULL;
  st = mim_list_fetch(session->client, session->cache, session->chat, NULL, &values);
  if (st != MIM_OK)
    return st;
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
  return st;
}
