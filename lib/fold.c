/* Folding events into messages (see fold.h and docs/PROTOCOL.md 4.3). */
#include "fold.h"

#include "error.h"
#include "message.h"

#include <stdlib.h>
#include <string.h>

/* One message's state. The strings that never change share the block (strs). */
typedef struct fold_msg {
  const char *id, *from, *sender, *publisher_id, *reply_to, *text0;
  int64_t ts;
  uint32_t version;
  bool trusted;
  char *edited_text; /* malloc'd once edited; NULL: text0 */
  bool edited, deleted;
  int64_t edited_ms;
  size_t n_reactions;
  mim_reaction *reactions; /* keys and users malloc'd, MIM_FOLD_MAX_KEYS at most */
  char strs[];
} fold_msg;

/* An event waiting for its message: what applying it needs. */
struct fold_held {
  mim_envelope_type type;
  bool on;
  int64_t ts;
  const char *ref, *sender, *text, *key;
  char strs[];
};

static char *put(char **cur, const char *s) {
  size_t n = strlen(s ? s : "") + 1;
  char *at = *cur;
  memcpy(at, s ? s : "", n);
  *cur += n;
  return at;
}

static size_t len0(const char *s) {
  return s ? strlen(s) + 1 : 1;
}

static void drop_reactions(fold_msg *fm) {
  for (size_t i = 0; i < fm->n_reactions; i++) {
    for (size_t u = 0; u < fm->reactions[i].count; u++)
      free((void *)fm->reactions[i].users[u]);
    free((void *)fm->reactions[i].users);
    free((void *)fm->reactions[i].key);
  }
  free(fm->reactions);
  fm->reactions = NULL;
  fm->n_reactions = 0;
}

static void free_msg(void *p) {
  fold_msg *fm = p;
  drop_reactions(fm);
  free(fm->edited_text);
  free(fm);
}

mim_status mim_fold_init(mim_fold *f, size_t capacity, bool moderated) {
  memset(f, 0, sizeof *f);
  f->moderated = moderated;
  mim_status st = mim_idset_init(&f->msgs, capacity);
  f->msgs.free_value = free_msg;
  if (st == MIM_OK)
    st = mim_idset_init(&f->applied, capacity);
  return st;
}

void mim_fold_reserve(mim_fold *f, size_t capacity) {
  mim_idset_reserve(&f->msgs, capacity);
  mim_idset_reserve(&f->applied, capacity);
}

void mim_fold_free(mim_fold *f) {
  if (!f)
    return;
  mim_idset_free(&f->msgs);
  mim_idset_free(&f->applied);
  for (size_t i = 0; i < f->nheld; i++)
    free(f->held[i]);
  f->nheld = 0;
}

/* ---- views ---- */

static void view(const fold_msg *fm, mim_message *m) {
  m->text = fm->deleted ? "" : fm->edited_text ? fm->edited_text : fm->text0;
  m->edited = fm->edited;
  m->edited_ms = fm->edited_ms;
  m->deleted = fm->deleted;
  m->n_reactions = fm->n_reactions;
  m->reactions = fm->n_reactions ? fm->reactions : NULL;
}

/* Everything on_message shows, from the state alone. */
static void full_view(const fold_msg *fm, const char *chat, mim_message *m) {
  memset(m, 0, sizeof *m);
  m->kind = MIM_MESSAGE_CHAT;
  m->id = fm->id;
  m->chat = chat;
  m->from = fm->from;
  m->publisher_id = fm->publisher_id;
  m->timestamp_ms = fm->ts;
  m->raw = (const uint8_t *)"";
  m->version = fm->version;
  m->sender_id = fm->sender;
  m->sender_trusted = fm->trusted;
  m->reply_to = fm->reply_to;
  view(fm, m);
}

bool mim_fold_view(const mim_fold *f, const char *id, const char *chat, mim_message *m) {
  const fold_msg *fm = mim_idset_get(&f->msgs, id);
  if (fm)
    full_view(fm, chat, m);
  return fm != NULL;
}

/* ---- applying events ---- */

static mim_fold_result apply_edit(fold_msg *fm, const fold_held *ev) {
  if (fm->deleted || strcmp(ev->sender, fm->sender) != 0)
    return MIM_FOLD_IGNORED;
  char *t = strdup(ev->text);
  if (!t)
    return MIM_FOLD_IGNORED;
  free(fm->edited_text);
  fm->edited_text = t;
  fm->edited = true;
  fm->edited_ms = ev->ts;
  return MIM_FOLD_CHANGED;
}

static mim_fold_result apply_delete(fold_msg *fm, const fold_held *ev) {
  if (strcmp(ev->sender, fm->sender) != 0)
    return MIM_FOLD_IGNORED;
  if (fm->deleted)
    return MIM_FOLD_UNCHANGED;
  fm->deleted = true;
  free(fm->edited_text);
  fm->edited_text = NULL;
  drop_reactions(fm);
  return MIM_FOLD_CHANGED;
}

static long find_user(const mim_reaction *r, const char *user) {
  for (size_t u = 0; u < r->count; u++)
    if (strcmp(r->users[u], user) == 0)
      return (long)u;
  return -1;
}

/* The reaction with this key, added (empty) when absent and add is true; NULL at a cap. */
static mim_reaction *reaction_of(fold_msg *fm, const char *key, bool add) {
  for (size_t i = 0; i < fm->n_reactions; i++)
    if (strcmp(fm->reactions[i].key, key) == 0)
      return &fm->reactions[i];
  if (!add || fm->n_reactions >= MIM_FOLD_MAX_KEYS)
    return NULL;
  mim_reaction *r = realloc(fm->reactions, (fm->n_reactions + 1) * sizeof *r);
  if (!r)
    return NULL;
  fm->reactions = r;
  char *k = strdup(key);
  if (!k)
    return NULL;
  r[fm->n_reactions] = (mim_reaction){.key = k, .count = 0, .users = NULL};
  return &r[fm->n_reactions++];
}

static void remove_key(fold_msg *fm, mim_reaction *r) {
  size_t i = (size_t)(r - fm->reactions);
  free((void *)r->users);
  free((void *)r->key);
  memmove(r, r + 1, (fm->n_reactions - i - 1) * sizeof *r);
  fm->n_reactions--;
}

static mim_fold_result react_on(mim_reaction *r, const char *user) {
  if (find_user(r, user) >= 0)
    return MIM_FOLD_UNCHANGED;
  if (r->count >= MIM_FOLD_MAX_USERS)
    return MIM_FOLD_IGNORED;
  const char **u = realloc((void *)r->users, (r->count + 1) * sizeof *u);
  if (!u)
    return MIM_FOLD_IGNORED;
  r->users = u;
  char *copy = strdup(user);
  if (!copy)
    return MIM_FOLD_IGNORED;
  u[r->count++] = copy;
  return MIM_FOLD_CHANGED;
}

static mim_fold_result apply_react(fold_msg *fm, const fold_held *ev) {
  if (fm->deleted)
    return MIM_FOLD_IGNORED;
  mim_reaction *r = reaction_of(fm, ev->key, ev->on);
  if (ev->on) {
    mim_fold_result res = r ? react_on(r, ev->sender) : MIM_FOLD_IGNORED;
    if (r && r->count == 0)
      remove_key(fm, r); /* a cap refused the first user: no empty key left behind */
    return res;
  }
  long at = r ? find_user(r, ev->sender) : -1;
  if (at < 0)
    return MIM_FOLD_UNCHANGED;
  free((void *)r->users[at]);
  memmove((void *)&r->users[at], &r->users[at + 1], (r->count - (size_t)at - 1) * sizeof(char *));
  if (--r->count == 0)
    remove_key(fm, r);
  return MIM_FOLD_CHANGED;
}

static mim_fold_result apply(fold_msg *fm, const fold_held *ev) {
  mim_fold_result res = ev->type == MIM_ENV_EDIT     ? apply_edit(fm, ev)
                        : ev->type == MIM_ENV_DELETE ? apply_delete(fm, ev)
                                                     : apply_react(fm, ev);
  if (res == MIM_FOLD_IGNORED)
    mim_log(MIM_LOG_DEBUG,
            "an event of %s on message %s was ignored (not its author, deleted, "
            "or a reaction cap)",
            ev->sender, fm->id);
  return res;
}

/* The event as the fold keeps it (strings borrowed from env and the sender). */
static void as_event(const mim_fold *f, const mim_envelope *env, fold_held *ev) {
  bool trusted;
  *ev = (fold_held){.type = env->type,
                    .on = env->on,
                    .ts = env->ts,
                    .ref = env->ref,
                    .sender = mim_envelope_sender(env, f->moderated, &trusted),
                    .text = env->text ? env->text : "",
                    .key = env->key ? env->key : ""};
}

/* Keeps a copy of ev, dropping the oldest held event when full. */
static void hold(mim_fold *f, const fold_held *ev) {
  fold_held *h = malloc(sizeof *h + strlen(ev->ref) + strlen(ev->sender) + strlen(ev->text) +
                        strlen(ev->key) + 4);
  if (!h)
    return;
  *h = *ev;
  char *cur = h->strs;
  h->ref = put(&cur, ev->ref);
  h->sender = put(&cur, ev->sender);
  h->text = put(&cur, ev->text);
  h->key = put(&cur, ev->key);
  if (f->nheld == MIM_FOLD_MAX_HELD) {
    free(f->held[0]);
    memmove(&f->held[0], &f->held[1], (MIM_FOLD_MAX_HELD - 1) * sizeof f->held[0]);
    f->nheld--;
  }
  f->held[f->nheld++] = h;
}

/* Applies (in arrival order) and forgets the events held for fm. */
static void apply_held(mim_fold *f, fold_msg *fm) {
  size_t kept = 0;
  for (size_t i = 0; i < f->nheld; i++) {
    fold_held *h = f->held[i];
    if (strcmp(h->ref, fm->id) != 0) {
      f->held[kept++] = h;
      continue;
    }
    (void)apply(fm, h);
    free(h);
  }
  f->nheld = kept;
}

mim_fold_result mim_fold_event(mim_fold *f, const mim_envelope *env, const mim_message *event,
                               mim_message *current, mim_update_kind *what) {
  bool added = false;
  if (mim_idset_add(&f->applied, env->id, &added) == MIM_OK && !added)
    return MIM_FOLD_UNCHANGED;
  fold_held ev;
  as_event(f, env, &ev);
  fold_msg *fm = mim_idset_get(&f->msgs, env->ref);
  if (!fm) {
    hold(f, &ev);
    return MIM_FOLD_HELD;
  }
  mim_fold_result res = apply(fm, &ev);
  if (res != MIM_FOLD_CHANGED)
    return res;
  full_view(fm, event->chat, current);
  current->raw = event->raw;
  current->raw_len = event->raw_len;
  current->sequence = event->sequence;
  current->from_history = event->from_history;
  *what = env->type == MIM_ENV_EDIT     ? MIM_UPDATE_EDITED
          : env->type == MIM_ENV_DELETE ? MIM_UPDATE_DELETED
                                        : MIM_UPDATE_REACTIONS;
  return res;
}

void mim_fold_prepare(mim_fold *f, const mim_envelope *env) {
  if (mim_idset_contains(&f->msgs, env->ref) || mim_idset_contains(&f->applied, env->id))
    return;
  fold_held ev;
  as_event(f, env, &ev);
  if (mim_idset_add(&f->applied, env->id, NULL) == MIM_OK)
    hold(f, &ev);
}

/* A new state for the message m shows. */
static fold_msg *new_msg(const mim_message *m) {
  fold_msg *fm = calloc(1, sizeof *fm + len0(m->id) + len0(m->from) + len0(m->sender_id) +
                               len0(m->publisher_id) + len0(m->reply_to) + len0(m->text));
  if (!fm)
    return NULL;
  char *cur = fm->strs;
  fm->id = put(&cur, m->id);
  fm->from = put(&cur, m->from);
  fm->sender = put(&cur, m->sender_id);
  fm->publisher_id = put(&cur, m->publisher_id);
  fm->reply_to = put(&cur, m->reply_to);
  fm->text0 = put(&cur, m->text);
  fm->ts = m->timestamp_ms;
  fm->version = m->version;
  fm->trusted = m->sender_trusted;
  return fm;
}

mim_status mim_fold_message(mim_fold *f, mim_message *m) {
  fold_msg *fm = mim_idset_get(&f->msgs, m->id);
  if (!fm) {
    fm = new_msg(m);
    if (!fm)
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
    if (mim_idset_put(&f->msgs, m->id, fm, NULL) != MIM_OK) {
      free_msg(fm);
      return MIM_ERR_NO_MEMORY;
    }
    if (f->nheld)
      apply_held(f, fm);
  }
  view(fm, m);
  return MIM_OK;
}
