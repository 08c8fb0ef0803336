/* Own messages, trusted senders, replies, edits, deletions and reactions across real
 * clients on mim-local (docs/PROTOCOL.md 3, 4): client-only and moderated (with tokens
 * minted per user), late joiners, author checks, and each change reported once across a
 * stream cut and its gap-fill. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

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
#include <time.h>

#define CACHE "events-test"
#define MAX_RECS 64

static mim_local *srv;
static mim_client *root;

static const char *new_chat(char *buf, size_t n, const char *tag) {
  static atomic_int counter;
  snprintf(buf, n, "ev-%s-%d", tag, atomic_fetch_add(&counter, 1));
  return buf;
}

static int64_t wait_ms(void) {
  return 20000LL * test_time_scale();
}

/* ---- what a session saw ---- */

typedef struct rec {
  bool update; /* on_update (else on_message) */
  mim_update_kind what;
  char id[MIM_MESSAGE_ID_SIZE];
  char text[64];
  char sender[64];
  char publisher[64];
  char reply_to[MIM_MESSAGE_ID_SIZE];
  char reactions[128]; /* "key:user,user;key:user" */
  char raw[512];
  bool mine, trusted, edited, deleted, from_history, known_before;
} rec;

typedef struct seen {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rec recs[MAX_RECS];
  size_t n;
  char expected[MIM_MESSAGE_ID_SIZE]; /* an id the app recorded before sending it */
  char result_id[MIM_MESSAGE_ID_SIZE];
  mim_status result;
  int results;
  int reconnects;
} seen;

static void seen_init(seen *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  cmn_cond_init_monotonic(&s->cv);
}

static void seen_free(seen *s) {
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv);
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

static void record(seen *s, const mim_message *m, bool update, mim_update_kind what) {
  pthread_mutex_lock(&s->mu);
  if (s->n < MAX_RECS && m->kind == MIM_MESSAGE_CHAT) {
    rec *r = &s->recs[s->n++];
    r->update = update;
    r->what = what;
    snprintf(r->id, sizeof r->id, "%s", m->id);
    snprintf(r->text, sizeof r->text, "%s", m->text);
    snprintf(r->sender, sizeof r->sender, "%s", m->sender_id);
    snprintf(r->publisher, sizeof r->publisher, "%s", m->publisher_id);
    snprintf(r->reply_to, sizeof r->reply_to, "%s", m->reply_to);
    snprintf(r->raw, sizeof r->raw, "%.*s", (int)m->raw_len, (const char *)m->raw);
    reactions_str(m, r->reactions, sizeof r->reactions);
    r->mine = m->mine;
    r->trusted = m->sender_trusted;
    r->edited = m->edited;
    r->deleted = m->deleted;
    r->from_history = m->from_history;
    r->known_before = !update && s->expected[0] && strcmp(s->expected, m->id) == 0;
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
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

static void on_send_result(mim_session *session, const char *id, mim_status st, const char *detail,
                           void *user) {
  (void)session, (void)detail;
  seen *s = user;
  pthread_mutex_lock(&s->mu);
  snprintf(s->result_id, sizeof s->result_id, "%s", id);
  s->result = st;
  s->results++;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void on_event(mim_session *session, mim_subscription_state state, mim_status st,
                     const char *detail, void *user) {
  (void)session, (void)st, (void)detail;
  seen *s = user;
  pthread_mutex_lock(&s->mu);
  s->reconnects += state == MIM_SUB_RECONNECTING;
  pthread_mutex_unlock(&s->mu);
}

/* Records for id: messages (update false) or updates of kind what. */
static size_t count(seen *s, const char *id, bool update, int what) {
  size_t k = 0;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++)
    k += !strcmp(s->recs[i].id, id) && s->recs[i].update == update &&
         (!update || what < 0 || (int)s->recs[i].what == what);
  pthread_mutex_unlock(&s->mu);
  return k;
}

/* Waits until n records of id (as count) were seen; false on timeout. */
static bool wait_for(seen *s, const char *id, bool update, int what, size_t n) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  for (;;) {
    if (count(s, id, update, what) >= n)
      return true;
    pthread_mutex_lock(&s->mu);
    int err = pthread_cond_timedwait(&s->cv, &s->mu, &until);
    pthread_mutex_unlock(&s->mu);
    if (err == ETIMEDOUT)
      return count(s, id, update, what) >= n;
  }
}

/* The last record of id of this kind (copied). */
static rec last(seen *s, const char *id, bool update) {
  rec r;
  memset(&r, 0, sizeof r);
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++)
    if (!strcmp(s->recs[i].id, id) && s->recs[i].update == update)
      r = s->recs[i];
  pthread_mutex_unlock(&s->mu);
  return r;
}

static size_t updates(seen *s) {
  size_t k = 0;
  pthread_mutex_lock(&s->mu);
  for (size_t i = 0; i < s->n; i++)
    k += s->recs[i].update;
  pthread_mutex_unlock(&s->mu);
  return k;
}

static mim_session *join_as(mim_client *cl, const char *chat, const char *name, const char *uid,
                            mim_chat_mode mode, seen *s) {
  mim_join_options o = MIM_JOIN_OPTIONS_INIT;
  o.display_name = name;
  o.user_id = uid;
  o.mode = mode;
  o.on_update = on_update;
  o.on_send_result = on_send_result;
  o.on_event = on_event;
  o.initial_history = 50;
  mim_session *session = NULL;
  mim_status st = mim_join(cl, CACHE, chat, &o, on_message, s, &session);
  if (st != MIM_OK)
    fail_msg("mim_join(%s): %s %s", chat, mim_status_name(st), mim_last_error_detail());
  return session;
}

/* Sends text from session and waits until s saw it: what was published before on the
 * same topic has been delivered by then. */
static void sync_on(mim_session *session, seen *s) {
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(session, "sentinel", id), MIM_OK);
  assert_true(wait_for(s, id, false, -1, 1));
}

/* sync_on for two sessions' views. */
static void sync_both(mim_session *session, seen *s1, seen *s2) {
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(session, "sentinel", id), MIM_OK);
  assert_true(wait_for(s1, id, false, -1, 1));
  assert_true(wait_for(s2, id, false, -1, 1));
}

/* ---- own messages ---- */

static void test_own_ids_and_mine(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "own");
  seen a, b;
  seen_init(&a);
  seen_init(&b);
  mim_session *sa = join_as(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, &a);
  mim_session *sb = join_as(root, chat, "Bob", NULL, MIM_CHAT_CLIENT_ONLY, &b);
  /* The app records the id before sending: its first callback for it knows it. */
  char id[MIM_MESSAGE_ID_SIZE], out[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_message_id_new(id), MIM_OK);
  pthread_mutex_lock(&a.mu);
  snprintf(a.expected, sizeof a.expected, "%s", id);
  pthread_mutex_unlock(&a.mu);
  mim_send_options so = MIM_SEND_OPTIONS_INIT;
  so.id = id;
  assert_int_equal(mim_send_with_options(sa, "hello", &so, out), MIM_OK);
  assert_string_equal(out, id);
  assert_true(wait_for(&a, id, false, -1, 1));
  assert_true(wait_for(&b, id, false, -1, 1));
  rec ra = last(&a, id, false), rb = last(&b, id, false);
  assert_true(ra.known_before);
  assert_true(ra.mine);
  assert_false(rb.mine);
  assert_string_equal(ra.sender, "alice");
  assert_string_equal(rb.sender, "alice");
  assert_false(rb.trusted);
  /* A reply; bob's user id defaults to his display name. */
  char reply[MIM_MESSAGE_ID_SIZE];
  mim_send_options ro = MIM_SEND_OPTIONS_INIT;
  ro.reply_to = id;
  assert_int_equal(mim_send_with_options(sb, "hi back", &ro, reply), MIM_OK);
  assert_true(wait_for(&a, reply, false, -1, 1));
  assert_true(wait_for(&b, reply, false, -1, 1));
  ra = last(&a, reply, false);
  rb = last(&b, reply, false);
  assert_string_equal(ra.reply_to, id);
  assert_string_equal(ra.sender, "Bob");
  assert_false(ra.mine);
  assert_true(rb.mine);
  /* History says the same. */
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sa, 0, &h), MIM_OK);
  assert_int_equal(h->count, 2);
  assert_true(h->messages[0].mine);
  assert_false(h->messages[1].mine);
  assert_string_equal(h->messages[1].reply_to, id);
  assert_string_equal(h->messages[1].sender_id, "Bob");
  assert_int_equal(h->messages[1].version, 2);
  mim_message_list_free(h);
  /* A user id must be 1..128 bytes of UTF-8. */
  mim_join_options jo = MIM_JOIN_OPTIONS_INIT;
  mim_session *bad = NULL;
  char long_uid[130];
  memset(long_uid, 'u', 129);
  long_uid[129] = '\0';
  const char *bad_uids[] = {"", long_uid, "\xff"};
  for (int i = 0; i < 3; i++) {
    jo.user_id = bad_uids[i];
    assert_int_equal(mim_join(root, CACHE, chat, &jo, on_message, &a, &bad),
                     MIM_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(mim_last_error_detail(), "user_id"));
  }
  /* A bad caller id is refused before anything is queued. */
  so.id = "";
  assert_int_equal(mim_send_with_options(sa, "x", &so, NULL), MIM_ERR_INVALID_ARGUMENT);
  mim_leave(sa);
  mim_leave(sb);
  seen_free(&a);
  seen_free(&b);
}

/* ---- events, client-only ---- */

static void test_events_client_only(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "fold");
  seen a, b, c;
  seen_init(&a);
  seen_init(&b);
  seen_init(&c);
  mim_session *sa = join_as(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, &a);
  mim_session *sb = join_as(root, chat, "Bob", "bob", MIM_CHAT_CLIENT_ONLY, &b);
  char m1[MIM_MESSAGE_ID_SIZE], m2[MIM_MESSAGE_ID_SIZE], ev[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(sa, "first", m1), MIM_OK);
  assert_int_equal(mim_send(sa, "second", m2), MIM_OK);
  assert_true(wait_for(&b, m2, false, -1, 1));
  assert_true(wait_for(&a, m2, false, -1, 1));
  /* Bob may not edit or delete alice's message: refused locally. */
  assert_int_equal(mim_edit(sb, m1, "mine now", ev), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_delete(sb, m1, ev), MIM_ERR_PERMISSION_DENIED);
  /* A forged edit written raw under bob's own uid: readers ignore it. */
  char forged[400];
  snprintf(forged, sizeof forged,
           "{\"v\":2,\"t\":\"edit\",\"id\":\"forged-1\",\"from\":\"Bob\",\"uid\":\"bob\","
           "\"ts\":1,\"ref\":\"%s\",\"text\":\"forged\"}",
           m1);
  assert_int_equal(mim_list_push_back(root, CACHE, chat, forged, strlen(forged), NULL, NULL),
                   MIM_OK);
  assert_int_equal(mim_topic_publish_text(root, CACHE, chat, forged), MIM_OK);
  assert_int_equal(mim_edit(sa, m1, "first, edited", ev), MIM_OK);
  assert_int_equal(mim_react(sb, m1, "+1", true, NULL), MIM_OK);
  assert_int_equal(mim_react(sa, m1, "+1", true, NULL), MIM_OK);
  assert_int_equal(mim_react(sb, m1, "+1", true, NULL), MIM_OK); /* no change */
  assert_int_equal(mim_delete(sa, m2, NULL), MIM_OK);
  sync_on(sa, &b);
  sync_on(sb, &a);
  seen *both[] = {&a, &b};
  for (int k = 0; k < 2; k++) {
    seen *s = both[k];
    assert_int_equal(count(s, m1, true, MIM_UPDATE_EDITED), 1);
    assert_int_equal(count(s, m1, true, MIM_UPDATE_REACTIONS), 2);
    assert_int_equal(count(s, m2, true, MIM_UPDATE_DELETED), 1);
    assert_int_equal(updates(s), 4);
    rec r = last(s, m1, true);
    assert_string_equal(r.text, "first, edited");
    assert_true(r.edited);
    assert_string_equal(r.reactions, "+1:bob,alice");
    assert_int_equal(r.mine, k == 0);
    r = last(s, m2, true);
    assert_true(r.deleted);
    assert_string_equal(r.text, "");
  }
  /* A late joiner gets the folded state, and no on_update for the past. */
  mim_session *sc = join_as(root, chat, "Carol", "carol", MIM_CHAT_CLIENT_ONLY, &c);
  rec r = last(&c, m1, false);
  assert_string_equal(r.text, "first, edited");
  assert_true(r.edited);
  assert_true(r.from_history);
  assert_string_equal(r.reactions, "+1:bob,alice");
  assert_true(last(&c, m2, false).deleted);
  assert_int_equal(updates(&c), 0);
  /* So does its history, which lists messages only. */
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sc, 0, &h), MIM_OK);
  assert_int_equal(h->count, 4); /* m1, m2 and two sentinels */
  assert_string_equal(h->messages[0].text, "first, edited");
  assert_int_equal(h->messages[0].n_reactions, 1);
  assert_int_equal(h->messages[0].reactions[0].count, 2);
  assert_string_equal(h->messages[0].reactions[0].users[1], "alice");
  assert_true(h->messages[1].deleted);
  mim_message_list_free(h);
  mim_leave(sc);
  mim_leave(sa);
  mim_leave(sb);
  seen_free(&a);
  seen_free(&b);
  seen_free(&c);
}

/* ---- moderated: trusted senders ---- */

static atomic_int forwards;

static mim_moderation_verdict pass(const mim_message *m, char **new_text, void *user) {
  (void)new_text, (void)user;
  /* Edits reach the filter too, marked as edits. */
  if (m->edited && strstr(m->text, "bad"))
    return MIM_MODERATION_REJECT;
  return MIM_MODERATION_ACCEPT;
}

static void on_forward(mim_moderator *m, const char *chat, const char *id, mim_status st,
                       const char *detail, void *user) {
  (void)m, (void)chat, (void)id, (void)st, (void)detail, (void)user;
  atomic_fetch_add(&forwards, 1);
}

/* Waits until n forwards were reported (the report follows the publish, which readers
 * may have seen first). */
static bool wait_forwards(int n) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  while (atomic_load(&forwards) < n) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec > until.tv_sec || (now.tv_sec == until.tv_sec && now.tv_nsec >= until.tv_nsec))
      return false;
    nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
  }
  return atomic_load(&forwards) == n;
}

static mim_client *member(const char *chat, const char *token_id) {
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_moderated(root, CACHE, chat, 600, token_id, &t), MIM_OK);
  mim_client *cl = test_client_from_key(t->credential);
  mim_disposable_token_free(t);
  return cl;
}

/* Waits for the result of the send of id (on_send_result). */
static mim_status wait_result(seen *s, const char *id) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  pthread_mutex_lock(&s->mu);
  int err = 0;
  while (strcmp(s->result_id, id) != 0 && err != ETIMEDOUT)
    err = pthread_cond_timedwait(&s->cv, &s->mu, &until);
  mim_status st = strcmp(s->result_id, id) == 0 ? s->result : MIM_ERR_DEADLINE_EXCEEDED;
  pthread_mutex_unlock(&s->mu);
  return st;
}

static void test_moderated_trusted_senders(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "mod");
  const char *chats[] = {chat};
  mim_moderator_options mo = MIM_MODERATOR_OPTIONS_INIT;
  mo.on_forward_result = on_forward;
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start_with_options(root, CACHE, chats, 1, &mo, pass, NULL, &mod),
                   MIM_OK);
  atomic_store(&forwards, 0);
  mim_client *ca = member(chat, "alice"), *cb = member(chat, "bob"), *cc = member(chat, "carol");
  seen a, b, c;
  seen_init(&a);
  seen_init(&b);
  seen_init(&c);
  mim_session *sa = join_as(ca, chat, "Alice", "alice", MIM_CHAT_MODERATED, &a);
  /* Bob claims to be alice: the moderator vouches for his token id instead. */
  mim_session *sb = join_as(cb, chat, "Bob", "alice", MIM_CHAT_MODERATED, &b);
  char m1[MIM_MESSAGE_ID_SIZE], ev[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(sa, "from alice", m1), MIM_OK);
  assert_true(wait_for(&b, m1, false, -1, 1));
  assert_true(wait_for(&a, m1, false, -1, 1));
  rec r = last(&b, m1, false);
  assert_string_equal(r.sender, "alice");
  assert_true(r.trusted);
  assert_string_equal(r.publisher, "alice");
  assert_true(last(&a, m1, false).mine);
  /* Bob's session does not know its token id yet, so it sends; the moderator drops it. */
  assert_int_equal(mim_edit(sb, m1, "hijacked", ev), MIM_OK);
  assert_int_equal(wait_result(&b, ev), MIM_OK);
  /* The same, raw on C-input with alice's uid and a forged pub. */
  char input[80], forged[400];
  snprintf(input, sizeof input, "%s-input", chat);
  snprintf(forged, sizeof forged,
           "{\"v\":2,\"t\":\"delete\",\"id\":\"forged-2\",\"from\":\"Alice\",\"uid\":\"alice\","
           "\"pub\":\"alice\",\"ts\":1,\"ref\":\"%s\"}",
           m1);
  assert_int_equal(mim_topic_publish_text(cb, CACHE, input, forged), MIM_OK);
  /* Alice's own edit passes the filter and the author check; one rejected by the filter
   * does not. */
  assert_int_equal(mim_edit(sa, m1, "bad words", NULL), MIM_OK);
  assert_int_equal(mim_edit(sa, m1, "from alice, edited", ev), MIM_OK);
  assert_int_equal(mim_react(sb, m1, "wow", true, NULL), MIM_OK);
  sync_on(sa, &b);
  sync_both(sb, &a, &b);
  seen *both[] = {&a, &b};
  for (int k = 0; k < 2; k++) {
    assert_int_equal(count(both[k], m1, true, MIM_UPDATE_EDITED), 1);
    assert_int_equal(count(both[k], m1, true, MIM_UPDATE_DELETED), 0);
    assert_int_equal(count(both[k], m1, true, MIM_UPDATE_REACTIONS), 1);
    r = last(both[k], m1, true);
    assert_string_equal(r.text, "from alice, edited");
    assert_string_equal(r.reactions, "wow:bob");
    assert_true(r.trusted);
  }
  /* Now bob's session knows its token id ("bob", from its sentinel): refused locally. */
  assert_int_equal(mim_delete(sb, m1, NULL), MIM_ERR_PERMISSION_DENIED);
  /* Forwarded: m1, alice's edit, bob's react, two sentinels (not the dropped events, not
   * the filtered edit). */
  assert_true(wait_forwards(5));
  /* History: trusted senders and the folded state, for a late joiner too. */
  mim_session *sc = join_as(cc, chat, "Carol", "carol", MIM_CHAT_MODERATED, &c);
  r = last(&c, m1, false);
  assert_true(r.from_history);
  assert_string_equal(r.sender, "alice");
  assert_string_equal(r.publisher, "alice");
  assert_true(r.trusted);
  assert_string_equal(r.text, "from alice, edited");
  assert_int_equal(updates(&c), 0);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sc, 0, &h), MIM_OK);
  assert_string_equal(h->messages[0].sender_id, "alice");
  assert_true(h->messages[0].sender_trusted);
  assert_string_equal(h->messages[h->count - 1].sender_id, "bob"); /* bob's sentinel */
  mim_message_list_free(h);
  mim_leave(sc);
  mim_leave(sa);
  mim_leave(sb);
  mim_moderator_stop(mod);
  /* A new moderator learns the senders from the list: alice may still edit, bob not. */
  assert_int_equal(mim_moderator_start_with_options(root, CACHE, chats, 1, &mo, pass, NULL, &mod),
                   MIM_OK);
  seen_free(&a);
  seen_init(&a);
  sa = join_as(ca, chat, "Alice", "alice", MIM_CHAT_MODERATED, &a);
  snprintf(forged, sizeof forged,
           "{\"v\":2,\"t\":\"edit\",\"id\":\"forged-3\",\"from\":\"Bob\",\"uid\":\"bob\","
           "\"ts\":1,\"ref\":\"%s\",\"text\":\"again\"}",
           m1);
  assert_int_equal(mim_topic_publish_text(cb, CACHE, input, forged), MIM_OK);
  assert_int_equal(mim_edit(sa, m1, "after restart", NULL), MIM_OK);
  sync_on(sa, &a);
  assert_int_equal(count(&a, m1, true, MIM_UPDATE_EDITED), 1);
  assert_string_equal(last(&a, m1, true).text, "after restart");
  mim_leave(sa);
  mim_moderator_stop(mod);
  mim_client_free(ca);
  mim_client_free(cb);
  mim_client_free(cc);
  seen_free(&a);
  seen_free(&b);
  seen_free(&c);
}

/* ---- exactly once across a stream cut and a gap-fill ---- */

static void test_changes_once_across_gap_fill(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .replay = 0, .set_replay = 1, .heartbeat_ms = 500};
  mim_local *s2 = NULL;
  assert_int_equal(mim_local_start(&o, &s2), 0);
  mim_client *ca = test_client_from_key(s2->root_key), *cb = test_client_from_key(s2->root_key);
  seen a, b;
  seen_init(&a);
  seen_init(&b);
  mim_session *sa = join_as(ca, "gap", "Alice", "alice", MIM_CHAT_CLIENT_ONLY, &a);
  mim_session *sb = join_as(cb, "gap", "Bob", "bob", MIM_CHAT_CLIENT_ONLY, &b);
  char m1[MIM_MESSAGE_ID_SIZE], m2[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(sa, "one", m1), MIM_OK);
  assert_true(wait_for(&b, m1, false, -1, 1));
  /* Cut every stream (replay 0: the receiver sees a discontinuity and refetches the
   * list, which holds the events and m1 again), and change things meanwhile. */
  assert_int_equal(mim_local_signal(s2, SIGUSR1), 0);
  assert_int_equal(mim_edit(sa, m1, "one, edited", NULL), MIM_OK);
  assert_int_equal(mim_react(sa, m1, "+1", true, NULL), MIM_OK);
  assert_int_equal(mim_send(sa, "two", m2), MIM_OK);
  assert_int_equal(mim_react(sa, m2, "ok", true, NULL), MIM_OK);
  sync_on(sa, &b);
  pthread_mutex_lock(&b.mu);
  int reconnects = b.reconnects;
  pthread_mutex_unlock(&b.mu);
  assert_true(reconnects > 0);
  assert_int_equal(count(&b, m1, false, -1), 1);
  assert_int_equal(count(&b, m1, true, MIM_UPDATE_EDITED), 1);
  assert_int_equal(count(&b, m1, true, MIM_UPDATE_REACTIONS), 1);
  assert_int_equal(count(&b, m2, false, -1), 1);
  /* m2 arrives with or without its reaction folded in, and the change is reported once
   * either way. */
  rec r2 = last(&b, m2, false);
  size_t m2_updates = count(&b, m2, true, -1);
  assert_int_equal(m2_updates + (r2.reactions[0] != '\0'), 1);
  /* A repeat of an event (a retried publish) changes nothing. */
  rec r = last(&b, m1, true);
  assert_true(r.raw[0] == '{');
  assert_int_equal(mim_topic_publish_text(ca, CACHE, "gap", r.raw), MIM_OK);
  sync_on(sa, &b);
  assert_int_equal(count(&b, m1, true, -1), 2);
  assert_string_equal(last(&b, m1, true).text, "one, edited");
  mim_leave(sa);
  mim_leave(sb);
  mim_client_free(ca);
  mim_client_free(cb);
  assert_int_equal(mim_local_stop(s2), 0);
  seen_free(&a);
  seen_free(&b);
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
      cmocka_unit_test(test_own_ids_and_mine),
      cmocka_unit_test(test_events_client_only),
      cmocka_unit_test(test_moderated_trusted_senders),
      cmocka_unit_test(test_changes_once_across_gap_fill),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
