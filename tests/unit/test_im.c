/* Tests of the IM API (lib/im.c, lib/moderator.c) against mim-local: join, send/receive,
 * history before live, the join merge under a concurrent sender, history cap, moderated
 * mode, remove, foreign payloads, leave racing incoming messages, gap-fill after a
 * reconnect. Each test uses its own chat id on one shared server. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "clock.h"
#include "mim_local.h"
#include "test_client.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "im-test"
#define WAIT_MS 20000

static mim_local *srv;
static mim_client *root;

/* A fresh chat id per test. */
static const char *new_chat(char *buf, size_t n, const char *tag) {
  static atomic_int counter;
  snprintf(buf, n, "chat-%s-%d", tag, atomic_fetch_add(&counter, 1));
  return buf;
}

/* ---- a collector of delivered messages ---- */

typedef struct rec {
  mim_message_kind kind;
  char *id, *from, *text, *publisher_id, *chat;
  uint8_t *raw;
  size_t raw_len;
  int64_t ts;
  uint64_t sequence;
  bool from_history;
} rec;

typedef struct collector {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rec *recs;
  size_t n, cap;
  atomic_bool left;       /* set after mim_leave returned */
  atomic_int after_leave; /* callbacks seen after that: must stay 0 */
  atomic_int in_callback; /* > 0 while on_message runs */
  int events[4];          /* on_event counts per state */
  int event_errors;       /* on_event with a non-OK status */
  bool slow;              /* callbacks take a little time (widens races) */
  int lost_gaps;          /* on_event with MIM_ERR_RESOURCE_EXHAUSTED */
  char gate_text[32];     /* a message with this text blocks its callback ... */
  bool gate_open;         /* ... until this is set (under mu) */
} collector;

static void collector_init(collector *c) {
  memset(c, 0, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  cmn_cond_init_monotonic(&c->cv);
}

static void collector_free(collector *c) {
  for (size_t i = 0; i < c->n; i++) {
    free(c->recs[i].id);
    free(c->recs[i].from);
    free(c->recs[i].text);
    free(c->recs[i].publisher_id);
    free(c->recs[i].chat);
    free(c->recs[i].raw);
  }
  free(c->recs);
  pthread_mutex_destroy(&c->mu);
  pthread_cond_destroy(&c->cv);
}

static char *xstrdup(const char *s) {
  char *p = strdup(s ? s : "(null)");
  if (!p)
    abort();
  return p;
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  collector *c = user;
  (void)s;
  atomic_fetch_add(&c->in_callback, 1);
  if (atomic_load(&c->left))
    atomic_fetch_add(&c->after_leave, 1);
  rec r = {.kind = m->kind,
           .id = xstrdup(m->id),
           .from = xstrdup(m->from),
           .text = xstrdup(m->text),
           .publisher_id = xstrdup(m->publisher_id),
           .chat = xstrdup(m->chat),
           .raw = malloc(m->raw_len + 1),
           .raw_len = m->raw_len,
           .ts = m->timestamp_ms,
           .sequence = m->sequence,
           .from_history = m->from_history};
  if (!r.raw)
    abort();
  memcpy(r.raw, m->raw, m->raw_len);
  if (c->slow) {
    struct timespec d = {0, 200000}; /* 0.2 ms: keeps the callback busy during leave */
    nanosleep(&d, NULL);
  }
  pthread_mutex_lock(&c->mu);
  while (c->gate_text[0] && strcmp(m->text, c->gate_text) == 0 && !c->gate_open)
    pthread_cond_wait(&c->cv, &c->mu);
  if (c->n == c->cap) {
    c->cap = c->cap ? 2 * c->cap : 64;
    c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
    if (!c->recs)
      abort();
  }
  c->recs[c->n++] = r;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
  atomic_fetch_sub(&c->in_callback, 1);
}

static void on_event(mim_session *s, mim_subscription_state state, mim_status status,
                     const char *detail, void *user) {
  collector *c = user;
  (void)s;
  (void)detail;
  pthread_mutex_lock(&c->mu);
  if ((int)state >= 0 && (int)state < 4)
    c->events[state]++;
  if (status != MIM_OK)
    c->event_errors++;
  if (status == MIM_ERR_RESOURCE_EXHAUSTED)
    c->lost_gaps++;
  pthread_cond_broadcast(&c->cv);
  pthread_mutex_unlock(&c->mu);
}

static size_t ncount(collector *c) {
  pthread_mutex_lock(&c->mu);
  size_t n = c->n;
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* Waits until at least n messages were collected; false on timeout. */
static bool wait_count(collector *c, size_t n, int ms) {
  struct timespec until = cmn_deadline_after_ms(ms);
  pthread_mutex_lock(&c->mu);
  int rc = 0;
  while (c->n < n && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
  bool ok = c->n >= n;
  pthread_mutex_unlock(&c->mu);
  return ok;
}

/* Index of the first record with this id at or after `from`, or -1. */
static long find_id(collector *c, const char *id, size_t from) {
  pthread_mutex_lock(&c->mu);
  long at = -1;
  for (size_t i = from; i < c->n && at < 0; i++)
    if (strcmp(c->recs[i].id, id) == 0)
      at = (long)i;
  pthread_mutex_unlock(&c->mu);
  return at;
}

/* Waits until a message with this id was collected; false on timeout. */
static bool wait_id(collector *c, const char *id, int ms) {
  struct timespec until = cmn_deadline_after_ms(ms);
  for (;;) {
    if (find_id(c, id, 0) >= 0)
      return true;
    pthread_mutex_lock(&c->mu);
    size_t seen = c->n;
    int rc = 0;
    while (c->n == seen && rc != ETIMEDOUT)
      rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
    pthread_mutex_unlock(&c->mu);
    if (rc == ETIMEDOUT)
      return find_id(c, id, 0) >= 0;
  }
}

static size_t count_id(collector *c, const char *id) {
  size_t k = 0;
  pthread_mutex_lock(&c->mu);
  for (size_t i = 0; i < c->n; i++)
    k += strcmp(c->recs[i].id, id) == 0;
  pthread_mutex_unlock(&c->mu);
  return k;
}

static mim_session *join(mim_client *cl, const char *chat, const char *name, uint32_t cap,
                         mim_chat_mode mode, collector *c) {
  mim_join_options o;
  mim_join_options_init(&o);
  o.display_name = name;
  o.history_cap = cap;
  o.initial_history = cap; /* these tests check the whole history; see test_initial_history */
  o.mode = mode;
  o.on_event = on_event;
  mim_session *s = NULL;
  mim_status st = mim_join(cl, CACHE, chat, &o, on_message, c, &s);
  if (st != MIM_OK)
    fail_msg("mim_join(%s): %s %s", chat, mim_status_name(st), mim_last_error_detail());
  assert_non_null(s);
  return s;
}

/* Sends a sentinel from `s` and waits until `c` got it: everything published before it
 * on the topic has been delivered by then. */
static void sync_on_sentinel(mim_session *s, collector *c) {
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(s, "sentinel", id), MIM_OK);
  assert_true(wait_id(c, id, WAIT_MS));
}

/* ---- tests ---- */

static void test_join_empty_chat(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "empty");
  collector c;
  collector_init(&c);
  mim_session *s = join(root, chat, "alice", 0, MIM_CHAT_CLIENT_ONLY, &c);
  assert_int_equal(ncount(&c), 0); /* join returned: history (none) was delivered */
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(s, 0, &h), MIM_OK);
  assert_int_equal(h->count, 0);
  mim_message_list_free(h);
  mim_leave(s);
  mim_leave(NULL);
  mim_message_list_free(NULL);
  collector_free(&c);
}

static void test_join_errors(void **state) {
  (void)state;
  collector c;
  collector_init(&c);
  mim_session *s = (mim_session *)0x1;
  assert_int_equal(mim_join(NULL, CACHE, "x", NULL, on_message, &c, &s), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_join(root, NULL, "x", NULL, on_message, &c, &s), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_join(root, CACHE, "", NULL, on_message, &c, &s), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_join(root, CACHE, "x", NULL, NULL, &c, &s), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_join(root, CACHE, "x", NULL, on_message, &c, NULL),
                   MIM_ERR_INVALID_ARGUMENT);
  mim_join_options o;
  mim_join_options_init(&o);
  o.display_name = "bad \xff name";
  assert_int_equal(mim_join(root, CACHE, "x", &o, on_message, &c, &s), MIM_ERR_INVALID_ARGUMENT);
  assert_ptr_equal(s, (mim_session *)0x1);
  /* A cache that does not exist. */
  mim_status st = mim_join(root, "no-such-cache", "x", NULL, on_message, &c, &s);
  assert_int_equal(st, MIM_ERR_NOT_FOUND);
  /* A client-only token for chat A cannot join chat B. */
  char a[64], b[64];
  new_chat(a, sizeof a, "perm-a");
  new_chat(b, sizeof b, "perm-b");
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, a, 600, "user-a", &t), MIM_OK);
  mim_client *cl = test_client_from_key(t->credential);
  st = mim_join(cl, CACHE, b, NULL, on_message, &c, &s);
  assert_int_equal(st, MIM_ERR_PERMISSION_DENIED);
  /* ... and can join its own. */
  s = join(cl, a, "a", 0, MIM_CHAT_CLIENT_ONLY, &c);
  mim_leave(s);
  mim_client_free(cl);
  mim_disposable_token_free(t);
  assert_int_equal(ncount(&c), 0);
  collector_free(&c);
}

static void test_send_receive(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "sendrecv");
  mim_disposable_token *ta = NULL, *tb = NULL;
  assert_int_equal(mim_token_generate_client_only(root, CACHE, chat, 600, "tok-alice", &ta),
                   MIM_OK);
  assert_int_equal(mim_token_generate_client_only(root, CACHE, chat, 600, "tok-bob", &tb), MIM_OK);
  mim_client *ca = test_client_from_key(ta->credential), *cb = test_client_from_key(tb->credential);
  collector a, b;
  collector_init(&a);
  collector_init(&b);
  mim_session *sa = join(ca, chat, "alice", 0, MIM_CHAT_CLIENT_ONLY, &a);
  mim_session *sb = join(cb, chat, "bob", 0, MIM_CHAT_CLIENT_ONLY, &b);
  char id[MIM_MESSAGE_ID_SIZE];
  memset(id, 0, sizeof id);
  assert_int_equal(mim_send(sa, "hello \xc3\xa9", id), MIM_OK);
  assert_int_equal(strlen(id), 32);
  assert_true(wait_id(&b, id, WAIT_MS));
  assert_true(wait_id(&a, id, WAIT_MS)); /* the sender sees its own message too */
  rec *r = &b.recs[find_id(&b, id, 0)];
  assert_int_equal(r->kind, MIM_MESSAGE_CHAT);
  assert_string_equal(r->from, "alice");
  assert_string_equal(r->text, "hello \xc3\xa9");
  assert_string_equal(r->chat, chat);
  assert_string_equal(r->publisher_id, "tok-alice");
  assert_false(r->from_history);
  assert_true(r->sequence > 0);
  int64_t now = (int64_t)time(NULL) * 1000;
  assert_true(r->ts > now - 60000 && r->ts < now + 60000);
  /* The reply goes the other way; send without id_out. */
  assert_int_equal(mim_send(sb, "hi alice", NULL), MIM_OK);
  assert_true(wait_count(&a, 2, WAIT_MS));
  pthread_mutex_lock(&a.mu);
  assert_string_equal(a.recs[1].text, "hi alice");
  assert_string_equal(a.recs[1].from, "bob");
  assert_string_equal(a.recs[1].publisher_id, "tok-bob");
  assert_true(a.recs[1].sequence > a.recs[0].sequence);
  pthread_mutex_unlock(&a.mu);
  /* Bad input. */
  assert_int_equal(mim_send(NULL, "x", NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_send(sa, NULL, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_send(sa, "bad \xc3(", NULL), MIM_ERR_INVALID_ARGUMENT);
  size_t big = 300 * 1024;
  char *text = malloc(big + 1);
  assert_non_null(text);
  memset(text, 'x', big);
  text[big] = '\0';
  assert_int_equal(mim_send(sa, text, NULL), MIM_ERR_INVALID_ARGUMENT);
  free(text);
  mim_leave(sa);
  mim_leave(sb);
  assert_int_equal(ncount(&a), 2);
  assert_int_equal(ncount(&b), 2);
  mim_client_free(ca);
  mim_client_free(cb);
  mim_disposable_token_free(ta);
  mim_disposable_token_free(tb);
  collector_free(&a);
  collector_free(&b);
}

static void test_history_before_live(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "hist");
  collector a, b;
  collector_init(&a);
  collector_init(&b);
  mim_session *sa = join(root, chat, "alice", 0, MIM_CHAT_CLIENT_ONLY, &a);
  char ids[4][MIM_MESSAGE_ID_SIZE];
  const char *texts[] = {"one", "two", "three", "four"};
  for (int i = 0; i < 3; i++)
    assert_int_equal(mim_send(sa, texts[i], ids[i]), MIM_OK);
  mim_session *sb = join(root, chat, "bob", 0, MIM_CHAT_CLIENT_ONLY, &b);
  /* join returned: the 3 history messages were delivered, oldest first. */
  assert_int_equal(ncount(&b), 3);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(b.recs[i].id, ids[i]);
    assert_string_equal(b.recs[i].text, texts[i]);
    assert_string_equal(b.recs[i].from, "alice");
    assert_true(b.recs[i].from_history);
    assert_int_equal(b.recs[i].sequence, 0);
    assert_string_equal(b.recs[i].publisher_id, "");
  }
  assert_int_equal(mim_send(sa, texts[3], ids[3]), MIM_OK);
  assert_true(wait_id(&b, ids[3], WAIT_MS));
  assert_int_equal(ncount(&b), 4);
  assert_false(b.recs[3].from_history);
  assert_string_equal(b.recs[3].text, "four");
  mim_leave(sb);
  mim_leave(sa);
  collector_free(&a);
  collector_free(&b);
}

/* ---- join merge under a concurrent sender ---- */

#define MERGE_N 1000

typedef struct sender_args {
  mim_session *session;
  char ids[MERGE_N][MIM_MESSAGE_ID_SIZE];
  atomic_int sent;
  mim_status status;
} sender_args;

static void *sender_main(void *arg) {
  sender_args *a = arg;
  a->status = MIM_OK;
  for (int i = 0; i < MERGE_N && a->status == MIM_OK; i++) {
    char text[32];
    snprintf(text, sizeof text, "m%d", i);
    a->status = mim_send(a->session, text, a->ids[i]);
    atomic_store(&a->sent, i + 1);
  }
  return NULL;
}

static atomic_int live_dups_skipped;

static void count_dups(mim_log_level level, const char *message, void *user) {
  (void)level;
  (void)user;
  if (strstr(message, "duplicate of") && strstr(message, "(live)"))
    atomic_fetch_add(&live_dups_skipped, 1);
}

static void test_join_merge_concurrent_sender(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "merge");
  mim_client *sender_client = test_client_from_key(srv->root_key);
  mim_client *joiner_client = test_client_from_key(srv->root_key);
  collector sc, jc;
  collector_init(&sc);
  collector_init(&jc);
  sender_args *args = calloc(1, sizeof *args);
  assert_non_null(args);
  args->session = join(sender_client, chat, "sender", 2000, MIM_CHAT_CLIENT_ONLY, &sc);
  /* Counts live copies of history messages that the merge dropped (diagnostics). */
  atomic_store(&live_dups_skipped, 0);
  mim_set_log_callback(count_dups, MIM_LOG_DEBUG, NULL);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, sender_main, args), 0);
  /* Join while the sender is in full swing. */
  int64_t until = cmn_mono_ms() + WAIT_MS;
  while (atomic_load(&args->sent) < 200) {
    assert_true(cmn_mono_ms() <= until);
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
  }
  mim_session *js = join(joiner_client, chat, "joiner", 2000, MIM_CHAT_CLIENT_ONLY, &jc);
  int sent_at_join = atomic_load(&args->sent);
  pthread_join(th, NULL);
  assert_int_equal(args->status, MIM_OK);
  /* The joiner is not done before the sender finished (else the test proves nothing). */
  assert_true(sent_at_join < MERGE_N);
  sync_on_sentinel(args->session, &jc);
  mim_leave(js);
  mim_leave(args->session);
  /* Every message exactly once, in the order sent; history first. */
  assert_int_equal(ncount(&jc), MERGE_N + 1);
  size_t live_from = jc.n;
  for (size_t i = 0; i < MERGE_N; i++) {
    if (strcmp(jc.recs[i].id, args->ids[i]) != 0)
      fail_msg("message %zu: got %s (%s), want %s", i, jc.recs[i].text, jc.recs[i].id,
               args->ids[i]);
    if (!jc.recs[i].from_history && live_from == jc.n)
      live_from = i;
    if (jc.recs[i].from_history && live_from != jc.n)
      fail_msg("history message %zu after live message %zu", i, live_from);
  }
  mim_set_log_callback(NULL, MIM_LOG_ERROR, NULL);
  print_message("merge: %zu history, %zu live; %d sent when the join returned; %d live "
                "duplicates dropped\n",
                live_from, (size_t)MERGE_N - live_from, sent_at_join,
                atomic_load(&live_dups_skipped));
  /* Everything sent before the join started was in the history. */
  assert_true(live_from >= 200);
  free(args);
  mim_client_free(sender_client);
  mim_client_free(joiner_client);
  collector_free(&sc);
  collector_free(&jc);
}

static void test_history_cap_and_mim_history(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "cap");
  collector a, b;
  collector_init(&a);
  collector_init(&b);
  mim_session *sa = join(root, chat, "alice", 5, MIM_CHAT_CLIENT_ONLY, &a);
  char ids[8][MIM_MESSAGE_ID_SIZE];
  for (int i = 0; i < 8; i++) {
    char text[16];
    snprintf(text, sizeof text, "t%d", i);
    assert_int_equal(mim_send(sa, text, ids[i]), MIM_OK);
  }
  uint32_t len = 0;
  assert_int_equal(mim_list_length(root, CACHE, chat, &len, NULL), MIM_OK);
  assert_int_equal(len, 5);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sa, 0, &h), MIM_OK);
  assert_int_equal(h->count, 5);
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(h->messages[i].kind, MIM_MESSAGE_CHAT);
    assert_string_equal(h->messages[i].id, ids[i + 3]);
    assert_string_equal(h->messages[i].chat, chat);
    assert_string_equal(h->messages[i].from, "alice");
    assert_true(h->messages[i].from_history);
    char text[16];
    snprintf(text, sizeof text, "t%zu", i + 3);
    assert_string_equal(h->messages[i].text, text);
    assert_memory_equal(h->messages[i].raw, "{\"v\":2,", 7);
  }
  mim_message_list_free(h);
  assert_int_equal(mim_history(sa, 2, &h), MIM_OK);
  assert_int_equal(h->count, 2);
  assert_string_equal(h->messages[0].id, ids[6]);
  assert_string_equal(h->messages[1].id, ids[7]);
  mim_message_list_free(h);
  assert_int_equal(mim_history(sa, 100, &h), MIM_OK);
  assert_int_equal(h->count, 5);
  mim_message_list_free(h);
  assert_int_equal(mim_history(NULL, 0, &h), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_history(sa, 0, NULL), MIM_ERR_INVALID_ARGUMENT);
  /* A new joiner gets the 5 kept messages as history. */
  mim_session *sb = join(root, chat, "bob", 5, MIM_CHAT_CLIENT_ONLY, &b);
  assert_int_equal(ncount(&b), 5);
  assert_string_equal(b.recs[0].id, ids[3]);
  assert_string_equal(b.recs[4].id, ids[7]);
  mim_leave(sb);
  mim_leave(sa);
  collector_free(&a);
  collector_free(&b);
}

static void test_remove_message(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "remove");
  collector a;
  collector_init(&a);
  mim_session *sa = join(root, chat, "alice", 0, MIM_CHAT_CLIENT_ONLY, &a);
  char ids[3][MIM_MESSAGE_ID_SIZE];
  for (int i = 0; i < 3; i++)
    assert_int_equal(mim_send(sa, i == 1 ? "remove me" : "keep", ids[i]), MIM_OK);
  assert_int_equal(mim_remove_message(sa, ids[1]), MIM_OK);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sa, 0, &h), MIM_OK);
  assert_int_equal(h->count, 2);
  assert_string_equal(h->messages[0].id, ids[0]);
  assert_string_equal(h->messages[1].id, ids[2]);
  mim_message_list_free(h);
  assert_int_equal(mim_remove_message(sa, ids[1]), MIM_ERR_NOT_FOUND);
  assert_int_equal(mim_remove_message(sa, "0123456789abcdef0123456789abcdef"), MIM_ERR_NOT_FOUND);
  assert_int_equal(mim_remove_message(sa, ""), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_remove_message(sa, NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_remove_message(NULL, ids[0]), MIM_ERR_INVALID_ARGUMENT);
  /* A client-only user can remove (it has write on its chat's list); a moderated user
   * cannot. */
  mim_disposable_token *t = NULL;
  assert_int_equal(mim_token_generate_moderated(root, CACHE, chat, 600, "mod-user", &t), MIM_OK);
  mim_client *cl = test_client_from_key(t->credential);
  collector b;
  collector_init(&b);
  mim_session *sb = join(cl, chat, "bob", 0, MIM_CHAT_MODERATED, &b);
  assert_int_equal(ncount(&b), 2);
  assert_int_equal(mim_remove_message(sb, ids[0]), MIM_ERR_PERMISSION_DENIED);
  mim_leave(sb);
  mim_client_free(cl);
  mim_disposable_token_free(t);
  mim_leave(sa);
  collector_free(&a);
  collector_free(&b);
}

/* ---- foreign payloads ---- */

static void test_foreign_payloads(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "foreign");
  /* A raw value already in the list before the join. */
  assert_int_equal(mim_list_push_back(root, CACHE, chat, "plain old text", 14, NULL, NULL), MIM_OK);
  collector a;
  collector_init(&a);
  mim_session *sa = join(root, chat, "alice", 0, MIM_CHAT_CLIENT_ONLY, &a);
  assert_int_equal(ncount(&a), 1);
  assert_int_equal(a.recs[0].kind, MIM_MESSAGE_FOREIGN);
  assert_true(a.recs[0].from_history);
  assert_string_equal(a.recs[0].text, "plain old text");
  assert_string_equal(a.recs[0].id, "");
  assert_int_equal(a.recs[0].raw_len, 14);

  const uint8_t binary[] = {0x00, 0xff, 0x10, 0x80, 0xc3, 0x28, 0x7b};
  const char bad_utf8[] = "{\"id\":\"a\",\"from\":\"b\",\"text\":\"\xff\",\"ts\":1}";
  assert_int_equal(mim_topic_publish_text(root, CACHE, chat, "hello"), MIM_OK);
  assert_int_equal(mim_topic_publish_binary(root, CACHE, chat, binary, sizeof binary), MIM_OK);
  assert_int_equal(mim_topic_publish_text(root, CACHE, chat, "{\"id\":"), MIM_OK);
  assert_int_equal(mim_topic_publish_text(root, CACHE, chat, "{\"id\":\"x\",\"ts\":1}"), MIM_OK);
  assert_int_equal(mim_topic_publish_binary(root, CACHE, chat, bad_utf8, strlen(bad_utf8)), MIM_OK);
  assert_int_equal(mim_topic_publish_binary(root, CACHE, chat, "", 0), MIM_OK);
  /* Over the envelope limit but under the server's message limit. */
  size_t big = 300 * 1024;
  char *huge = malloc(big + 1);
  assert_non_null(huge);
  memset(huge, 'y', big);
  huge[big] = '\0';
  memcpy(huge, "{\"text\":\"", 9);
  assert_int_equal(mim_topic_publish_text(root, CACHE, chat, huge), MIM_OK);
  /* A real message still gets through after all that. */
  sync_on_sentinel(sa, &a);
  assert_int_equal(ncount(&a), 9);
  for (size_t i = 1; i < 8; i++) {
    assert_int_equal(a.recs[i].kind, MIM_MESSAGE_FOREIGN);
    assert_false(a.recs[i].from_history);
    assert_string_equal(a.recs[i].id, "");
    assert_string_equal(a.recs[i].from, "");
    assert_true(a.recs[i].sequence > 0);
    assert_string_equal(a.recs[i].publisher_id, "root");
  }
  assert_string_equal(a.recs[1].text, "hello");
  assert_int_equal(a.recs[2].raw_len, sizeof binary);
  assert_memory_equal(a.recs[2].raw, binary, sizeof binary);
  assert_string_equal(a.recs[2].text, ""); /* not text */
  assert_string_equal(a.recs[3].text, "{\"id\":");
  assert_string_equal(a.recs[4].text, "{\"id\":\"x\",\"ts\":1}");
  assert_int_equal(a.recs[5].raw_len, strlen(bad_utf8));
  assert_string_equal(a.recs[5].text, "");
  assert_int_equal(a.recs[6].raw_len, 0);
  assert_int_equal(a.recs[7].raw_len, big);
  assert_memory_equal(a.recs[7].raw, huge, big);
  assert_int_equal(a.recs[8].kind, MIM_MESSAGE_CHAT);
  free(huge);
  /* mim_history includes the foreign list value. */
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sa, 0, &h), MIM_OK);
  assert_int_equal(h->count, 2);
  assert_int_equal(h->messages[0].kind, MIM_MESSAGE_FOREIGN);
  assert_string_equal(h->messages[0].text, "plain old text");
  assert_int_equal(h->messages[1].kind, MIM_MESSAGE_CHAT);
  mim_message_list_free(h);
  mim_leave(sa);
  collector_free(&a);
}

/* ---- moderated mode ---- */

typedef struct filter_state {
  atomic_int calls;
  pthread_mutex_t mu;
  char last_publisher[64];
} filter_state;

static mim_moderation_verdict word_filter(const mim_message *m, char **new_text, void *user) {
  filter_state *f = user;
  atomic_fetch_add(&f->calls, 1);
  pthread_mutex_lock(&f->mu);
  snprintf(f->last_publisher, sizeof f->last_publisher, "%s", m->publisher_id);
  pthread_mutex_unlock(&f->mu);
  if (strstr(m->text, "spam"))
    return MIM_MODERATION_REJECT;
  const char *w = strstr(m->text, "darn");
  if (!w)
    return MIM_MODERATION_ACCEPT;
  char *t = strdup(m->text);
  if (!t)
    return MIM_MODERATION_REJECT;
  memcpy(t + (w - m->text), "****", 4);
  *new_text = t;
  return MIM_MODERATION_REWRITE;
}

static void test_moderated_mode(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "moderated");
  filter_state fs;
  memset(&fs, 0, sizeof fs);
  pthread_mutex_init(&fs.mu, NULL);
  const char *chats[] = {chat};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(NULL, CACHE, chats, 1, 10, word_filter, &fs, &mod),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 0, 10, word_filter, &fs, &mod),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 10, NULL, &fs, &mod),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_moderator_start(root, "no-such-cache", chats, 1, 10, word_filter, &fs, &mod),
                   MIM_ERR_NOT_FOUND);
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 10, word_filter, &fs, &mod), MIM_OK);

  mim_disposable_token *ta = NULL, *tb = NULL;
  assert_int_equal(mim_token_generate_moderated(root, CACHE, chat, 600, "user-a", &ta), MIM_OK);
  assert_int_equal(mim_token_generate_moderated(root, CACHE, chat, 600, "user-b", &tb), MIM_OK);
  mim_client *ca = test_client_from_key(ta->credential), *cb = test_client_from_key(tb->credential);
  collector a, b;
  collector_init(&a);
  collector_init(&b);
  mim_session *sa = join(ca, chat, "alice", 10, MIM_CHAT_MODERATED, &a);
  mim_session *sb = join(cb, chat, "bob", 10, MIM_CHAT_MODERATED, &b);

  /* The server enforces the policy: no list writes, no publish on the chat topic. */
  assert_int_equal(mim_list_push_back(ca, CACHE, chat, "x", 1, NULL, NULL),
                   MIM_ERR_PERMISSION_DENIED);
  assert_int_equal(mim_topic_publish_text(ca, CACHE, chat, "x"), MIM_ERR_PERMISSION_DENIED);

  char ok_id[MIM_MESSAGE_ID_SIZE], masked_id[MIM_MESSAGE_ID_SIZE], spam_id[MIM_MESSAGE_ID_SIZE];
  char last_id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(sa, "hello all", ok_id), MIM_OK);
  assert_int_equal(mim_send(sa, "buy spam now", spam_id), MIM_OK);
  assert_int_equal(mim_send(sa, "oh darn it", masked_id), MIM_OK);
  /* Foreign input is dropped by the moderator without reaching the filter. */
  char input[80];
  snprintf(input, sizeof input, "%s-input", chat);
  assert_int_equal(mim_topic_publish_text(ca, CACHE, input, "not an envelope"), MIM_OK);
  assert_int_equal(mim_send(sb, "bye", last_id), MIM_OK);
  assert_true(wait_id(&a, last_id, WAIT_MS));
  assert_true(wait_id(&b, last_id, WAIT_MS));
  assert_int_equal(atomic_load(&fs.calls), 4);
  pthread_mutex_lock(&fs.mu);
  assert_string_equal(fs.last_publisher, "user-b");
  pthread_mutex_unlock(&fs.mu);

  /* Both see: hello, **** it, bye (not the spam, not the foreign input). */
  collector *cs[] = {&a, &b};
  for (int k = 0; k < 2; k++) {
    collector *c = cs[k];
    assert_int_equal(ncount(c), 3);
    assert_string_equal(c->recs[0].id, ok_id);
    assert_string_equal(c->recs[0].text, "hello all");
    assert_string_equal(c->recs[0].from, "alice");
    assert_string_equal(c->recs[1].id, masked_id);
    assert_string_equal(c->recs[1].text, "oh **** it");
    assert_string_equal(c->recs[2].id, last_id);
    assert_string_equal(c->recs[2].from, "bob");
    for (int i = 0; i < 3; i++) {
      assert_false(c->recs[i].from_history);
      /* The moderator published; publisher_id is the member it recorded ("pub"). */
      assert_string_equal(c->recs[i].publisher_id, i < 2 ? "user-a" : "user-b");
    }
    assert_int_equal(count_id(c, spam_id), 0);
  }
  /* The list holds the moderated messages; a late joiner gets them as history. */
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sa, 0, &h), MIM_OK);
  assert_int_equal(h->count, 3);
  assert_string_equal(h->messages[1].text, "oh **** it");
  assert_int_equal(h->messages[1].timestamp_ms, a.recs[1].ts);
  mim_message_list_free(h);
  collector c;
  collector_init(&c);
  mim_session *sc = join(cb, chat, "carol", 10, MIM_CHAT_MODERATED, &c);
  assert_int_equal(ncount(&c), 3);
  assert_true(c.recs[0].from_history);
  mim_leave(sc);
  collector_free(&c);

  mim_moderator_stop(mod);
  mim_moderator_stop(NULL);
  pthread_mutex_destroy(&fs.mu);
  mim_leave(sa);
  mim_leave(sb);
  mim_client_free(ca);
  mim_client_free(cb);
  mim_disposable_token_free(ta);
  mim_disposable_token_free(tb);
  collector_free(&a);
  collector_free(&b);
}

/* The moderator with many messages in flight, stopped while they stream in. */
static mim_moderation_verdict accept_all(const mim_message *m, char **new_text, void *user) {
  (void)m;
  (void)new_text;
  atomic_fetch_add((atomic_int *)user, 1);
  return MIM_MODERATION_ACCEPT;
}

static void test_moderator_stop_in_flight(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "modstop");
  atomic_int calls = 0;
  const char *chats[] = {chat};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 50, accept_all, &calls, &mod),
                   MIM_OK);
  collector a;
  collector_init(&a);
  mim_session *sa = join(root, chat, "alice", 50, MIM_CHAT_MODERATED, &a);
  for (int i = 0; i < 100; i++)
    assert_int_equal(mim_send(sa, "burst", NULL), MIM_OK);
  mim_moderator_stop(mod); /* must not crash or hang with forwards in flight */
  int at_stop = atomic_load(&calls);
  assert_true(at_stop <= 100);
  assert_int_equal(mim_send(sa, "after stop", NULL), MIM_OK);
  /* Nothing calls the filter after stop returned: send a message through a new
   * moderator and wait for it, so the old one had every chance to misbehave. */
  atomic_int calls2 = 0;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 50, accept_all, &calls2, &mod),
                   MIM_OK);
  char id[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(sa, "sentinel", id), MIM_OK);
  assert_true(wait_id(&a, id, WAIT_MS));
  assert_int_equal(atomic_load(&calls), at_stop);
  assert_int_equal(atomic_load(&calls2), 1);
  mim_moderator_stop(mod);
  mim_leave(sa);
  /* No id delivered twice. */
  for (size_t i = 0; i < a.n; i++)
    assert_int_equal(count_id(&a, a.recs[i].id), 1);
  collector_free(&a);
}

/* One moderator for two chats: each message goes to its own chat only. */
/* The moderator keeps a sender's order: inputs arrive one after another on
 * "<chat>-input" and must reach topic and list in that order (concurrent forwards could
 * finish out of order). */
static void test_moderator_keeps_order(void **state) {
  (void)state;
  enum { N = 60 };
  char chat[64];
  new_chat(chat, sizeof chat, "modorder");
  atomic_int calls = 0;
  const char *chats[] = {chat};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, N, accept_all, &calls, &mod), MIM_OK);
  collector a;
  collector_init(&a);
  mim_session *sa = join(root, chat, "alice", N, MIM_CHAT_MODERATED, &a);
  char ids[N][MIM_MESSAGE_ID_SIZE];
  for (int i = 0; i < N; i++) {
    char text[16];
    snprintf(text, sizeof text, "o%02d", i);
    assert_int_equal(mim_send(sa, text, ids[i]), MIM_OK);
  }
  /* In order, the last one arriving means every one has. */
  assert_true(wait_id(&a, ids[N - 1], WAIT_MS));
  /* Compared under the lock, asserted outside it (a failure must not leave it held). */
  pthread_mutex_lock(&a.mu);
  size_t n = a.n;
  int first_out_of_order = -1;
  for (int i = 0; i < N && (size_t)i < n && first_out_of_order < 0; i++)
    if (strcmp(a.recs[i].id, ids[i]) != 0)
      first_out_of_order = i;
  pthread_mutex_unlock(&a.mu);
  assert_int_equal(n, N);
  assert_int_equal(first_out_of_order, -1);
  mim_message_list *h = NULL;
  assert_int_equal(mim_history(sa, 0, &h), MIM_OK);
  assert_int_equal(h->count, N);
  for (int i = 0; i < N; i++)
    assert_string_equal(h->messages[i].id, ids[i]);
  mim_message_list_free(h);
  mim_moderator_stop(mod);
  mim_leave(sa);
  collector_free(&a);
}

static void test_moderator_two_chats(void **state) {
  (void)state;
  char c1[64], c2[64];
  new_chat(c1, sizeof c1, "mod2a");
  new_chat(c2, sizeof c2, "mod2b");
  atomic_int calls = 0;
  const char *chats[] = {c1, c2};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 2, 0, accept_all, &calls, &mod), MIM_OK);
  collector a, b;
  collector_init(&a);
  collector_init(&b);
  mim_session *sa = join(root, c1, "alice", 0, MIM_CHAT_MODERATED, &a);
  mim_session *sb = join(root, c2, "bob", 0, MIM_CHAT_MODERATED, &b);
  char ida[MIM_MESSAGE_ID_SIZE], idb[MIM_MESSAGE_ID_SIZE];
  assert_int_equal(mim_send(sa, "to one", ida), MIM_OK);
  assert_int_equal(mim_send(sb, "to two", idb), MIM_OK);
  assert_true(wait_id(&a, ida, WAIT_MS));
  assert_true(wait_id(&b, idb, WAIT_MS));
  sync_on_sentinel(sa, &a);
  sync_on_sentinel(sb, &b);
  assert_int_equal(count_id(&a, idb), 0);
  assert_int_equal(count_id(&b, ida), 0);
  assert_int_equal(ncount(&a), 2);
  assert_int_equal(ncount(&b), 2);
  assert_int_equal(atomic_load(&calls), 4);
  mim_moderator_stop(mod);
  mim_leave(sa);
  mim_leave(sb);
  collector_free(&a);
  collector_free(&b);
}

/* ---- leave while messages stream in ---- */

typedef struct pump_args {
  mim_session *session;
  atomic_bool stop;
  atomic_int sent;
  atomic_int status;
} pump_args;

/* Sends until told to stop (bounded by WAIT_MS), about one message a millisecond: a
 * stream for the whole test however long its joins take (a count bound ran out before the
 * last round on a fast machine, and that round then waited for sends forever). */
static void *pump_main(void *arg) {
  pump_args *p = arg;
  atomic_store(&p->status, MIM_OK);
  int64_t until = cmn_mono_ms() + WAIT_MS;
  while (!atomic_load(&p->stop) && atomic_load(&p->status) == MIM_OK && cmn_mono_ms() < until) {
    atomic_store(&p->status, (int)mim_send(p->session, "stream", NULL));
    atomic_fetch_add(&p->sent, 1);
    struct timespec d = {0, 1000000};
    nanosleep(&d, NULL);
  }
  return NULL;
}

static void test_leave_while_streaming(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "leave");
  mim_client *pc = test_client_from_key(srv->root_key);
  mim_client *lc = test_client_from_key(srv->root_key);
  collector pcol;
  collector_init(&pcol);
  pump_args *p = calloc(1, sizeof *p);
  assert_non_null(p);
  p->session = join(pc, chat, "pump", 0, MIM_CHAT_CLIENT_ONLY, &pcol);
  pthread_t th;
  assert_int_equal(pthread_create(&th, NULL, pump_main, p), 0);
  for (int round = 0; round < 5; round++) {
    collector c;
    collector_init(&c);
    c.slow = true;
    mim_session *s = join(lc, chat, "leaver", 0, MIM_CHAT_CLIENT_ONLY, &c);
    /* Wait until live messages flow, then leave in the middle of them. */
    assert_true(wait_count(&c, ncount(&c) + 5, WAIT_MS));
    mim_leave(s);
    atomic_store(&c.left, true);
    assert_int_equal(atomic_load(&c.in_callback), 0);
    /* More messages keep coming to the client; none may reach the left session. */
    int target = atomic_load(&p->sent) + 20;
    int64_t until = cmn_mono_ms() + WAIT_MS;
    while (atomic_load(&p->sent) < target && atomic_load(&p->status) == MIM_OK) {
      assert_true(cmn_mono_ms() <= until);
      struct timespec d = {0, 1000000};
      nanosleep(&d, NULL);
    }
    assert_int_equal(atomic_load(&c.after_leave), 0);
    collector_free(&c);
  }
  atomic_store(&p->stop, true);
  pthread_join(th, NULL);
  assert_int_equal(atomic_load(&p->status), MIM_OK);
  mim_leave(p->session);
  free(p);
  mim_client_free(pc);
  mim_client_free(lc);
  collector_free(&pcol);
}

/* ---- reconnect and gap-fill ---- */

/* Server-side stream cut (SIGUSR1) while a sender keeps sending: what was published
 * while the stream was down comes back exactly once and in order, from the list (replay
 * 0: the server keeps nothing to resume from) or from the server's replay plus the list
 * (both deliver the same messages: the merge must drop one copy). */
static void run_reconnect_test(int replay) {
  const char *caches[] = {CACHE, NULL};
  mim_local_opts o = {.caches = caches, .replay = replay, .set_replay = 1, .heartbeat_ms = 500};
  mim_local *s2 = NULL;
  assert_int_equal(mim_local_start(&o, &s2), 0);
  mim_client *sender = test_client_from_key(s2->root_key);
  mim_client *receiver = test_client_from_key(s2->root_key);
  collector sc, rc;
  collector_init(&sc);
  collector_init(&rc);
  mim_session *ss = join(sender, "gap", "sender", 1000, MIM_CHAT_CLIENT_ONLY, &sc);
  mim_session *rs = join(receiver, "gap", "receiver", 1000, MIM_CHAT_CLIENT_ONLY, &rc);
  char ids[60][MIM_MESSAGE_ID_SIZE];
  for (int i = 0; i < 20; i++)
    assert_int_equal(mim_send(ss, "before", ids[i]), MIM_OK);
  assert_true(wait_id(&rc, ids[19], WAIT_MS));
  /* Cut every stream, and keep sending while the receiver reconnects. */
  assert_int_equal(mim_local_signal(s2, SIGUSR1), 0);
  for (int i = 20; i < 60; i++)
    assert_int_equal(mim_send(ss, "during", ids[i]), MIM_OK);
  /* The receiver must see a reconnect, and then every message exactly once. */
  struct timespec until = cmn_deadline_after_ms(WAIT_MS);
  pthread_mutex_lock(&rc.mu);
  int err = 0;
  while (rc.events[MIM_SUB_RECONNECTING] == 0 && err != ETIMEDOUT)
    err = pthread_cond_timedwait(&rc.cv, &rc.mu, &until);
  int reconnects = rc.events[MIM_SUB_RECONNECTING];
  pthread_mutex_unlock(&rc.mu);
  assert_true(reconnects > 0);
  sync_on_sentinel(ss, &rc);
  pthread_mutex_lock(&rc.mu);
  int connected = rc.events[MIM_SUB_CONNECTED];
  pthread_mutex_unlock(&rc.mu);
  assert_true(connected >= 2); /* the first confirmation and the one after the cut */
  pthread_mutex_lock(&rc.mu);
  int lost = rc.lost_gaps;
  pthread_mutex_unlock(&rc.mu);
  assert_int_equal(lost, 0); /* everything was recovered: no false loss report */
  for (int i = 0; i < 60; i++)
    if (count_id(&rc, ids[i]) != 1)
      fail_msg("message %d delivered %zu times", i, count_id(&rc, ids[i]));
  assert_int_equal(ncount(&rc), 61);
  /* In send order. */
  for (int i = 0; i < 60; i++)
    assert_string_equal(rc.recs[i].id, ids[i]);
  int filled = 0;
  for (int i = 20; i < 60; i++)
    filled += rc.recs[i].from_history;
  print_message("reconnect (replay %d): %d reconnects, %d event errors, %d of 40 from "
                "the list\n",
                replay, reconnects, rc.event_errors, filled);
  mim_leave(rs);
  mim_leave(ss);
  mim_client_free(sender);
  mim_client_free(receiver);
  assert_int_equal(mim_local_stop(s2), 0);
  collector_free(&sc);
  collector_free(&rc);
}

/* A receiver too slow for the sender: its client stops reading while its callback is
 * held, the server's queue for it overflows (replay 0, queue 16), and it reports a
 * discontinuity. The session refetches the list, delivers what it still holds, reports
 * the loss (gap larger than the cap of 5), and never delivers anything twice. */
static void test_overflow_gap_larger_than_cap(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  const char *extra[] = {"--max-queue", "16", NULL};
  mim_local_opts o = {.caches = caches, .replay = 0, .set_replay = 1, .extra_args = extra};
  mim_local *s2 = NULL;
  assert_int_equal(mim_local_start(&o, &s2), 0);
  mim_client *sender = test_client_from_key(s2->root_key);
  mim_client *receiver = test_client_from_key(s2->root_key);
  collector sc, rc;
  collector_init(&sc);
  collector_init(&rc);
  snprintf(rc.gate_text, sizeof rc.gate_text, "hold");
  mim_session *ss = join(sender, "slow", "sender", 5, MIM_CHAT_CLIENT_ONLY, &sc);
  mim_session *rs = join(receiver, "slow", "receiver", 5, MIM_CHAT_CLIENT_ONLY, &rc);
  assert_int_equal(mim_send(ss, "hold", NULL), MIM_OK);
  /* 3 KiB messages (their envelopes stay within hosted Momento's 4 KB topic payload):
   * far more than the HTTP/2 windows and the server queue hold. */
  enum { N = 3000, TEXT = 3072 };
  char(*ids)[MIM_MESSAGE_ID_SIZE] = calloc(N, sizeof *ids);
  char *text = malloc(TEXT + 1);
  assert_non_null(ids);
  assert_non_null(text);
  memset(text, 'z', TEXT);
  text[TEXT] = '\0';
  for (int i = 0; i < N; i++)
    assert_int_equal(mim_send(ss, text, ids[i]), MIM_OK);
  pthread_mutex_lock(&rc.mu);
  rc.gate_open = true;
  pthread_cond_broadcast(&rc.cv);
  pthread_mutex_unlock(&rc.mu);
  sync_on_sentinel(ss, &rc);
  /* The newest messages are in the list when it is refetched (the sentinel may have
   * pushed out the 5th newest), so they arrive; nothing arrives twice. */
  for (int i = N - 4; i < N; i++)
    if (count_id(&rc, ids[i]) != 1)
      fail_msg("message %d of %d delivered %zu times (%zu delivered in all)", i, N,
               count_id(&rc, ids[i]), ncount(&rc));
  size_t delivered = 0;
  for (int i = 0; i < N; i++) {
    size_t k = count_id(&rc, ids[i]);
    assert_true(k <= 1);
    delivered += k;
  }
  /* The report follows the refetch, which may complete after the sentinel arrived. */
  struct timespec until = cmn_deadline_after_ms(WAIT_MS);
  pthread_mutex_lock(&rc.mu);
  int err = 0;
  while (rc.lost_gaps == 0 && err != ETIMEDOUT)
    err = pthread_cond_timedwait(&rc.cv, &rc.mu, &until);
  int lost = rc.lost_gaps;
  pthread_mutex_unlock(&rc.mu);
  print_message("overflow: %zu of %d delivered, %d loss reports\n", delivered, N, lost);
  assert_true(delivered < N);
  assert_true(lost >= 1);
  free(ids);
  free(text);
  mim_leave(rs);
  mim_leave(ss);
  mim_client_free(sender);
  mim_client_free(receiver);
  assert_int_equal(mim_local_stop(s2), 0);
  collector_free(&sc);
  collector_free(&rc);
}

static void test_reconnect_gap_fill_from_list(void **state) {
  (void)state;
  run_reconnect_test(0);
}

static void test_reconnect_with_replay(void **state) {
  (void)state;
  run_reconnect_test(4096);
}

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  /* Hosted limits, except the topic payload: test_foreign_payloads publishes a foreign
   * message over the library's envelope limit, which the server must let through. */
  const char *extra[] = {"--max-topic-payload", "1048576", NULL};
  mim_local_opts o = {.caches = caches, .extra_args = extra};
  if (mim_local_start(&o, &srv) != 0)
    return -1;
  root = test_client_from_key(srv->root_key);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  mim_client_free(root);
  return mim_local_stop(srv) == 0 ? 0 : -1;
}

static void print_log(mim_log_level level, const char *message, void *user) {
  (void)user;
  fprintf(stderr, "lib[%d]: %s\n", (int)level, message);
}

int main(void) {
  /* The collectors live on the tests' stacks and sessions call into them from the event
   * thread: after a failed assertion, cmocka's jump to the next test would leave those
   * callbacks blocked on (or writing into) a dead frame, and the program would hang until
   * run-all's limit. Abort at the first failure instead (the message is printed first). */
  setenv("CMOCKA_TEST_ABORT", "1", 0);
  /* MIM_TEST_LOG=1 prints the library's log (info and above) to stderr. */
  if (getenv("MIM_TEST_LOG"))
    mim_set_log_callback(print_log, MIM_LOG_INFO, NULL);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_join_empty_chat),
      cmocka_unit_test(test_join_errors),
      cmocka_unit_test(test_send_receive),
      cmocka_unit_test(test_history_before_live),
      cmocka_unit_test(test_join_merge_concurrent_sender),
      cmocka_unit_test(test_history_cap_and_mim_history),
      cmocka_unit_test(test_remove_message),
      cmocka_unit_test(test_foreign_payloads),
      cmocka_unit_test(test_moderated_mode),
      cmocka_unit_test(test_moderator_stop_in_flight),
      cmocka_unit_test(test_moderator_two_chats),
      cmocka_unit_test(test_moderator_keeps_order),
      cmocka_unit_test(test_leave_while_streaming),
      cmocka_unit_test(test_reconnect_gap_fill_from_list),
      cmocka_unit_test(test_reconnect_with_replay),
      cmocka_unit_test(test_overflow_gap_larger_than_cap),
  };
  /* MIM_TEST_FILTER=test_foo (glob) runs only matching tests. */
  if (getenv("MIM_TEST_FILTER"))
    cmocka_set_test_filter(getenv("MIM_TEST_FILTER"));
  return cmocka_run_group_tests(tests, setup, teardown);
}
