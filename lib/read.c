/*
 * Read markers (docs/PROTOCOL.md section 6): mim_mark_read writes the session user's
 * field of "<chat>-read", mim_read_markers fetches every field, and mim_unread_count
 * counts locally over the session's record of delivered messages once it knows the
 * user's own marker (fetched on first use).
 */
#include "read.h"

#include "chat_defaults.h"
#include "client_internal.h"
#include "clock.h"
#include "envelope.h"
#include "error.h"

#include <jansson.h>
#include <momento/dictionary.h>
#include <pthread.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/* Message ids and `ref`s are at most 64 bytes (PROTOCOL section 3). */
#define ID_MAX 64

typedef struct read_entry {
  char id[ID_MAX + 1];
  bool counts; /* from another user and not deleted */
} read_entry;

struct mim_read {
  pthread_mutex_t mu;
  char *dict;    /* "<chat>-read" */
  char *user_id; /* the field this session's user writes */
  /* Delivered messages, a ring: the oldest at (head + CAP - n) % CAP. */
  read_entry ring[MIM_READ_RECORD_CAP];
  size_t head, n;
  bool marker_known; /* fetched, or set by mim_mark_read */
  bool has_marker;
  char marker[ID_MAX + 1];
};

/* ---- the record ---- */

mim_read *mim_read_new(const char *chat_id, const char *user_id) {
  mim_read *r = calloc(1, sizeof *r);
  if (!r) {
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&r->mu, NULL);
  r->dict = mim_chat_read_dictionary(chat_id);
  r->user_id = strdup(user_id);
  if (!r->dict || !r->user_id) {
    mim_read_free(r);
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    return NULL;
  }
  return r;
}

void mim_read_free(mim_read *r) {
  if (!r)
    return;
  pthread_mutex_destroy(&r->mu);
  free(r->dict);
  free(r->user_id);
  free(r);
}

static const char *sender_of(const mim_message *m) {
  /* Version 1 envelopes carry no user id: their sender is `from`. */
  return m->sender_id && *m->sender_id ? m->sender_id : (m->from ? m->from : "");
}

void mim_read_note(mim_read *r, const mim_message *m) {
  size_t len = m->id ? strlen(m->id) : 0;
  if (!r || m->kind != MIM_MESSAGE_CHAT || len == 0 || len > ID_MAX)
    return;
  pthread_mutex_lock(&r->mu);
  read_entry *e = &r->ring[r->head];
  memcpy(e->id, m->id, len + 1);
  e->counts = !m->mine && !m->deleted && strcmp(sender_of(m), r->user_id) != 0;
  r->head = (r->head + 1) % MIM_READ_RECORD_CAP;
  if (r->n < MIM_READ_RECORD_CAP)
    r->n++;
  pthread_mutex_unlock(&r->mu);
}

/* The i-th newest entry (0 = the newest). */
static read_entry *newest(mim_read *r, size_t i) {
  return &r->ring[(r->head + MIM_READ_RECORD_CAP - 1 - i) % MIM_READ_RECORD_CAP];
}

void mim_read_forget(mim_read *r, const char *id) {
  if (!r || !id)
    return;
  pthread_mutex_lock(&r->mu);
  for (size_t i = 0; i < r->n; i++) {
    read_entry *e = newest(r, i);
    if (strcmp(e->id, id) == 0)
      e->counts = false;
  }
  pthread_mutex_unlock(&r->mu);
}

/* Counts the entries newer than the marker's message (all of them, inexact, when it is
 * not in the record). Caller holds mu; the marker is known. */
static void count_locked(mim_read *r, size_t *count, bool *exact) {
  size_t c = 0;
  bool found = false;
  for (size_t i = 0; i < r->n && !found; i++) {
    read_entry *e = newest(r, i);
    found = r->has_marker && strcmp(e->id, r->marker) == 0;
    c += !found && e->counts;
  }
  *count = c;
  *exact = found;
}

bool mim_read_count(mim_read *r, size_t *count, bool *exact) {
  pthread_mutex_lock(&r->mu);
  bool known = r->marker_known;
  if (known)
    count_locked(r, count, exact);
  pthread_mutex_unlock(&r->mu);
  return known;
}

void mim_read_set_marker(mim_read *r, const char *id, bool fetched) {
  size_t len = id ? strlen(id) : 0;
  if (len > ID_MAX)
    return; /* callers pass checked ids */
  pthread_mutex_lock(&r->mu);
  if (!fetched || !r->marker_known) {
    r->marker_known = true;
    r->has_marker = id != NULL;
    memcpy(r->marker, id ? id : "", len + 1);
  }
  pthread_mutex_unlock(&r->mu);
}

/* ---- marker values ---- */

/* The message id and time of a marker value, false when it is not one (section 6: an
 * object with "v" >= 1, "id" a string of 1..64 bytes, "ts" an integer). */
static bool parse_marker(const uint8_t *data, size_t len, char id[ID_MAX + 1], int64_t *ts) {
  json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, NULL);
  json_t *v = json_object_get(root, "v");
  json_t *i = json_object_get(root, "id");
  json_t *t = json_object_get(root, "ts");
  bool ok = json_is_object(root) && json_is_integer(v) && json_integer_value(v) >= 1 &&
            json_is_string(i) && json_string_length(i) >= 1 && json_string_length(i) <= ID_MAX &&
            strlen(json_string_value(i)) == json_string_length(i) && json_is_integer(t);
  if (ok) {
    memcpy(id, json_string_value(i), json_string_length(i) + 1);
    *ts = (int64_t)json_integer_value(t);
  }
  json_decref(root);
  return ok;
}

/* The marker value for message_id now, malloc'd, or NULL (detail set). */
static char *marker_value(const char *message_id) {
  json_t *obj =
      json_pack("{s:i,s:s,s:I}", "v", 1, "id", message_id, "ts", (json_int_t)cmn_wall_ms());
  char *json = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
  json_decref(obj);
  if (!json)
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory building a read marker");
  return json;
}

/* ---- public calls ---- */

static mim_status check_call(mim_session *s, bool blocking, mim_read_target *t) {
  mim_clear_error();
  /* The statuses are spelled out: the analyzer cannot see what mim_fail returns. */
  if (!s) {
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "session is NULL");
    return MIM_ERR_INVALID_ARGUMENT;
  }
  mim_session_read_target(s, t);
  if (!t->read || !t->client) {
    mim_fail(MIM_ERR_INTERNAL, "the session has no read-marker record");
    return MIM_ERR_INTERNAL;
  }
  if (blocking && mim_client_in_callback(t->client))
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "a blocking call cannot run in a client callback: it would deadlock");
  return MIM_OK;
}

static mim_status check_message_id(const char *id) {
  if (!id)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "message_id is NULL");
  size_t len = strlen(id);
  if (len == 0 || len > ID_MAX)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "message_id is %zu bytes (1..%d)", len, ID_MAX);
  if (!mim_utf8_text_valid((const uint8_t *)id, len))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "message_id is not valid UTF-8");
  return MIM_OK;
}

static mim_status mark_read(mim_session *session, const char *message_id) {
  mim_read_target t = {0};
  mim_status st = check_call(session, true, &t);
  if (st == MIM_OK)
    st = check_message_id(message_id);
  if (st != MIM_OK)
    return st;
  char *value = marker_value(message_id);
  if (!value)
    return MIM_ERR_NO_MEMORY;
  mim_dictionary_write_options o = {
      .struct_size = sizeof o, .ttl_ms = t.ttl_ms, .refresh_ttl = true};
  mim_read *r = t.read;
  st = mim_dictionary_set_field(t.client, t.cache, r->dict, r->user_id, strlen(r->user_id), value,
                                strlen(value), &o);
  free(value);
  if (st == MIM_OK)
    mim_read_set_marker(r, message_id, false);
  return st;
}

MIM_API mim_status mim_mark_read(mim_session *session, const char *message_id) {
  return mim_arg_in(__func__, mark_read(session, message_id));
}

/* Fetches the user's own marker once (one DictionaryGet). A marker set by mim_mark_read
 * meanwhile wins: it is newer. */
static mim_status fetch_own_marker(const mim_read_target *t) {
  mim_read *r = t->read;
  uint8_t *value = NULL;
  size_t len = 0;
  bool found = false;
  mim_status st = mim_dictionary_get_field(t->client, t->cache, r->dict, r->user_id,
                                           strlen(r->user_id), &value, &len, &found);
  if (st != MIM_OK)
    return st;
  char id[ID_MAX + 1];
  int64_t ts;
  bool valid = found && parse_marker(value, len, id, &ts);
  free(value);
  mim_read_set_marker(r, valid ? id : NULL, true);
  return MIM_OK;
}

static mim_status unread_count(mim_session *session, size_t *count, bool *exact) {
  mim_read_target t = {0};
  mim_status st = check_call(session, false, &t);
  if (st != MIM_OK)
    return st;
  if (!count)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "count is NULL");
  bool ex = false;
  if (mim_read_count(t.read, count, &ex)) {
    if (exact)
      *exact = ex;
    return MIM_OK;
  }
  if (mim_client_in_callback(t.client))
    return mim_fail(MIM_ERR_FAILED_PRECONDITION,
                    "the first count fetches the read marker, a blocking call that cannot run "
                    "in a client callback");
  st = fetch_own_marker(&t);
  if (st == MIM_OK && !mim_read_count(t.read, count, &ex))
    st = mim_fail(MIM_ERR_INTERNAL, "the read marker is still unknown after fetching it");
  if (st == MIM_OK && exact)
    *exact = ex;
  return st;
}

MIM_API mim_status mim_unread_count(mim_session *session, size_t *count, bool *exact) {
  if (count)
    *count = 0;
  if (exact)
    *exact = false;
  return mim_arg_in(__func__, unread_count(session, count, exact));
}

/* ---- read receipts ---- */

static size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

/* A usable field (a user id: UTF-8 without NUL) holding a marker. */
static bool usable(const mim_dictionary_entry *e, char id[ID_MAX + 1], int64_t *ts) {
  return e->field.len > 0 && mim_utf8_text_valid(e->field.data, e->field.len) &&
         parse_marker(e->value.data, e->value.len, id, ts);
}

/* One block: the list, the markers, then their strings, so one free() releases it. The
 * entries are parsed twice (size, then fill) rather than held in between. */
static mim_status make_markers(const mim_dictionary_entries *de, mim_read_marker_list **out) {
  size_t head = align_up(sizeof(mim_read_marker_list), alignof(mim_read_marker));
  size_t n = 0, strings = 0;
  char id[ID_MAX + 1];
  int64_t ts;
  for (size_t i = 0; i < de->count; i++) {
    if (usable(&de->entries[i], id, &ts)) {
      n++;
      strings += de->entries[i].field.len + strlen(id) + 2;
    }
  }
  unsigned char *blk = malloc(head + n * sizeof(mim_read_marker) + strings);
  if (!blk)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for %zu read markers", n);
  mim_read_marker_list *l = (mim_read_marker_list *)blk;
  l->count = 0;
  l->markers = n ? (mim_read_marker *)(blk + head) : NULL;
  char *p = (char *)blk + head + n * sizeof(mim_read_marker);
  for (size_t i = 0; i < de->count && l->count < n; i++) {
    const mim_dictionary_entry *e = &de->entries[i];
    if (!usable(e, id, &ts))
      continue;
    mim_read_marker *m = &l->markers[l->count++];
    memcpy(p, e->field.data, e->field.len + 1); /* entries are NUL-terminated */
    m->user_id = p;
    p += e->field.len + 1;
    memcpy(p, id, strlen(id) + 1);
    m->message_id = p;
    p += strlen(id) + 1;
    m->read_at_ms = ts;
  }
  *out = l;
  return MIM_OK;
}

static mim_status read_markers(mim_session *session, mim_read_marker_list **out) {
  mim_read_target t = {0};
  mim_status st = check_call(session, true, &t);
  if (st != MIM_OK)
    return st;
  if (!out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "out is NULL");
  mim_dictionary_entries *de = NULL;
  st = mim_dictionary_fetch(t.client, t.cache, t.read->dict, &de);
  if (st == MIM_OK)
    st = make_markers(de, out);
  mim_dictionary_entries_free(de);
  return st;
}

MIM_API mim_status mim_read_markers(mim_session *session, mim_read_marker_list **out) {
  if (out)
    *out = NULL;
  return mim_arg_in(__func__, read_markers(session, out));
}

MIM_API void mim_read_marker_list_free(mim_read_marker_list *list) {
  free(list);
}
