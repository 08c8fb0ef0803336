/* Direct chats (lib/direct.c): the chat id against vectors computed independently, and
 * the direct tokens against mim-local: two users chat in both modes, a third user's
 * direct token cannot reach their chat, the moderator sees each token id as sender. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "test_client.h"
#include "waiter.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CACHE "direct-test"
#define WAIT_MS 20000
#define MAX_SEEN 16

static mim_local *srv;
static mim_client *root;

/* ---- the id ---- */

/* Expected values computed with Python, independently of the library:
 *   def dm(a, b):
 *       x, y = sorted([a.encode(), b.encode()])
 *       return "dm-" + hashlib.sha256(x + b"\0" + y).hexdigest()[:32] */
static void expect_id(const char *a, const char *b, const char *want) {
  char out[MIM_DIRECT_CHAT_ID_SIZE];
  assert_int_equal(mim_direct_chat_id(a, b, out), MIM_OK);
  assert_string_equal(out, want);
  assert_int_equal(strlen(out), MIM_DIRECT_CHAT_ID_SIZE - 1);
  assert_int_equal(mim_direct_chat_id(b, a, out), MIM_OK); /* symmetric */
  assert_string_equal(out, want);
}

static void test_id_vectors(void **state) {
  (void)state;
  expect_id("alice", "bob", "dm-141a4cd242b67e82edf4a78bb418d40a");
  expect_id("alice", "alice", "dm-88a5bf19f44998f705915407892fe1fb");
  /* A proper prefix is smaller: "ab" || 0 || "abc". */
  expect_id("ab", "abc", "dm-65520b98fb9d8f2940efa6d8c12ba2fb");
  /* Byte order, not length: "aa" before "b". */
  expect_id("b", "aa", "dm-4f09566b80515c067d60a2e10efc8380");
  /* UTF-8 ids ("zé", "中文") and the longest allowed one (128 'a'). */
  expect_id("z\xc3\xa9", "\xe4\xb8\xad\xe6\x96\x87", "dm-d31376a38d1ce12921861a46e1adc96f");
  char longest[MIM_DIRECT_USER_ID_MAX + 1];
  memset(longest, 'a', MIM_DIRECT_USER_ID_MAX);
  longest[MIM_DIRECT_USER_ID_MAX] = '\0';
  expect_id(longest, "b", "dm-73f8b5aa210cf8659ba3252f217af7f6");
}

static void expect_refused(const char *a, const char *b, const char *words) {
  char out[MIM_DIRECT_CHAT_ID_SIZE] = "dm-stale";
  assert_int_equal(mim_direct_chat_id(a, b, out), MIM_ERR_INVALID_ARGUMENT);
  assert_string_equal(out, "");
  const char *d = mim_last_error_detail();
  if (strncmp(d, "mim_direct_chat_id: ", 20) != 0 || !strstr(d, words))
    fail_msg("detail \"%s\" does not name \"%s\"", d, words);
}

static void test_id_invalid(void **state) {
  (void)state;
  char too_long[MIM_DIRECT_USER_ID_MAX + 2];
  memset(too_long, 'a', sizeof too_long - 1);
  too_long[sizeof too_long - 1] = '\0';
  expect_refused(NULL, "bob", "user_a is NULL");
  expect_refused("alice", NULL, "user_b is NULL");
  expect_refused("", "bob", "user_a is empty");
  expect_refused("alice", too_long, "user_b is longer than 128 bytes");
  expect_refused("al\xff", "bob", "user_a is not valid UTF-8");
  expect_refused("alice", "\xc3", "user_b is not valid UTF-8");
  assert_int_equal(mim_direct_chat_id("alice", "bob", NULL), MIM_ERR_INVALID_ARGUMENT);
}

static void test_token_invalid(void **state) {
  (void)state;
  mim_disposable_token *t = (mim_disposable_token *)0x1;
  assert_int_equal(
      mim_token_generate_direct(root, CACHE, "alice", "", MIM_CHAT_CLIENT_ONLY, 60, &t),
      MIM_ERR_INVALID_ARGUMENT);
  assert_null(t);
  assert_non_null(strstr(mim_last_error_detail(), "other_user_id is empty"));
  assert_int_equal(mim_token_generate_direct(root, CACHE, "alice", "bob", (mim_chat_mode)7, 60, &t),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_non_null(strstr(mim_last_error_detail(), "mode 7"));
  assert_int_equal(
      mim_token_generate_direct(root, "bad cache\n", "alice", "bob", MIM_CHAT_MODERATED, 60, &t),
      MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(
      mim_token_generate_direct(root, CACHE, "alice", "bob", MIM_CHAT_MODERATED, 0, &t),
      MIM_ERR_INVALID_ARGUMENT);
  /* A cache that does not exist is the server's answer, not an argument error. */
  assert_int_equal(
      mim_token_generate_direct(root, "no-such", "alice", "bob", MIM_CHAT_CLIENT_ONLY, 60, &t),
      MIM_OK);
  mim_disposable_token_free(t);
  /* The longest user id is a token id the server takes. */
  char longest[MIM_DIRECT_USER_ID_MAX + 1];
  memset(longest, 'u', MIM_DIRECT_USER_ID_MAX);
  longest[MIM_DIRECT_USER_ID_MAX] = '\0';
  assert_int_equal(
      mim_token_generate_direct(root, CACHE, longest, "bob", MIM_CHAT_MODERATED, 60, &t), MIM_OK);
  mim_disposable_token_free(t);
}

/* ---- chatting with direct tokens ---- */

/* The texts one session received. */
typedef struct seen {
  pthread_mutex_t mu;
  waiter w;
  char text[MAX_SEEN][64];
  char publisher[MAX_SEEN][64];
  char sender[MAX_SEEN][64];
  bool trusted[MAX_SEEN];
  int n;
} seen;

static void seen_init(seen *s) {
  memset(s, 0, sizeof *s);
  pthread_mutex_init(&s->mu, NULL);
  waiter_init(&s->w);
}

static void seen_free(seen *s) {
  pthread_mutex_destroy(&s->mu);
  waiter_destroy(&s->w);
}

static void on_message(mim_session *session, const mim_message *m, void *user) {
  seen *s = user;
  (void)session;
  pthread_mutex_lock(&s->mu);
  if (s->n < MAX_SEEN) {
    snprintf(s->text[s->n], sizeof s->text[0], "%s", m->text);
    snprintf(s->publisher[s->n], sizeof s->publisher[0], "%s", m->publisher_id);
    snprintf(s->sender[s->n], sizeof s->sender[0], "%s", m->sender_id);
    s->trusted[s->n] = m->sender_trusted;
    s->n++;
  }
  pthread_mutex_unlock(&s->mu);
  waiter_bump(&s->w);
}

/* A direct member: its token, client and session. */
typedef struct member {
  mim_disposable_token *token;
  mim_client *client;
  mim_session *session;
  seen got;
} member;

static void member_token(member *m, const char *me, const char *other, mim_chat_mode mode) {
  memset(m, 0, sizeof *m);
  seen_init(&m->got);
  mim_status st = mim_token_generate_direct(root, CACHE, me, other, mode, 600, &m->token);
  if (st != MIM_OK)
    fail_msg("token for %s: %s %s", me, mim_status_name(st), mim_last_error_detail());
  m->client = test_client_from_key(m->token->credential);
}

static mim_status member_join(member *m, const char *chat, mim_chat_mode mode) {
  mim_join_options o;
  mim_join_options_init(&o);
  o.mode = mode;
  return mim_join(m->client, CACHE, chat, &o, on_message, &m->got, &m->session);
}

static void member_free(member *m) {
  mim_leave(m->session);
  mim_client_free(m->client);
  mim_disposable_token_free(m->token);
  seen_free(&m->got);
}

/* Waits until s received text; returns the index. */
static int wait_text(seen *s, const char *text) {
  for (int want = 1; want <= MAX_SEEN; want++) {
    if (waiter_wait(&s->w, want, WAIT_MS * test_time_scale()) < want)
      break;
    pthread_mutex_lock(&s->mu);
    bool found = strcmp(s->text[want - 1], text) == 0;
    pthread_mutex_unlock(&s->mu);
    if (found)
      return want - 1;
  }
  fail_msg("\"%s\" never arrived", text);
  return -1;
}

static mim_moderation_verdict accept(const mim_message *msg, char **new_text, void *user) {
  (void)msg, (void)new_text, (void)user;
  return MIM_MODERATION_ACCEPT;
}

/* alice and bob each mint their own direct token, join the same chat, and talk; carol's
 * direct token with bob opens neither their list nor their topic. */
static void chat_in_mode(mim_chat_mode mode, const char *suffix) {
  char alice[32], bob[32], carol[32], chat[MIM_DIRECT_CHAT_ID_SIZE];
  snprintf(alice, sizeof alice, "alice-%s", suffix);
  snprintf(bob, sizeof bob, "bob-%s", suffix);
  snprintf(carol, sizeof carol, "carol-%s", suffix);
  assert_int_equal(mim_direct_chat_id(alice, bob, chat), MIM_OK);
  mim_moderator *mod = NULL;
  if (mode == MIM_CHAT_MODERATED) {
    const char *chats[] = {chat};
    assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 10, accept, NULL, &mod), MIM_OK);
  }
  member a, b, c;
  member_token(&a, alice, bob, mode);
  member_token(&b, bob, alice, mode);
  member_token(&c, carol, bob, mode);
  assert_int_equal(member_join(&a, chat, mode), MIM_OK);
  assert_int_equal(member_join(&b, chat, mode), MIM_OK);
  assert_int_equal(mim_send(a.session, "hi bob", NULL), MIM_OK);
  int at = wait_text(&b.got, "hi bob");
  /* The sender's own token id: client-only, of its publish; moderated, as the moderator
   * recorded it (PROTOCOL 3.2). */
  assert_string_equal(b.got.publisher[at], alice);
  assert_true(b.got.trusted[at] == (mode == MIM_CHAT_MODERATED));
  if (mode == MIM_CHAT_MODERATED) /* client-only: the claimed user id (none set here) */
    assert_string_equal(b.got.sender[at], alice);
  assert_int_equal(mim_send(b.session, "hi alice", NULL), MIM_OK);
  wait_text(&a.got, "hi alice");
  /* carol: no join, no read of the list, no publish on either topic. */
  assert_int_equal(member_join(&c, chat, mode), MIM_ERR_PERMISSION_DENIED);
  mim_list_values *v = NULL;
  assert_int_equal(mim_list_fetch(c.client, CACHE, chat, NULL, &v), MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_topic_publish_text(c.client, CACHE, chat, "x"), MIM_ERR_PERMISSION_DENIED);
  /* ... while her own chat with bob is hers. */
  char other[MIM_DIRECT_CHAT_ID_SIZE];
  assert_int_equal(mim_direct_chat_id(bob, carol, other), MIM_OK);
  assert_int_equal(member_join(&c, other, mode), MIM_OK);
  member_free(&a);
  member_free(&b);
  member_free(&c);
  mim_moderator_stop(mod);
}

static void test_direct_client_only(void **state) {
  (void)state;
  chat_in_mode(MIM_CHAT_CLIENT_ONLY, "co");
}

static void test_direct_moderated(void **state) {
  (void)state;
  chat_in_mode(MIM_CHAT_MODERATED, "mod");
}

/* In moderated mode the trusted sender the moderator sees is the token id, that is the
 * direct user id (a claimed display name cannot change it). */
typedef struct publishers {
  pthread_mutex_t mu;
  char last[64];
} publishers;

static mim_moderation_verdict record_publisher(const mim_message *msg, char **new_text,
                                               void *user) {
  publishers *p = user;
  (void)new_text;
  pthread_mutex_lock(&p->mu);
  snprintf(p->last, sizeof p->last, "%s", msg->publisher_id);
  pthread_mutex_unlock(&p->mu);
  return MIM_MODERATION_ACCEPT;
}

static void test_moderated_sender_is_token_id(void **state) {
  (void)state;
  char chat[MIM_DIRECT_CHAT_ID_SIZE];
  assert_int_equal(mim_direct_chat_id("dana", "eve", chat), MIM_OK);
  publishers p = {.last = ""};
  pthread_mutex_init(&p.mu, NULL);
  const char *chats[] = {chat};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 10, record_publisher, &p, &mod),
                   MIM_OK);
  member d, e;
  member_token(&d, "dana", "eve", MIM_CHAT_MODERATED);
  member_token(&e, "eve", "dana", MIM_CHAT_MODERATED);
  assert_int_equal(member_join(&d, chat, MIM_CHAT_MODERATED), MIM_OK);
  assert_int_equal(member_join(&e, chat, MIM_CHAT_MODERATED), MIM_OK);
  const char *order[][2] = {{"from dana", "dana"}, {"from eve", "eve"}};
  for (int i = 0; i < 2; i++) {
    member *m = i == 0 ? &d : &e;
    assert_int_equal(mim_send(m->session, order[i][0], NULL), MIM_OK);
    wait_text(&(i == 0 ? &e : &d)->got, order[i][0]);
    pthread_mutex_lock(&p.mu);
    assert_string_equal(p.last, order[i][1]);
    pthread_mutex_unlock(&p.mu);
  }
  member_free(&d);
  member_free(&e);
  mim_moderator_stop(mod);
  pthread_mutex_destroy(&p.mu);
}

static int setup(void **state) {
  (void)state;
  static const char *const caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_vectors),       cmocka_unit_test(test_id_invalid),
      cmocka_unit_test(test_token_invalid),    cmocka_unit_test(test_direct_client_only),
      cmocka_unit_test(test_direct_moderated), cmocka_unit_test(test_moderated_sender_is_token_id),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
