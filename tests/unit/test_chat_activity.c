/* Joins, reconnects and gap-fills while a chat is busy (issue 17 item 9), with real
 * clients on mim-local, in both modes (moderated: a running moderator and a token per
 * user): alice and bob run a scripted sequence of messages, edits, reactions and
 * deletions on their own threads while carol joins several times (mim_join and
 * mim_join_async) or has her stream cut (every stream by mim-local's SIGUSR1, or hers
 * alone, held and then cut by the chaos proxy; some of each gap replayed, some refetched
 * from the list). Every view (on_message, then each on_update applied in order) must end
 * equal to a fresh joiner's mim_history, report each message once and each change once
 * (an update always changes what it says it changes; nothing after a deletion). And the
 * unread count forgets a message its author deleted. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "chaos_proxy.h"
#include "clock.h"
#include "test_client.h"

#include <momento/im.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "activity-test"
#define MAX_RECS 512
#define MAX_OWN 32
#define STATE_SIZE 160
#define MAX_JOINERS 4
#define CAP 1000 /* history kept and fetched: the whole chat */

static mim_local *srv;
static mim_client *root;

static const char *new_chat(char *buf, size_t n, const char *tag) {
  static atomic_int counter;
  snprintf(buf, n, "act-%s-%d", tag, atomic_fetch_add(&counter, 1));
  return buf;
}

static int64_t wait_ms(void) {
  return 20000LL * test_time_scale();
}

/* Rounds of each actor's script: fewer under valgrind, whose time is scaled x10. */
static int rounds(void) {
  return test_time_scale() >= 5 ? 3 : 8;
}

/* ---- a view: what one session was told, in order ---- */

typedef struct rec {
  bool update;
  mim_update_kind what;
  char id[MIM_MESSAGE_ID_SIZE];
  char text[64];
  char reactions[96]; /* "key:user,user;key:user" */
  bool edited, deleted, from_history;
} rec;

typedef struct view {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rec recs[MAX_RECS];
  size_t n;
  bool overflow;
  int reconnects;
  int connects;   /* CONNECTED reports (the join's and each reconnect's) */
  int gap_errors; /* CONNECTED with a non-OK status: a gap that could not be filled */
  char gap_error[160];
  bool async;  /* joined with mim_join_async: session set by on_joined */
  bool joined; /* on_joined ran */
  mim_status join_status;
  mim_session *session;
  mim_client *client; /* owned when not NULL */
} view;

static view *view_new(void) {
  view *v = calloc(1, sizeof *v);
  assert_non_null(v);
  pthread_mutex_init(&v->mu, NULL);
  cmn_cond_init_monotonic(&v->cv);
  return v;
}

static void view_free(view *v) {
  if (!v)
    return;
  if (v->session)
    mim_leave(v->session);
  if (v->client)
    mim_client_free(v->client);
  pthread_mutex_destroy(&v->mu);
  pthread_cond_destroy(&v->cv);
  free(v);
}

static void reactions_str(const mim_message *m, char *out, size_t n) {
  size_t at = 0;
  out[0] = '\0';
  for (size_t i = 0; i < m->n_reactions && at < n; i++) {
    at += (size_t)snprintf(out + at, n - at, "%s%s:", i ? ";" : "", m->reactions[i].key);
    for (size_t u = 0; u < m->reactions[i].count && at < n; u++)
      at += (size_t)snprintf(out + at, n - at, "%s%s", u ? "," : "", m->reactions[i].users[u]);
  }
}

static void rec_fill(rec *r, const mim_message *m) {
  snprintf(r->id, sizeof r->id, "%s", m->id);
  snprintf(r->text, sizeof r->text, "%s", m->text);
  reactions_str(m, r->reactions, sizeof r->reactions);
  r->edited = m->edited;
  r->deleted = m->deleted;
  r->from_history = m->from_history;
}

static void record(view *v, const mim_message *m, bool update, mim_update_kind what) {
  if (m->kind != MIM_MESSAGE_CHAT)
    return;
  pthread_mutex_lock(&v->mu);
  if (v->n < MAX_RECS) {
    rec *r = &v->recs[v->n++];
    r->update = update;
    r->what = what;
    rec_fill(r, m);
  } else {
    v->overflow = true;
  }
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
}

static void on_message(mim_session *session, const mim_message *m, void *user) {
  (void)session;
  record(user, m, false, MIM_UPDATE_EDITED);
}

static void on_update(mim_session *session, const mim_message *m, mim_update_kind what,
                      void *user) {
  (void)session;
  record(user, m, true, what);
}

static void on_event(mim_session *session, mim_subscription_state state, mim_status st,
                     const char *detail, void *user) {
  (void)session;
  view *v = user;
  pthread_mutex_lock(&v->mu);
  v->reconnects += state == MIM_SUB_RECONNECTING;
  if (state == MIM_SUB_CONNECTED && st != MIM_OK && !v->gap_errors++)
    snprintf(v->gap_error, sizeof v->gap_error, "%s %s", mim_status_name(st), detail);
  v->connects += state == MIM_SUB_CONNECTED;
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
}

static void on_joined(mim_session *session, mim_status st, const char *detail, void *user) {
  (void)detail;
  view *v = user;
  pthread_mutex_lock(&v->mu);
  v->joined = true;
  v->join_status = st;
  v->session = st == MIM_OK ? session : NULL;
  pthread_cond_broadcast(&v->cv);
  pthread_mutex_unlock(&v->mu);
}

/* Waits until pred(v, arg) holds (checked under v->mu); false on timeout. */
static bool wait_until(view *v, bool (*pred)(view *, const void *), const void *arg) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  pthread_mutex_lock(&v->mu);
  bool ok = pred(v, arg);
  while (!ok && pthread_cond_timedwait(&v->cv, &v->mu, &until) != ETIMEDOUT)
    ok = pred(v, arg);
  ok = pred(v, arg);
  pthread_mutex_unlock(&v->mu);
  return ok;
}

static bool has_msg(view *v, const void *id) {
  for (size_t i = 0; i < v->n; i++)
    if (!v->recs[i].update && strcmp(v->recs[i].id, id) == 0)
      return true;
  return false;
}

static bool has_msgs(view *v, const void *count) {
  size_t k = 0;
  for (size_t i = 0; i < v->n; i++)
    k += !v->recs[i].update;
  return k >= *(const size_t *)count;
}

static bool is_joined(view *v, const void *unused) {
  (void)unused;
  return v->joined;
}

static bool has_update(view *v, const void *id) {
  for (size_t i = 0; i < v->n; i++)
    if (v->recs[i].update && strcmp(v->recs[i].id, id) == 0)
      return true;
  return false;
}

static mim_join_options join_options(const char *name, mim_chat_mode mode) {
  mim_join_options o = MIM_JOIN_OPTIONS_INIT;
  o.display_name = name;
  o.user_id = name;
  o.mode = mode;
  o.history_cap = CAP;
  o.initial_history = CAP;
  o.on_update = on_update;
  o.on_event = on_event;
  return o;
}

static void join_view(view *v, mim_client *cl, const char *chat, const char *name,
                      mim_chat_mode mode) {
  mim_join_options o = join_options(name, mode);
  mim_status st = mim_join(cl, CACHE, chat, &o, on_message, v, &v->session);
  if (st != MIM_OK)
    fail_msg("mim_join(%s) as %s: %s %s", chat, name, mim_status_name(st), mim_last_error_detail());
}

/* mim_join_async; the session is known once on_joined ran (see await_joined). */
static void join_view_async(view *v, mim_client *cl, const char *chat, const char *name,
                            mim_chat_mode mode) {
  mim_join_options o = join_options(name, mode);
  mim_status st = mim_join_async(cl, CACHE, chat, &o, on_message, on_joined, v);
  if (st != MIM_OK)
    fail_msg("mim_join_async(%s): %s %s", chat, mim_status_name(st), mim_last_error_detail());
}

static void await_joined(view *v) {
  assert_true(wait_until(v, is_joined, NULL));
  pthread_mutex_lock(&v->mu);
  mim_status st = v->join_status;
  pthread_mutex_unlock(&v->mu);
  assert_int_equal(st, MIM_OK);
}

/* ---- the check: a view replayed equals the history, each change once ---- */

typedef struct state {
  char id[MIM_MESSAGE_ID_SIZE];
  rec now;
} state;

static state *find_state(state *t, size_t n, const char *id) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(t[i].id, id) == 0)
      return &t[i];
  return NULL;
}

/* An update must change exactly what its kind says, and nothing follows a deletion. */
static void check_update(const char *who, const rec *before, const rec *after) {
  if (before->deleted)
    fail_msg("%s: update %d of %s after its deletion", who, after->what, after->id);
  bool text = strcmp(before->text, after->text) != 0 || before->edited != after->edited;
  bool reacts = strcmp(before->reactions, after->reactions) != 0;
  switch (after->what) {
  case MIM_UPDATE_EDITED:
    if (!text || !after->edited || reacts)
      fail_msg("%s: edit of %s reported without a new text ('%s' -> '%s')", who, after->id,
               before->text, after->text);
    break;
  case MIM_UPDATE_DELETED:
    if (!after->deleted || after->text[0] || after->reactions[0])
      fail_msg("%s: deletion of %s reported with text '%s'", who, after->id, after->text);
    break;
  case MIM_UPDATE_REACTIONS:
    if (!reacts || text)
      fail_msg("%s: reactions of %s reported unchanged ('%s')", who, after->id, after->reactions);
    break;
  }
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts the n parts of s separated by sep, in place (s is at most 96 bytes). */
static void sort_parts(char *s, char sep) {
  char copy[96], *parts[48] = {0};
  size_t n = 0;
  snprintf(copy, sizeof copy, "%s", s);
  for (char *at = copy; at && n < 48; n++) {
    parts[n] = at;
    at = strchr(at, sep);
    if (at)
      *at++ = '\0';
  }
  qsort(parts, n, sizeof *parts, cmp_str);
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(s + len, 96 - len, "%s%s", i ? (char[]){sep, 0} : "", parts[i]);
}

/* Reactions without their order: "key:user,user;key:user", users and keys sorted. */
static void reactions_unordered(const char *in, char out[96]) {
  char groups[48][96];
  size_t n = 0;
  for (const char *at = in; *at && n < 48; n++) {
    const char *end = strchr(at, ';');
    size_t len = end ? (size_t)(end - at) : strlen(at);
    snprintf(groups[n], sizeof groups[n], "%.*s", (int)len, at);
    char *users = strchr(groups[n], ':');
    if (users)
      sort_parts(users + 1, ',');
    at += len + (end != NULL);
  }
  out[0] = '\0';
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += (size_t)snprintf(out + len, 96 - len, "%s%s", i ? ";" : "", groups[i]);
  sort_parts(out, ';');
}

/* Client-only, each writer pushes to the list and then publishes, so list and topic
 * agree on each writer's order only (docs/PROTOCOL.md 2): live readers and the history
 * can see different users' reactions in different orders, never different ones. */
static bool same_reactions(const char *a, const char *b, bool any_order) {
  if (!any_order)
    return strcmp(a, b) == 0;
  char ua[96], ub[96];
  reactions_unordered(a, ua);
  reactions_unordered(b, ub);
  return strcmp(ua, ub) == 0;
}

static void rec_equal(const char *who, const rec *got, const rec *want, bool any_order) {
  if (strcmp(got->text, want->text) != 0 ||
      !same_reactions(got->reactions, want->reactions, any_order) || got->edited != want->edited ||
      got->deleted != want->deleted)
    fail_msg("%s: %s is '%s' [%s]%s%s, history says '%s' [%s]%s%s", who, got->id, got->text,
             got->reactions, got->edited ? " edited" : "", got->deleted ? " deleted" : "",
             want->text, want->reactions, want->edited ? " edited" : "",
             want->deleted ? " deleted" : "");
}

/* Records that are updates of kind what, or (update false) live messages. */
static size_t count_recs(view *v, bool update, mim_update_kind what) {
  size_t k = 0;
  pthread_mutex_lock(&v->mu);
  for (size_t i = 0; i < v->n; i++) {
    const rec *r = &v->recs[i];
    k += update ? r->update && r->what == what : !r->update && !r->from_history;
  }
  pthread_mutex_unlock(&v->mu);
  return k;
}

static size_t count_history(view *v) {
  size_t k = 0;
  pthread_mutex_lock(&v->mu);
  for (size_t i = 0; i < v->n; i++)
    k += !v->recs[i].update && v->recs[i].from_history;
  pthread_mutex_unlock(&v->mu);
  return k;
}

static void check_view(const char *who, view *v, const mim_message_list *h, bool any_order) {
  state *t = calloc(MAX_RECS, sizeof *t);
  assert_non_null(t);
  size_t n = 0;
  pthread_mutex_lock(&v->mu);
  assert_false(v->overflow);
  if (v->gap_errors)
    fail_msg("%s: %d gaps not filled, the first: %s", who, v->gap_errors, v->gap_error);
  int reconnects = v->reconnects;
  for (size_t i = 0; i < v->n; i++) {
    const rec *r = &v->recs[i];
    state *s = find_state(t, n, r->id);
    if (!r->update && s)
      fail_msg("%s: message %s delivered twice", who, r->id);
    if (r->update && !s)
      fail_msg("%s: update of %s before the message", who, r->id);
    else if (r->update)
      check_update(who, &s->now, r);
    if (!s) {
      s = &t[n++];
      snprintf(s->id, sizeof s->id, "%s", r->id);
    }
    s->now = *r;
  }
  pthread_mutex_unlock(&v->mu);
  size_t chat_msgs = 0;
  for (size_t i = 0; i < h->count; i++) {
    const mim_message *m = &h->messages[i];
    if (m->kind != MIM_MESSAGE_CHAT)
      continue;
    chat_msgs++;
    state *s = find_state(t, n, m->id);
    rec want;
    memset(&want, 0, sizeof want);
    rec_fill(&want, m);
    if (!s)
      fail_msg("%s: never got %s ('%s')", who, m->id, m->text);
    else
      rec_equal(who, &s->now, &want, any_order);
  }
  assert_int_equal(n, chat_msgs);
  free(t);
  print_message("%s: %zu messages (%zu live), updates: %zu edits, %zu deletions, %zu reactions, "
                "%d reconnects\n",
                who, n, count_recs(v, false, MIM_UPDATE_EDITED),
                count_recs(v, true, MIM_UPDATE_EDITED), count_recs(v, true, MIM_UPDATE_DELETED),
                count_recs(v, true, MIM_UPDATE_REACTIONS), reconnects);
}

/* ---- actors: a bounded script on their own threads ---- */

/* Where the main thread is: the actor that waits for it (alice) plays round i only
 * after the joins or cuts planned at or before i happened, so each is followed by some
 * of her activity. */
typedef struct gate {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stage;                  /* joins or cuts done */
  size_t points[MAX_JOINERS]; /* done at these counts of alice's messages */
} gate;

static int stages_due(const gate *g, int round) {
  int k = 0;
  for (int i = 0; i < MAX_JOINERS; i++)
    k += g->points[i] <= (size_t)round;
  return k;
}

static bool gate_wait(gate *g, int round) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  int due = stages_due(g, round), err = 0;
  pthread_mutex_lock(&g->mu);
  while (g->stage < due && err != ETIMEDOUT)
    err = pthread_cond_timedwait(&g->cv, &g->mu, &until);
  bool ok = g->stage >= due;
  pthread_mutex_unlock(&g->mu);
  return ok;
}

static void gate_pass(gate *g) {
  pthread_mutex_lock(&g->mu);
  g->stage++;
  pthread_cond_broadcast(&g->cv);
  pthread_mutex_unlock(&g->mu);
}

typedef struct actor {
  const char *name;
  gate *gate; /* NULL: plays freely */
  mim_session *session;
  view *v;
  struct actor *other;
  pthread_mutex_t *mu; /* guards ids and n of both actors */
  char ids[MAX_OWN][MIM_MESSAGE_ID_SIZE];
  int n;
  int rounds;
  char failure[160]; /* first failure (assertions belong to the main thread) */
} actor;

static bool act(actor *a, mim_status st, const char *what) {
  if (st != MIM_OK && !a->failure[0])
    snprintf(a->failure, sizeof a->failure, "%s: %s %s", what, mim_status_name(st),
             mim_last_error_detail());
  return st == MIM_OK;
}

/* The other actor's newest message, or "" when none yet. */
static void others_latest(actor *a, char out[MIM_MESSAGE_ID_SIZE]) {
  pthread_mutex_lock(a->mu);
  snprintf(out, MIM_MESSAGE_ID_SIZE, "%s", a->other->n ? a->other->ids[a->other->n - 1] : "");
  pthread_mutex_unlock(a->mu);
}

/* Round i: a message, a reaction on the other's newest, an edit of the previous own one,
 * every third round a deletion of an older own one, every other round the reaction
 * taken back (or a removal of an absent one: no change), a reaction on the new one. Then
 * waits until the own view has the new message, so rounds interleave with the joins. */
static bool play_round(actor *a, int i) {
  char text[64], theirs[MIM_MESSAGE_ID_SIZE], id[MIM_MESSAGE_ID_SIZE];
  snprintf(text, sizeof text, "%s %d", a->name, i);
  if (!act(a, mim_send(a->session, text, id), "send"))
    return false;
  pthread_mutex_lock(a->mu);
  snprintf(a->ids[a->n++], MIM_MESSAGE_ID_SIZE, "%s", id);
  pthread_mutex_unlock(a->mu);
  others_latest(a, theirs);
  if (theirs[0] && !act(a, mim_react(a->session, theirs, "+1", true, NULL), "react"))
    return false;
  snprintf(text, sizeof text, "%s %d edited", a->name, i - 1);
  if (i >= 1 && !act(a, mim_edit(a->session, a->ids[i - 1], text, NULL), "edit"))
    return false;
  if (i >= 2 && i % 3 == 2 && !act(a, mim_delete(a->session, a->ids[i - 2], NULL), "delete"))
    return false;
  others_latest(a, theirs);
  if (i % 2 && theirs[0] && !act(a, mim_react(a->session, theirs, "+1", false, NULL), "unreact"))
    return false;
  if (!act(a, mim_react(a->session, id, "ok", true, NULL), "react own"))
    return false;
  if (!wait_until(a->v, has_msg, id))
    return act(a, MIM_ERR_DEADLINE_EXCEEDED, "own message back");
  return true;
}

static void *actor_main(void *arg) {
  actor *a = arg;
  for (int i = 0; i < a->rounds; i++) {
    if (a->gate && !gate_wait(a->gate, i))
      return act(a, MIM_ERR_DEADLINE_EXCEEDED, "the main thread"), NULL;
    if (!play_round(a, i))
      break;
  }
  return NULL;
}

/* ---- the scenario ---- */

typedef struct scenario {
  mim_chat_mode mode;
  mim_local *server;
  bool joins;   /* carol joins while they play */
  bool cuts;    /* carol is joined first; every stream is cut while they play */
  bool proxy;   /* ... or only carol's, through a proxy that holds it, then cuts it */
  bool refetch; /* the server keeps nothing to resume from */
} scenario;

static mim_moderation_verdict accept_all(const mim_message *m, char **new_text, void *user) {
  (void)m, (void)new_text, (void)user;
  return MIM_MODERATION_ACCEPT;
}

typedef struct party {
  mim_client *root; /* of the scenario's server */
  const char *root_key;
  const char *via; /* the proxy's endpoint, or NULL */
  const char *chat;
  mim_chat_mode mode;
} party;

/* A client whose calls go to endpoint (the proxy) with the credential key. */
static mim_client *client_via(const char *endpoint, const char *key) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = o.control_host = o.token_host = endpoint;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 10000LL * test_time_scale();
  mim_client *c = NULL;
  assert_int_equal(mim_client_create(&o, &c), MIM_OK);
  return c;
}

/* The user's own client (moderated: with a token of its own id), or NULL when the
 * root client serves (client-only, not proxied). */
static mim_client *client_for(const party *p, const char *user, bool proxied) {
  if (p->mode == MIM_CHAT_CLIENT_ONLY && !proxied)
    return NULL;
  mim_disposable_token *t = NULL;
  const char *key = p->root_key;
  if (p->mode == MIM_CHAT_MODERATED) {
    assert_int_equal(mim_token_generate_moderated(p->root, CACHE, p->chat, 600, user, &t), MIM_OK);
    key = t->credential;
  }
  mim_client *cl = proxied ? client_via(p->via, key) : test_client_from_key(key);
  if (t)
    mim_disposable_token_free(t);
  return cl;
}

static view *member_join(const party *p, const char *name, bool async, bool proxied) {
  view *v = view_new();
  v->client = client_for(p, name, proxied);
  mim_client *cl = v->client ? v->client : p->root;
  v->async = async;
  if (async)
    join_view_async(v, cl, p->chat, name, p->mode);
  else
    join_view(v, cl, p->chat, name, p->mode);
  return v;
}

/* Sends a sentinel from v's session and waits until every view has it: all each sender
 * sent before has been delivered everywhere by then. */
static void sync_all(view *from, view **all, size_t n) {
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(from->session, "sentinel", id), MIM_OK);
  for (size_t i = 0; i < n; i++)
    if (!wait_until(all[i], has_msg, id))
      fail_msg("view %zu never got the sentinel %s", i, id);
}

/* Carol's connection is held (even steps: what is published meanwhile stays in the
 * proxy or the server), then cut and released (odd steps): her stream resumes, from the
 * server's replay or, past it, with a discontinuity and a refetch of the list. */
static bool connected_more(view *v, const void *before) {
  return v->connects > *(const int *)before;
}

/* ... and the next step waits until she is connected again and has a message sent
 * during the hold and one sent after it: live values wait for a refetch, so her gap is
 * filled by then. Activity goes on around the gap-fill, and the next hold does not catch
 * a refetch in flight (its failure would be reported, and filled at the next resume). */
static void cut_step(chaos_proxy *proxy, int k, view *carol, view *alice,
                     char marker[MIM_MESSAGE_ID_SIZE]) {
  if (k % 2 == 0) {
    chaos_proxy_hold(proxy, 1);
    assert_int_equal(mim_send(alice->session, "during the hold", marker), MIM_OK);
    assert_true(wait_until(alice, has_msg, marker));
    return;
  }
  pthread_mutex_lock(&carol->mu);
  int before = carol->connects;
  pthread_mutex_unlock(&carol->mu);
  chaos_proxy_cut_all(proxy);
  chaos_proxy_hold(proxy, 0);
  assert_true(wait_until(carol, connected_more, &before));
  assert_true(wait_until(carol, has_msg, marker));
  assert_int_equal(mim_send(alice->session, "after the hold", marker), MIM_OK);
  assert_true(wait_until(carol, has_msg, marker));
}

/* While the actors play, the main thread acts at these counts of alice's messages. */
static void at_alice_count(view *alice, size_t k) {
  assert_true(wait_until(alice, has_msgs, &k));
}

static void run(const scenario *sc) {
  char chat[64];
  new_chat(chat, sizeof chat, sc->mode == MIM_CHAT_MODERATED ? "mod" : "co");
  mim_client *sroot = test_client_from_key(sc->server->root_key);
  mim_moderator *mod = NULL;
  if (sc->mode == MIM_CHAT_MODERATED) {
    const char *chats[] = {chat};
    mim_moderator_options mo = MIM_MODERATOR_OPTIONS_INIT;
    mo.history_cap = CAP;
    assert_int_equal(
        mim_moderator_start_with_options(sroot, CACHE, chats, 1, &mo, accept_all, NULL, &mod),
        MIM_OK);
  }
  party p = {.root = sroot, .root_key = sc->server->root_key, .chat = chat, .mode = sc->mode};
  view *views[3 + MAX_JOINERS + 1] = {0};
  size_t nv = 0;
  view *alice = views[nv++] = member_join(&p, "alice", false, false);
  view *bob = views[nv++] = member_join(&p, "bob", false, false);
  chaos_proxy *proxy = NULL;
  char via[64], marker[MIM_MESSAGE_ID_SIZE];
  if (sc->proxy) {
    chaos_proxy_opts po;
    chaos_proxy_opts_init(&po);
    po.start_paused = 1; /* no random faults: only the scripted ones */
    proxy = chaos_proxy_start(sc->server->port, &po);
    assert_non_null(proxy);
    snprintf(via, sizeof via, "127.0.0.1:%d", chaos_proxy_port(proxy, 0));
    p.via = via;
  }
  if (sc->cuts)
    views[nv++] = member_join(&p, "carol", false, proxy != NULL);
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  gate g = {.mu = PTHREAD_MUTEX_INITIALIZER};
  cmn_cond_init_monotonic(&g.cv);
  actor a = {.name = "alice", .session = alice->session, .v = alice, .mu = &mu, .gate = &g};
  actor b = {.name = "bob", .session = bob->session, .v = bob, .mu = &mu};
  a.other = &b;
  b.other = &a;
  a.rounds = b.rounds = rounds();
  /* Carol joins (alternately blocking and async) or every stream is cut, at points
   * spread over the script; fixed before the actors start. */
  size_t points[MAX_JOINERS] = {1, 2, (size_t)a.rounds / 2, (size_t)a.rounds - 1};
  memcpy(g.points, points, sizeof points);
  pthread_t ta, tb;
  assert_int_equal(pthread_create(&ta, NULL, actor_main, &a), 0);
  assert_int_equal(pthread_create(&tb, NULL, actor_main, &b), 0);
  for (int k = 0; k < MAX_JOINERS; k++) {
    at_alice_count(alice, points[k]);
    if (sc->joins)
      views[nv++] = member_join(&p, "carol", k % 2 == 1, false);
    if (proxy)
      cut_step(proxy, k, views[2], alice, marker);
    else if (sc->cuts)
      assert_int_equal(mim_local_signal(sc->server, SIGUSR1), 0);
    gate_pass(&g);
  }
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  if (a.failure[0] || b.failure[0])
    fail_msg("alice: %s; bob: %s", a.failure, b.failure);
  for (size_t i = 0; i < nv; i++)
    if (views[i]->async)
      await_joined(views[i]);
  sync_all(alice, views, nv);
  sync_all(bob, views, nv);
  /* The truth: a fresh joiner's history (folded from the list alone). */
  view *fresh = views[nv++] = member_join(&p, "dave", false, false);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(fresh->session, 0, &h), MIM_OK);
  assert_true(h->count >= 2 * (size_t)a.rounds + 2);
  static const char *const names[] = {"alice",   "bob",     "carol 1", "carol 2",
                                      "carol 3", "carol 4", "dave",    "?"};
  for (size_t i = 0; i < nv; i++) {
    char who[80];
    snprintf(who, sizeof who, "%s (%s)", i == nv - 1 ? "dave" : names[i < 7 ? i : 7], chat);
    check_view(who, views[i], h, sc->mode == MIM_CHAT_CLIENT_ONLY);
  }
  /* The quiet joiner was shown the state, not the changes that led to it. */
  for (int w = 0; w < 3; w++)
    assert_int_equal(count_recs(fresh, true, (mim_update_kind)w), 0);
  /* A blocking joiner returned before alice's next round: it was told of her later
   * edits through on_update. */
  for (size_t k = 0; sc->joins && k < MAX_JOINERS; k += 2)
    assert_true(count_recs(views[2 + k], true, MIM_UPDATE_EDITED) >= 1);
  if (sc->cuts) {
    pthread_mutex_lock(&views[2]->mu);
    int reconnects = views[2]->reconnects;
    pthread_mutex_unlock(&views[2]->mu);
    assert_true(reconnects >= 1);
  }
  /* Carol joined an empty chat: what she was shown from the list came by a gap-fill. */
  if (sc->proxy && sc->refetch)
    assert_true(count_history(views[2]) >= 1);
  mim_message_list_free(h);
  for (size_t i = 0; i < nv; i++)
    view_free(views[i]);
  pthread_cond_destroy(&g.cv);
  if (proxy)
    chaos_proxy_stop(proxy);
  if (mod)
    mim_moderator_stop(mod);
  mim_client_free(sroot);
}

static void test_joins_during_activity_client_only(void **state) {
  (void)state;
  scenario sc = {.mode = MIM_CHAT_CLIENT_ONLY, .server = srv, .joins = true};
  run(&sc);
}

static void test_joins_during_activity_moderated(void **state) {
  (void)state;
  scenario sc = {.mode = MIM_CHAT_MODERATED, .server = srv, .joins = true};
  run(&sc);
}

/* Streams cut on a server of their own that keeps `replay` messages per topic for
 * resume: 0 refetches every gap from the list, 2 replays part of a gap and reports a
 * discontinuity for the rest, the default replays everything. */
static void run_cuts(mim_chat_mode mode, int replay, bool set_replay, bool proxy) {
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {
      .caches = caches, .replay = replay, .set_replay = set_replay, .heartbeat_ms = 500};
  mim_local *s2 = NULL;
  assert_int_equal(mim_local_start(&o, &s2), 0);
  scenario sc = {
      .mode = mode, .server = s2, .cuts = true, .proxy = proxy, .refetch = set_replay && !replay};
  run(&sc);
  assert_int_equal(mim_local_stop(s2), 0);
}

static void test_cuts_refetch_client_only(void **state) {
  (void)state;
  run_cuts(MIM_CHAT_CLIENT_ONLY, 0, true, false);
}

static void test_cuts_part_replayed_client_only(void **state) {
  (void)state;
  run_cuts(MIM_CHAT_CLIENT_ONLY, 2, true, false);
}

/* The moderator's input stream is cut too: it resumes from the replay (inputs are on a
 * topic only, there is no list to refetch them from). */
static void test_cuts_replayed_moderated(void **state) {
  (void)state;
  run_cuts(MIM_CHAT_MODERATED, 0, false, false);
}

/* Only carol's stream, held while events go by, then cut, on a server without replay:
 * the moderator keeps its input stream, carol fills her gaps from the list. */
static void test_held_and_cut_refetch_moderated(void **state) {
  (void)state;
  run_cuts(MIM_CHAT_MODERATED, 0, true, true);
}

static void test_held_and_cut_refetch_client_only(void **state) {
  (void)state;
  run_cuts(MIM_CHAT_CLIENT_ONLY, 0, true, true);
}

/* ... and with a replay of 2 messages: part of each gap replayed, the rest refetched. */
static void test_held_and_cut_part_replayed_moderated(void **state) {
  (void)state;
  run_cuts(MIM_CHAT_MODERATED, 2, true, true);
}

/* ---- unread counts and deletions ---- */

static mim_client *token_client(const char *chat, mim_chat_mode mode, const char *user) {
  mim_disposable_token *t = NULL;
  mim_status st = mode == MIM_CHAT_MODERATED
                      ? mim_token_generate_moderated(root, CACHE, chat, 600, user, &t)
                      : mim_token_generate_client_only(root, CACHE, chat, 600, user, &t);
  assert_int_equal(st, MIM_OK);
  mim_client *cl = test_client_from_key(t->credential);
  mim_disposable_token_free(t);
  return cl;
}

static view *token_join(const char *chat, mim_chat_mode mode, const char *user) {
  view *v = view_new();
  v->client = token_client(chat, mode, user);
  join_view(v, v->client, chat, user, mode);
  return v;
}

static void expect_unread(view *v, size_t want) {
  size_t n = 99;
  bool exact = false;
  mim_status st = mim_unread_count(v->session, &n, &exact);
  if (st != MIM_OK)
    fail_msg("mim_unread_count: %s %s", mim_status_name(st), mim_last_error_detail());
  assert_int_equal(n, want);
  assert_true(exact);
}

static void run_unread_delete(mim_chat_mode mode) {
  char chat[64];
  new_chat(chat, sizeof chat, mode == MIM_CHAT_MODERATED ? "rd-mod" : "rd-co");
  mim_moderator *mod = NULL;
  if (mode == MIM_CHAT_MODERATED) {
    const char *chats[] = {chat};
    assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, CAP, accept_all, NULL, &mod),
                     MIM_OK);
  }
  view *alice = token_join(chat, mode, "alice");
  view *bob = token_join(chat, mode, "bob");
  char m[4][MIM_MESSAGE_ID_SIZE];
  for (int i = 0; i < 4; i++) {
    assert_int_equal(mim_send(bob->session, i ? "news" : "old", m[i]), MIM_OK);
    assert_true(wait_until(alice, has_msg, m[i]));
  }
  /* Alice has read up to m0: the 3 after it are unread. */
  assert_int_equal(mim_mark_read(alice->session, m[0]), MIM_OK);
  expect_unread(alice, 3);
  /* Bob deletes one of them: it is no longer unread, live... */
  assert_int_equal(mim_delete(bob->session, m[2], NULL), MIM_OK);
  assert_true(wait_until(alice, has_update, m[2]));
  expect_unread(alice, 2);
  /* ... nor for alice joining again, who gets it already deleted from the history. */
  view *again = token_join(chat, mode, "alice");
  expect_unread(again, 2);
  view_free(again);
  view_free(alice);
  view_free(bob);
  if (mod)
    mim_moderator_stop(mod);
}

static void test_unread_after_delete_client_only(void **state) {
  (void)state;
  run_unread_delete(MIM_CHAT_CLIENT_ONLY);
}

static void test_unread_after_delete_moderated(void **state) {
  (void)state;
  run_unread_delete(MIM_CHAT_MODERATED);
}

/* The comparison above tells orders from contents. */
static void test_reactions_compare(void **state) {
  (void)state;
  assert_true(same_reactions("+1:a,b;ok:c", "ok:c;+1:b,a", true));
  assert_false(same_reactions("+1:a,b;ok:c", "ok:c;+1:b,a", false));
  assert_false(same_reactions("+1:a,b;ok:c", "ok:c;+1:a", true));
  assert_false(same_reactions("+1:a;ok:c", "+1:c;ok:a", true));
  assert_false(same_reactions("", "ok:a", true));
  assert_true(same_reactions("", "", true));
}

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reactions_compare),
      cmocka_unit_test(test_joins_during_activity_client_only),
      cmocka_unit_test(test_joins_during_activity_moderated),
      cmocka_unit_test(test_cuts_refetch_client_only),
      cmocka_unit_test(test_cuts_part_replayed_client_only),
      cmocka_unit_test(test_cuts_replayed_moderated),
      cmocka_unit_test(test_held_and_cut_refetch_moderated),
      cmocka_unit_test(test_held_and_cut_refetch_client_only),
      cmocka_unit_test(test_held_and_cut_part_replayed_moderated),
      cmocka_unit_test(test_unread_after_delete_client_only),
      cmocka_unit_test(test_unread_after_delete_moderated),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
