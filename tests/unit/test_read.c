/* Read markers (docs/PROTOCOL.md section 6) with two real users against mim-local, in
 * both modes (the moderated one through a running moderator), each user with its own
 * token from the seed policies: unread counts after a join (exact and inexact), mark
 * read, counts that grow with others' live messages and not with one's own, read
 * receipts, a token without the chat's read-marker permission refused, the blocking
 * calls refused from a callback; and the record alone (lib/read.c): its bound and
 * deleted messages. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "clock.h"
#include "read.h"
#include "test_client.h"
#include "test_clock.h"

#include <errno.h>
#include <momento/im.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "instant-messaging"
#define MAX_IDS 64

static mim_local *srv;
static mim_client *root;

static int setup(void **state) {
  (void)state;
  const char *const caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

static int wait_ms(void) {
  return 10000 * test_time_scale();
}

/* ---- a user: token, client, session, and what it was delivered ---- */

typedef struct user {
  const char *id;
  mim_client *client;
  mim_session *session;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  size_t n;
  char ids[MAX_IDS][MIM_MESSAGE_ID_SIZE];
  /* In-callback probes, set by the test, their results by the callback. */
  atomic_bool probe;
  mim_status probe_mark, probe_count;
} user;

static void on_message(mim_session *s, const mim_message *m, void *arg) {
  user *u = arg;
  if (atomic_load(&u->probe)) {
    size_t count;
    u->probe_mark = mim_mark_read(s, m->id);
    u->probe_count = mim_unread_count(s, &count, NULL);
  }
  pthread_mutex_lock(&u->mu);
  if (u->n < MAX_IDS)
    snprintf(u->ids[u->n++], MIM_MESSAGE_ID_SIZE, "%s", m->id);
  pthread_cond_broadcast(&u->cv);
  pthread_mutex_unlock(&u->mu);
}

static bool has_id_locked(const user *u, const char *id) {
  for (size_t i = 0; i < u->n; i++)
    if (strcmp(u->ids[i], id) == 0)
      return true;
  return false;
}

/* Waits until u was delivered message id. */
static bool wait_for(user *u, const char *id) {
  struct timespec until = cmn_deadline_after_ms(wait_ms());
  pthread_mutex_lock(&u->mu);
  int rc = 0;
  while (!has_id_locked(u, id) && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&u->cv, &u->mu, &until);
  bool ok = has_id_locked(u, id);
  pthread_mutex_unlock(&u->mu);
  return ok;
}

static mim_client *client_for(const char *chat, mim_chat_mode mode, const char *user_id) {
  mim_disposable_token *t = NULL;
  mim_status st = mode == MIM_CHAT_MODERATED
                      ? mim_token_generate_moderated(root, CACHE, chat, 600, user_id, &t)
                      : mim_token_generate_client_only(root, CACHE, chat, 600, user_id, &t);
  assert_int_equal(st, MIM_OK);
  mim_client *c = test_client_from_key(t->credential);
  mim_disposable_token_free(t);
  return c;
}

/* Joins as user id (also the display name: until envelopes carry "uid", a message's
 * sender_id is its `from`); with explicit_id the id is given as user_id too. */
static void join_as(user *u, mim_client *c, const char *chat, mim_chat_mode mode,
                    uint32_t initial_history, bool explicit_id) {
  pthread_mutex_init(&u->mu, NULL);
  cmn_cond_init_monotonic(&u->cv);
  u->client = c;
  mim_join_options o = MIM_JOIN_OPTIONS_INIT;
  o.display_name = u->id;
  o.user_id = explicit_id ? u->id : NULL;
  o.mode = mode;
  o.initial_history = initial_history;
  mim_status st = mim_join(c, CACHE, chat, &o, on_message, u, &u->session);
  if (st != MIM_OK)
    fail_msg("mim_join(%s) as %s: %s %s", chat, u->id, mim_status_name(st),
             mim_last_error_detail());
}

static void user_join(user *u, const char *id, const char *chat, mim_chat_mode mode,
                      uint32_t initial_history, bool explicit_id) {
  memset(u, 0, sizeof *u);
  u->id = id;
  join_as(u, client_for(chat, mode, id), chat, mode, initial_history, explicit_id);
}

static void user_leave(user *u) {
  mim_leave(u->session);
  mim_client_free(u->client);
  pthread_cond_destroy(&u->cv);
  pthread_mutex_destroy(&u->mu);
}

/* Sends text from `from` and waits until every user in `to` (NULL-terminated) got it. */
static void send_wait(user *from, const char *text, user *const *to, char id[MIM_MESSAGE_ID_SIZE]) {
  assert_int_equal(mim_send(from->session, text, id), MIM_OK);
  for (size_t i = 0; to[i]; i++)
    assert_true(wait_for(to[i], id));
}

static void expect_unread(user *u, size_t want, bool want_exact) {
  size_t n = 99;
  bool exact = !want_exact;
  mim_status st = mim_unread_count(u->session, &n, &exact);
  if (st != MIM_OK)
    fail_msg("mim_unread_count(%s): %s %s", u->id, mim_status_name(st), mim_last_error_detail());
  assert_int_equal(n, want);
  assert_int_equal(exact, want_exact);
}

static const mim_read_marker *marker_of(const mim_read_marker_list *l, const char *user_id) {
  for (size_t i = 0; i < l->count; i++)
    if (strcmp(l->markers[i].user_id, user_id) == 0)
      return &l->markers[i];
  return NULL;
}

static void new_chat(char *buf, size_t cap, const char *tag) {
  static int seq;
  snprintf(buf, cap, "read-%s-%d-%lld", tag, ++seq, (long long)cmn_wall_ms());
}

/* ---- two users, either mode ---- */

static mim_moderation_verdict accept_all(const mim_message *m, char **new_text, void *user) {
  (void)m, (void)new_text, (void)user;
  return MIM_MODERATION_ACCEPT;
}

static void two_users(mim_chat_mode mode) {
  char chat[96];
  new_chat(chat, sizeof chat, mode == MIM_CHAT_MODERATED ? "mod" : "client");
  mim_moderator *mod = NULL;
  if (mode == MIM_CHAT_MODERATED) {
    const char *chats[] = {chat};
    assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 100, accept_all, NULL, &mod),
                     MIM_OK);
  }
  user a, b;
  user_join(&a, "alice", chat, mode, 20, mode == MIM_CHAT_MODERATED);
  user_join(&b, "bob", chat, mode, 20, mode != MIM_CHAT_MODERATED);
  user *both[] = {&a, &b, NULL};
  char a1[MIM_MESSAGE_ID_SIZE], a2[MIM_MESSAGE_ID_SIZE], a3[MIM_MESSAGE_ID_SIZE];
  char a4[MIM_MESSAGE_ID_SIZE], b1[MIM_MESSAGE_ID_SIZE], b2[MIM_MESSAGE_ID_SIZE];
  send_wait(&a, "one", both, a1);
  send_wait(&a, "two", both, a2);
  send_wait(&a, "three", both, a3);
  send_wait(&b, "four", both, b1);

  /* No marker yet: every message from the other user counts, inexact. */
  expect_unread(&b, 3, false);
  expect_unread(&a, 1, false);
  assert_int_equal(mim_mark_read(b.session, a2), MIM_OK);
  expect_unread(&b, 1, true); /* a3; b1 is bob's own */
  /* Live messages: the other user's count, one's own do not. */
  send_wait(&a, "five", both, a4);
  expect_unread(&b, 2, true);
  send_wait(&b, "six", both, b2);
  expect_unread(&b, 2, true);
  expect_unread(&a, 2, false);
  assert_int_equal(mim_mark_read(a.session, b2), MIM_OK);
  expect_unread(&a, 0, true);

  /* Read receipts: both markers, as written. */
  int64_t before = cmn_wall_ms();
  mim_read_marker_list *l = NULL;
  assert_int_equal(mim_read_markers(b.session, &l), MIM_OK);
  assert_int_equal(l->count, 2);
  const mim_read_marker *ma = marker_of(l, "alice"), *mb = marker_of(l, "bob");
  assert_non_null(ma);
  assert_non_null(mb);
  assert_string_equal(ma->message_id, b2);
  assert_string_equal(mb->message_id, a2);
  assert_true(mb->read_at_ms > before - 60000 && mb->read_at_ms <= before);
  mim_read_marker_list_free(l);

  /* Bob joins again (a new session, as after a restart): the marker comes from the
   * dictionary. With the whole history the count is exact (a3, a4); when the join shows
   * only the newest 3 (b1, a4, b2) the marked message is not among them: inexact. */
  user b_all, b_few;
  user_join(&b_all, "bob", chat, mode, 20, true);
  user_join(&b_few, "bob", chat, mode, 3, false);
  assert_true(wait_for(&b_all, b2));
  assert_true(wait_for(&b_few, b2));
  expect_unread(&b_all, 2, true);
  expect_unread(&b_few, 1, false);
  user_leave(&b_all);
  user_leave(&b_few);

  user_leave(&a);
  user_leave(&b);
  mim_moderator_stop(mod);
}

static void test_two_users_client_only(void **state) {
  (void)state;
  two_users(MIM_CHAT_CLIENT_ONLY);
}

static void test_two_users_moderated(void **state) {
  (void)state;
  two_users(MIM_CHAT_MODERATED);
}

/* A token whose read-marker grant is another chat's joins and chats, but its markers
 * are refused by the server; so are those of a 0.2 token, which has none. */
static void test_other_chat_token_refused(void **state) {
  (void)state;
  char chat[96], other[96], other_read[112];
  new_chat(chat, sizeof chat, "perm");
  new_chat(other, sizeof other, "perm-other");
  snprintf(other_read, sizeof other_read, "%s-read", other);
  mim_permissions *p = mim_permissions_new();
  assert_non_null(p);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_WRITE, CACHE, chat, false), MIM_OK);
  assert_int_equal(mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, chat, false),
                   MIM_OK);
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate(root, p, 600, "eve", &t), MIM_OK); /* a 0.2 token */
  mim_client *old = test_client_from_key(t->credential);
  mim_disposable_token_free(t);
  assert_int_equal(mim_permissions_add_cache(p, MIM_CACHE_READ_WRITE, CACHE, other_read, false),
                   MIM_OK);
  assert_int_equal(mim_token_generate(root, p, 600, "eve", &t), MIM_OK);
  mim_client *wrong = test_client_from_key(t->credential);
  mim_disposable_token_free(t);
  mim_permissions_free(p);

  mim_client *clients[] = {old, wrong};
  for (int i = 0; i < 2; i++) {
    user e;
    memset(&e, 0, sizeof e);
    e.id = "eve";
    join_as(&e, clients[i], chat, MIM_CHAT_CLIENT_ONLY, 20, true);
    user *self[] = {&e, NULL};
    char id[MIM_MESSAGE_ID_SIZE];
    send_wait(&e, "still chatting", self, id);
    assert_int_equal(mim_mark_read(e.session, id), MIM_ERR_PERMISSION_DENIED);
    size_t n = 7;
    assert_int_equal(mim_unread_count(e.session, &n, NULL), MIM_ERR_PERMISSION_DENIED);
    assert_int_equal(n, 0);
    mim_read_marker_list *l = NULL;
    assert_int_equal(mim_read_markers(e.session, &l), MIM_ERR_PERMISSION_DENIED);
    assert_null(l);
    user_leave(&e);
  }
}

/* From a callback: mark read and a first count (both need the network) are refused;
 * once the marker is known the count is local and allowed there. */
static void test_from_callback(void **state) {
  (void)state;
  char chat[96];
  new_chat(chat, sizeof chat, "cb");
  user a;
  user_join(&a, "alice", chat, MIM_CHAT_CLIENT_ONLY, 20, false);
  user *self[] = {&a, NULL};
  char id[MIM_MESSAGE_ID_SIZE];
  atomic_store(&a.probe, true);
  send_wait(&a, "x", self, id);
  assert_int_equal(a.probe_mark, MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(a.probe_count, MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(mim_mark_read(a.session, id), MIM_OK);
  send_wait(&a, "y", self, id);
  assert_int_equal(a.probe_mark, MIM_ERR_FAILED_PRECONDITION);
  assert_int_equal(a.probe_count, MIM_OK);
  atomic_store(&a.probe, false);
  user_leave(&a);
}

static void test_bad_arguments(void **state) {
  (void)state;
  size_t n;
  mim_read_marker_list *l;
  assert_int_equal(mim_mark_read(NULL, "x"), MIM_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(mim_last_error_detail(), "mim_mark_read: "));
  assert_int_equal(mim_unread_count(NULL, &n, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_read_markers(NULL, &l), MIM_ERR_INVALID_ARGUMENT);
  char chat[96];
  new_chat(chat, sizeof chat, "args");
  user a;
  user_join(&a, "alice", chat, MIM_CHAT_CLIENT_ONLY, 20, false);
  char long_id[80];
  memset(long_id, 'x', 65);
  long_id[65] = '\0';
  assert_int_equal(mim_mark_read(a.session, long_id), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_mark_read(a.session, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_mark_read(a.session, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_mark_read(a.session, "\xff"), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_unread_count(a.session, NULL, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_read_markers(a.session, NULL), MIM_ERR_INVALID_ARGUMENT);
  /* Values that are not markers are skipped by read receipts. */
  char dict[112];
  snprintf(dict, sizeof dict, "%s-read", chat);
  const char *bad[] = {"not json", "[1]", "{\"v\":1,\"id\":\"\",\"ts\":1}",
                       "{\"v\":1,\"id\":\"m\"}", "{\"v\":0,\"id\":\"m\",\"ts\":1}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char field[8];
    snprintf(field, sizeof field, "u%zu", i);
    assert_int_equal(mim_dictionary_set_field(root, CACHE, dict, field, strlen(field), bad[i],
                                              strlen(bad[i]), NULL),
                     MIM_OK);
  }
  const char *good = "{\"v\":1,\"id\":\"m\",\"ts\":5}"; /* under a field that is no user id */
  assert_int_equal(mim_dictionary_set_field(root, CACHE, dict, "\xff", 1, good, strlen(good), NULL),
                   MIM_OK);
  assert_int_equal(mim_mark_read(a.session, "m1"), MIM_OK);
  assert_int_equal(mim_read_markers(a.session, &l), MIM_OK);
  assert_int_equal(l->count, 1);
  assert_string_equal(l->markers[0].user_id, "alice");
  assert_string_equal(l->markers[0].message_id, "m1");
  mim_read_marker_list_free(l);
  mim_read_marker_list_free(NULL);
  user_leave(&a);
}

/* ---- the record alone ---- */

static void note(mim_read *r, const char *id, const char *sender, bool mine) {
  mim_message m = {
      .kind = MIM_MESSAGE_CHAT, .id = id, .from = sender, .sender_id = sender, .mine = mine};
  mim_read_note(r, &m);
}

static void note_deleted(mim_read *r, const char *id) {
  mim_message m = {
      .kind = MIM_MESSAGE_CHAT, .id = id, .from = "you", .sender_id = "you", .deleted = true};
  mim_read_note(r, &m);
}

static void test_record(void **state) {
  (void)state;
  mim_read *r = mim_read_new("chat", "me");
  assert_non_null(r);
  size_t n = 0;
  bool exact = true;
  assert_false(mim_read_count(r, &n, &exact)); /* the marker is not known yet */
  note(r, "m1", "you", false);
  note(r, "m2", "me", false); /* own user id */
  note(r, "m3", "you", true); /* sent by this session */
  note(r, "m4", "you", false);
  note_deleted(r, "m5"); /* delivered already deleted: has a place, does not count */
  mim_message foreign = {.kind = MIM_MESSAGE_FOREIGN, .id = "", .from = ""};
  mim_read_note(r, &foreign); /* not a chat message: not recorded */
  mim_read_set_marker(r, NULL, true);
  assert_true(mim_read_count(r, &n, &exact));
  assert_int_equal(n, 2);
  assert_false(exact);
  mim_read_set_marker(r, "m1", false);
  mim_read_set_marker(r, "m4", true); /* a fetched marker never replaces a known one */
  assert_true(mim_read_count(r, &n, &exact));
  assert_int_equal(n, 1);
  assert_true(exact);
  mim_read_forget(r, "m4"); /* deleted: no longer counts */
  mim_read_forget(r, "unknown");
  assert_true(mim_read_count(r, &n, &exact));
  assert_int_equal(n, 0);
  /* The record is bounded: the marked message falls out of it, the count turns inexact
   * and stays at the bound. */
  for (unsigned i = 0; i < MIM_READ_RECORD_CAP + 10; i++) {
    char id[16];
    snprintf(id, sizeof id, "x%u", i);
    note(r, id, "you", false);
  }
  assert_true(mim_read_count(r, &n, &exact));
  assert_int_equal(n, MIM_READ_RECORD_CAP);
  assert_false(exact);
  mim_read_set_marker(r, "x1030", false);
  assert_true(mim_read_count(r, &n, &exact));
  assert_int_equal(n, 3);
  assert_true(exact);
  mim_read_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_record),
      cmocka_unit_test(test_two_users_client_only),
      cmocka_unit_test(test_two_users_moderated),
      cmocka_unit_test(test_other_chat_token_refused),
      cmocka_unit_test(test_from_callback),
      cmocka_unit_test(test_bad_arguments),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
