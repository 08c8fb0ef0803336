/* The presence table: see roster.h. Linear scans: the table is bounded and signals are
 * rate-limited (a few per member per minute), so a hash would buy nothing. */
#include "roster.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

/* Bounds of the per-session typing lapse (PROTOCOL: 6 s after the last "on"). */
#define TYPING_LAPSE_MS MIM_TYPING_EXPIRY_MS

typedef struct roster_sid {
  char sid[MIM_SIGNAL_MAX_SID + 1];
  int64_t heard_ms;     /* when last heard (monotonic) */
  int64_t expires_ms;   /* gone unless heard again before this */
  int64_t ttl_ms;       /* its last announced ttl */
  int64_t typing_until; /* 0 = not typing */
} roster_sid;

struct mim_roster_member {
  char *user_id;
  char *name;
  bool trusted;
  bool typing; /* as last reported */
  int64_t last_seen_wall;
  size_t n_sids;
  roster_sid sids[MIM_ROSTER_MAX_SIDS];
};

void mim_roster_init(mim_roster *r, bool moderated, mim_roster_emit emit, void *user) {
  memset(r, 0, sizeof *r);
  r->moderated = moderated;
  r->emit = emit;
  r->user = user;
}

static void member_clear(mim_roster_member *m) {
  free(m->user_id);
  free(m->name);
}

void mim_roster_free(mim_roster *r) {
  for (size_t i = 0; i < r->count; i++)
    member_clear(&r->members[i]);
  free(r->members);
  memset(r, 0, sizeof *r);
}

static void emit(mim_roster *r, mim_presence_change change, const mim_roster_member *m) {
  mim_member view = {.user_id = m->user_id,
                     .display_name = m->name,
                     .trusted = m->trusted,
                     .typing = m->typing,
                     .last_seen_ms = m->last_seen_wall};
  if (r->emit)
    r->emit(r->user, change, &view);
}

/* The sender of sig (PROTOCOL 3.2). */
static const char *sender_of(const mim_roster *r, const mim_signal *sig, bool *trusted) {
  *trusted = r->moderated && *sig->pub;
  if (*trusted)
    return sig->pub;
  return *sig->uid ? sig->uid : sig->from;
}

static mim_roster_member *find_member(mim_roster *r, const char *id, bool trusted) {
  for (size_t i = 0; i < r->count; i++)
    if (r->members[i].trusted == trusted && strcmp(r->members[i].user_id, id) == 0)
      return &r->members[i];
  return NULL;
}

static mim_roster_member *add_member(mim_roster *r, const char *id, bool trusted) {
  if (r->count == MIM_ROSTER_MAX_MEMBERS)
    return NULL;
  if (r->count == r->capacity) {
    size_t cap = r->capacity ? 2 * r->capacity : 8;
    mim_roster_member *p = realloc(r->members, cap * sizeof *p);
    if (!p)
      return NULL;
    r->members = p;
    r->capacity = cap;
  }
  mim_roster_member *m = &r->members[r->count];
  memset(m, 0, sizeof *m);
  m->user_id = strdup(id);
  m->trusted = trusted;
  if (!m->user_id)
    return NULL;
  r->count++;
  return m;
}

static roster_sid *find_sid(mim_roster_member *m, const char *sid) {
  for (size_t i = 0; i < m->n_sids; i++)
    if (strcmp(m->sids[i].sid, sid) == 0)
      return &m->sids[i];
  return NULL;
}

/* A slot for a new session: a free one, else the one heard of least recently. */
static roster_sid *add_sid(mim_roster_member *m, const char *sid) {
  roster_sid *s = &m->sids[0];
  if (m->n_sids < MIM_ROSTER_MAX_SIDS)
    s = &m->sids[m->n_sids++];
  else
    for (size_t i = 1; i < m->n_sids; i++)
      if (m->sids[i].heard_ms < s->heard_ms)
        s = &m->sids[i];
  memset(s, 0, sizeof *s);
  strncpy(s->sid, sid, MIM_SIGNAL_MAX_SID);
  return s;
}

static void remove_sid(mim_roster_member *m, roster_sid *s) {
  *s = m->sids[--m->n_sids];
}

static bool any_typing(const mim_roster_member *m) {
  for (size_t i = 0; i < m->n_sids; i++)
    if (m->sids[i].typing_until)
      return true;
  return false;
}

/* Reports a change of the member's typing state, if any. */
static void sync_typing(mim_roster *r, mim_roster_member *m) {
  bool now = any_typing(m);
  if (now == m->typing)
    return;
  m->typing = now;
  emit(r, now ? MIM_PRESENCE_TYPING : MIM_PRESENCE_STOPPED_TYPING, m);
}

/* Drops member i once it has no session left, reporting it. */
static bool drop_if_gone(mim_roster *r, size_t i) {
  mim_roster_member *m = &r->members[i];
  if (m->n_sids)
    return false;
  emit(r, MIM_PRESENCE_LEFT, m);
  member_clear(m);
  memmove(m, m + 1, (r->count - i - 1) * sizeof *m);
  r->count--;
  return true;
}

/* The session's state after sig. */
static void apply_to_sid(const mim_signal *sig, roster_sid *s, int64_t now_ms, int64_t ttl) {
  s->heard_ms = now_ms;
  if (sig->kind == MIM_SIGNAL_PRESENCE)
    s->ttl_ms = sig->ttl_ms > 0 ? sig->ttl_ms : ttl;
  s->ttl_ms = s->ttl_ms > 0 ? s->ttl_ms : ttl;
  s->expires_ms = now_ms + s->ttl_ms;
  if (sig->kind == MIM_SIGNAL_TYPING)
    s->typing_until = sig->on ? now_ms + TYPING_LAPSE_MS : 0;
}

/* A member's name may change between signals: keep the latest. */
static void set_name(mim_roster_member *m, const char *from) {
  if (m->name && strcmp(m->name, from) == 0)
    return;
  char *name = strdup(from);
  if (!name)
    return;
  free(m->name);
  m->name = name;
}

bool mim_roster_apply(mim_roster *r, const mim_signal *sig, int64_t now_ms, int64_t wall_ms,
                      int64_t default_ttl_ms) {
  bool trusted;
  const char *id = sender_of(r, sig, &trusted);
  bool leaving = sig->kind == MIM_SIGNAL_PRESENCE && !sig->here;
  bool stops = leaving || (sig->kind == MIM_SIGNAL_TYPING && !sig->on);
  mim_roster_member *m = find_member(r, id, trusted);
  /* A session we do not know that leaves or stops typing is not here: one session's
   * publishes are not ordered, so its "stopped typing" can arrive after its "left". */
  if (stops && (!m || !find_sid(m, sig->sid)))
    return false;
  bool joined = !m;
  if (!m)
    m = add_member(r, id, trusted);
  if (!m)
    return false; /* full (or out of memory): ignored */
  set_name(m, sig->from);
  m->last_seen_wall = wall_ms;
  roster_sid *s = find_sid(m, sig->sid);
  bool new_sid = !s;
  if (leaving) {
    if (s)
      remove_sid(m, s);
  } else {
    if (!s)
      s = add_sid(m, sig->sid);
    apply_to_sid(sig, s, now_ms, default_ttl_ms);
  }
  if (joined)
    emit(r, MIM_PRESENCE_JOINED, m);
  sync_typing(r, m);
  (void)drop_if_gone(r, (size_t)(m - r->members));
  return new_sid && !leaving;
}

/* Lapses and expiries of one member; returns its next deadline. */
static int64_t tick_member(mim_roster_member *m, int64_t now_ms) {
  int64_t next = INT64_MAX;
  for (size_t i = 0; i < m->n_sids;) {
    roster_sid *s = &m->sids[i];
    if (s->typing_until && s->typing_until <= now_ms)
      s->typing_until = 0;
    if (s->expires_ms <= now_ms) {
      remove_sid(m, s);
      continue;
    }
    if (s->typing_until && s->typing_until < next)
      next = s->typing_until;
    if (s->expires_ms < next)
      next = s->expires_ms;
    i++;
  }
  return next;
}

int64_t mim_roster_tick(mim_roster *r, int64_t now_ms) {
  int64_t next = INT64_MAX;
  for (size_t i = 0; i < r->count;) {
    mim_roster_member *m = &r->members[i];
    int64_t due = tick_member(m, now_ms);
    sync_typing(r, m);
    if (drop_if_gone(r, i))
      continue;
    if (due < next)
      next = due;
    i++;
  }
  return next;
}

static char *dup_str(const char *s) {
  return strdup(s ? s : "");
}

mim_status mim_roster_list(const mim_roster *r, mim_member_list **out) {
  *out = NULL;
  mim_member_list *list = calloc(1, sizeof *list);
  if (!list || (r->count && !(list->members = calloc(r->count, sizeof *list->members)))) {
    free(list);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  }
  for (size_t i = 0; i < r->count; i++) {
    const mim_roster_member *m = &r->members[i];
    mim_member *o = &list->members[list->count++];
    o->user_id = dup_str(m->user_id);
    o->display_name = dup_str(m->name);
    o->trusted = m->trusted;
    o->typing = m->typing;
    o->last_seen_ms = m->last_seen_wall;
    if (!o->user_id || !o->display_name) {
      mim_member_list_free(list);
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    }
  }
  *out = list;
  return MIM_OK;
}

MIM_API void mim_member_list_free(mim_member_list *list) {
  if (!list)
    return;
  for (size_t i = 0; i < list->count; i++) {
    free((char *)list->members[i].user_id);
    free((char *)list->members[i].display_name);
  }
  free(list->members);
  free(list);
}
