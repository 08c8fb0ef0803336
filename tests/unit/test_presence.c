/* Typing and presence across real clients against mim-local (lib/presence.c, the hooks in
 * lib/im.c, the relay in lib/moderator.c): three or more sessions, client-only and
 * moderated (a moderator, a token per user): joined, typing, stopped typing (said and
 * lapsed), left (said, and by expiry of a silent session), mim_members, a join during
 * activity learning who is here from the early "here", signals never reaching
 * on_message nor the list, and the publishes of an idle chat over a window. Each test
 * uses its own chat on one shared server. Intervals are short and scaled with
 * test_time_scale(); checks of timing have slack both ways. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "chaos_proxy.h"
#include "clock.h"
#include "mim_local.h"
#include "test_client.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "presence-test"
#define MAX_LINES 256

static mim_local *srv;
static mim_client *root;

static int64_t scale(void) {
  return test_time_scale();
}

static const char *new_chat(char *buf, size_t n, const char *tag) {
  static atomic_int counter;
  snprintf(buf, n, "presence-%s-%d", tag, atomic_fetch_add(&counter, 1));
  return buf;
}

/* ---- what a session saw ---- */

typedef struct seen {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int n;
  char line[MAX_LINES][160]; /* "joined bob", "typing bob", "stopped bob", "left bob" */
  int64_t at[MAX_LINES];     /* monotonic ms */
  int messages;              /* on_message calls: signals must never get there */
  atomic_int members_ok;     /* mim_members called from on_presence worked */
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

static const char *const CHANGE[] = {"joined", "left", "typing", "stopped"};

static void on_presence(mim_session *session, mim_presence_change change, const mim_member *m,
                        void *user) {
  seen *s = user;
  /* The table may be read from its own callback. */
  mim_member_list *list = NULL;
  if (mim_members(session, &list) == MIM_OK)
    atomic_fetch_add(&s->members_ok, 1);
  mim_member_list_free(list);
  pthread_mutex_lock(&s->mu);
  if (s->n < MAX_LINES) {
    snprintf(s->line[s->n], sizeof s->line[0], "%s %s%s", CHANGE[change], m->user_id,
             m->trusted ? "*" : "");
    s->at[s->n++] = cmn_mono_ms();
  }
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
}

static void on_message(mim_session *session, const mim_message *msg, void *user) {
  (void)session;
  (void)msg;
  seen *s = user;
  pthread_mutex_lock(&s->mu);
  s->messages++;
  pthread_mutex_unlock(&s->mu);
}

/* Index of the first line equal to `line` at or after `from`, or -1. */
static int find_locked(const seen *s, const char *line, int from) {
  for (int i = from; i < s->n; i++)
    if (strcmp(s->line[i], line) == 0)
      return i;
  return -1;
}

/* Waits (bounded) for `line` at or after index `from`; returns its index or -1. */
static int wait_line(seen *s, const char *line, int from, int timeout_ms) {
  struct timespec until = cmn_deadline_after_ms((int64_t)timeout_ms * scale());
  pthread_mutex_lock(&s->mu);
  int i;
  while ((i = find_locked(s, line, from)) < 0)
    if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) {
      i = find_locked(s, line, from);
      break;
    }
  pthread_mutex_unlock(&s->mu);
  return i;
}

static int count_lines(seen *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->n;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static int64_t line_at(seen *s, int i) {
  pthread_mutex_lock(&s->mu);
  int64_t at = s->at[i];
  pthread_mutex_unlock(&s->mu);
  return at;
}

/* Lets time pass on purpose (a measured window or an interval of the protocol). */
static void sleep_ms(int64_t ms) {
  int64_t until = cmn_mono_ms() + ms;
  struct timespec pause = {.tv_sec = 0, .tv_nsec = 20000000L};
  while (cmn_mono_ms() < until)
    nanosleep(&pause, NULL);
}

static mim_session *join(mim_client *c, const char *chat, const char *name, const char *uid,
                         mim_chat_mode mode, uint32_t heartbeat_ms, seen *s) {
  mim_join_options o = MIM_JOIN_OPTIONS_INIT;
  o.display_name = name;
  o.user_id = uid;
  o.mode = mode;
  o.on_presence = s ? on_presence : NULL;
  o.presence_heartbeat_ms = heartbeat_ms * (uint32_t)scale();
  mim_session *session = NULL;
  mim_status st = mim_join(c, CACHE, chat, &o, on_message, s, &session);
  if (st != MIM_OK)
    fail_msg("mim_join %s: %s (%s)", name, mim_status_name(st), mim_last_error_detail());
  return session;
}

/* The members of a session, as "id[*][+]" (trusted, typing) in a sorted, spaced list. */
static void members_of(mim_session *session, char *out, size_t n) {
  mim_member_list *list = NULL;
  assert_int_equal(mim_members(session, &list), MIM_OK);
  char items[16][160];
  size_t k = list->count < 16 ? list->count : 16;
  for (size_t i = 0; i < k; i++) {
    const mim_member *m = &list->members[i];
    snprintf(items[i], sizeof items[i], "%s%s%s", m->user_id, m->trusted ? "*" : "",
             m->typing ? "+" : "");
    assert_true(m->last_seen_ms > 0);
  }
  qsort(items, k, sizeof items[0], (int (*)(const void *, const void *))strcmp);
  out[0] = '\0';
  for (size_t i = 0; i < k; i++)
    snprintf(out + strlen(out), n - strlen(out), "%s%s", i ? " " : "", items[i]);
  mim_member_list_free(list);
}

/* Nothing of presence is stored: the list holds no value. */
static void assert_list_empty(const char *chat) {
  mim_list_values *v = NULL;
  mim_status st = mim_list_fetch(root, CACHE, chat, NULL, &v);
  assert_true(st == MIM_OK || st == MIM_ERR_NOT_FOUND);
  if (st == MIM_OK)
    assert_int_equal(v->count, 0);
  mim_list_values_free(v);
}

/* A session of another client that went silent (crashed): a presence signal with a short
 * ttl, published by hand as any protocol client could. */
static void publish_ghost(const char *topic, const char *uid, int ttl_ms) {
  char json[256];
  snprintf(json, sizeof json,
           "{\"v\":2,\"t\":\"presence\",\"from\":\"%s\",\"uid\":\"%s\",\"sid\":\"dead%012d\","
           "\"ts\":%lld,\"state\":\"here\",\"ttl\":%d}",
           uid, uid, ttl_ms, (long long)cmn_wall_ms(), ttl_ms);
  assert_int_equal(mim_topic_publish_text(root, CACHE, topic, json), MIM_OK);
}

/* ---- client-only ---- */

static void test_client_only(void **state) {
  (void)state;
  char chat[64], got[512];
  new_chat(chat, sizeof chat, "co");
  seen a, b, c;
  seen_init(&a);
  seen_init(&b);
  seen_init(&c);
  mim_session *sa = join(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, 1000, &a);
  mim_session *sb = join(root, chat, "Bob", "bob", MIM_CHAT_CLIENT_ONLY, 1000, &b);
  mim_session *sc = join(root, chat, "Carol", "carol", MIM_CHAT_CLIENT_ONLY, 1000, &c);
  /* Everyone learns of everyone, never of itself. */
  assert_true(wait_line(&a, "joined bob", 0, 5000) >= 0);
  assert_true(wait_line(&a, "joined carol", 0, 5000) >= 0);
  assert_true(wait_line(&b, "joined alice", 0, 5000) >= 0);
  assert_true(wait_line(&b, "joined carol", 0, 5000) >= 0);
  assert_true(wait_line(&c, "joined alice", 0, 5000) >= 0);
  assert_true(wait_line(&c, "joined bob", 0, 5000) >= 0);
  members_of(sa, got, sizeof got);
  assert_string_equal(got, "bob carol");
  members_of(sc, got, sizeof got);
  assert_string_equal(got, "alice bob");

  /* Typing, said stopped. */
  int mark = count_lines(&a);
  assert_int_equal(mim_set_typing(sb, true), MIM_OK);
  assert_true(wait_line(&a, "typing bob", mark, 5000) >= 0);
  assert_true(wait_line(&c, "typing bob", 0, 5000) >= 0);
  members_of(sa, got, sizeof got);
  assert_string_equal(got, "bob+ carol");
  assert_int_equal(mim_set_typing(sb, false), MIM_OK);
  assert_true(wait_line(&a, "stopped bob", mark, 5000) >= 0);

  /* Typing that lapses: no refresh for MIM_TYPING_EXPIRY_MS. */
  mark = count_lines(&a);
  assert_int_equal(mim_set_typing(sc, true), MIM_OK);
  int t = wait_line(&a, "typing carol", mark, 5000);
  assert_true(t >= 0);
  int s = wait_line(&a, "stopped carol", t, MIM_TYPING_EXPIRY_MS + 5000);
  assert_true(s >= 0);
  assert_true(line_at(&a, s) - line_at(&a, t) >= MIM_TYPING_EXPIRY_MS - 500);

  /* Left, said: at once, well before any expiry (2.5 heartbeats). */
  mark = count_lines(&a);
  int64_t t0 = cmn_mono_ms();
  mim_leave(sb);
  int l = wait_line(&a, "left bob", mark, 5000);
  assert_true(l >= 0);
  assert_true(line_at(&a, l) - t0 < 1000 * scale());
  assert_true(wait_line(&c, "left bob", 0, 5000) >= 0);

  /* Left by expiry: a session that falls silent. */
  mark = count_lines(&a);
  publish_ghost(chat, "ghost", (int)(400 * scale()));
  int g = wait_line(&a, "joined ghost", mark, 5000);
  assert_true(g >= 0);
  int gl = wait_line(&a, "left ghost", g, 5000);
  assert_true(gl >= 0);
  assert_true(line_at(&a, gl) - line_at(&a, g) >= 300 * scale());
  members_of(sa, got, sizeof got);
  assert_string_equal(got, "carol");

  mim_leave(sa);
  mim_leave(sc);
  /* Signals never reach on_message, and nothing was stored. */
  assert_int_equal(a.messages + b.messages + c.messages, 0);
  assert_true(atomic_load(&a.members_ok) > 0);
  assert_list_empty(chat);
  seen_free(&a);
  seen_free(&b);
  seen_free(&c);
}

typedef struct counter {
  atomic_int presence, other;
} counter;

static bool has_bytes(const uint8_t *data, size_t len, const char *word) {
  size_t n = strlen(word);
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(data + i, word, n) == 0)
      return true;
  return false;
}

static void count_item(void *user, const mim_topic_item *item) {
  counter *k = user;
  bool p = has_bytes(item->data, item->len, "\"presence\"");
  atomic_fetch_add(p ? &k->presence : &k->other, 1);
}

/* ---- moderated ---- */

static mim_moderation_verdict accept_all(const mim_message *msg, char **new_text, void *user) {
  (void)msg;
  (void)new_text;
  (void)user;
  return MIM_MODERATION_ACCEPT;
}

static mim_client *user_client(const char *chat, const char *token_id, mim_disposable_token **tok) {
  assert_int_equal(mim_token_generate_moderated(root, CACHE, chat, 600, token_id, tok), MIM_OK);
  return test_client_from_key((*tok)->credential);
}

static void test_moderated(void **state) {
  (void)state;
  char chat[64], got[512];
  new_chat(chat, sizeof chat, "mod");
  const char *chats[] = {chat};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 0, accept_all, NULL, &mod), MIM_OK);
  mim_disposable_token *ta, *tb, *tc;
  mim_client *ca = user_client(chat, "alice", &ta);
  mim_client *cb = user_client(chat, "bob", &tb);
  mim_client *cc = user_client(chat, "carol", &tc);
  seen a, b, c;
  seen_init(&a);
  seen_init(&b);
  seen_init(&c);
  /* Claimed user ids differ from the token ids: the token ids are what count. */
  mim_session *sa = join(ca, chat, "Alice", "claims-a", MIM_CHAT_MODERATED, 1000, &a);
  mim_session *sb = join(cb, chat, "Bob", "claims-b", MIM_CHAT_MODERATED, 1000, &b);
  mim_session *sc = join(cc, chat, "Carol", "claims-c", MIM_CHAT_MODERATED, 1000, &c);
  assert_true(wait_line(&a, "joined bob*", 0, 5000) >= 0);
  assert_true(wait_line(&a, "joined carol*", 0, 5000) >= 0);
  assert_true(wait_line(&b, "joined alice*", 0, 5000) >= 0);
  assert_true(wait_line(&c, "joined alice*", 0, 5000) >= 0);
  assert_true(wait_line(&c, "joined bob*", 0, 5000) >= 0);
  members_of(sb, got, sizeof got);
  assert_string_equal(got, "alice* carol*");

  int mark = count_lines(&a);
  assert_int_equal(mim_set_typing(sc, true), MIM_OK);
  assert_true(wait_line(&a, "typing carol*", mark, 5000) >= 0);
  assert_true(wait_line(&b, "typing carol*", 0, 5000) >= 0);
  assert_int_equal(mim_set_typing(sc, false), MIM_OK);
  assert_true(wait_line(&a, "stopped carol*", mark, 5000) >= 0);

  /* A forged "pub" is replaced by the publisher's token id. */
  char input[96];
  snprintf(input, sizeof input, "%s-input", chat);
  mark = count_lines(&a);
  assert_int_equal(
      mim_topic_publish_text(cc, CACHE, input,
                             "{\"v\":2,\"t\":\"typing\",\"from\":\"x\",\"uid\":\"x\",\"pub\":"
                             "\"zed\",\"sid\":\"forged0000000000\",\"ts\":1,\"on\":true}"),
      MIM_OK);
  assert_true(wait_line(&a, "typing carol*", mark, 5000) >= 0);
  assert_int_equal(wait_line(&a, "joined zed*", 0, 0), -1);

  mark = count_lines(&a);
  mim_leave(sb);
  assert_true(wait_line(&a, "left bob*", mark, 5000) >= 0);
  assert_true(wait_line(&c, "left bob*", 0, 5000) >= 0);
  members_of(sa, got, sizeof got);
  assert_string_equal(got, "carol*+"); /* the relayed typing above, under carol's id */

  mim_leave(sa);
  mim_leave(sc);
  mim_moderator_stop(mod);
  assert_int_equal(a.messages + b.messages + c.messages, 0);
  assert_list_empty(chat);
  mim_client_free(ca);
  mim_client_free(cb);
  mim_client_free(cc);
  mim_disposable_token_free(ta);
  mim_disposable_token_free(tb);
  mim_disposable_token_free(tc);
  seen_free(&a);
  seen_free(&b);
  seen_free(&c);
}

/* A member that floods signals cannot make the moderator flood the chat: it relays 2 a
 * second per publisher (bursts of 5), and another member's signals still go through. */
static void test_moderator_signal_rate(void **state) {
  (void)state;
  char chat[64], input[96];
  new_chat(chat, sizeof chat, "flood");
  snprintf(input, sizeof input, "%s-input", chat);
  const char *chats[] = {chat};
  mim_moderator *mod = NULL;
  assert_int_equal(mim_moderator_start(root, CACHE, chats, 1, 0, accept_all, NULL, &mod), MIM_OK);
  mim_disposable_token *tm, *tn;
  mim_client *cm = user_client(chat, "mallory", &tm);
  mim_client *cn = user_client(chat, "nina", &tn);
  counter k = {0};
  mim_subscription_callbacks cbs = {.struct_size = sizeof cbs, .on_item = count_item, .user = &k};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(root, CACHE, chat, NULL, &cbs, &sub), MIM_OK);
  enum { FLOOD = 60 };
  int64_t t0 = cmn_mono_ms();
  for (int i = 0; i < FLOOD; i++)
    assert_int_equal(
        mim_topic_publish_text(cm, CACHE, input,
                               "{\"v\":2,\"t\":\"presence\",\"from\":\"m\",\"uid\":\"m\","
                               "\"sid\":\"m000000000000000\",\"ts\":1,\"state\":\"here\"}"),
        MIM_OK);
  int64_t secs = (cmn_mono_ms() - t0) / 1000 + 1;
  /* Nina's one signal after the flood: relayed, so the flood's end is known. */
  assert_int_equal(
      mim_topic_publish_text(cn, CACHE, input,
                             "{\"v\":2,\"t\":\"typing\",\"from\":\"n\",\"uid\":"
                             "\"n\",\"sid\":\"n000000000000000\",\"ts\":1,\"on\":true}"),
      MIM_OK);
  int64_t until = cmn_mono_ms() + 5000 * scale();
  while (atomic_load(&k.other) < 1 && cmn_mono_ms() < until)
    sleep_ms(10);
  assert_int_equal(atomic_load(&k.other), 1);
  int relayed = atomic_load(&k.presence);
  print_message("%d of %d flooded signals relayed in about %lld s\n", relayed, FLOOD,
                (long long)secs);
  assert_true(relayed >= 5);
  assert_true(relayed <= 5 + 2 * secs + 1);
  mim_topic_unsubscribe(sub);
  mim_moderator_stop(mod);
  mim_client_free(cm);
  mim_client_free(cn);
  mim_disposable_token_free(tm);
  mim_disposable_token_free(tn);
  assert_list_empty(chat);
}

/* ---- a join during activity ---- */

static void test_join_during_activity(void **state) {
  (void)state;
  char chat[64], got[512];
  new_chat(chat, sizeof chat, "late");
  seen a, b, c;
  seen_init(&a);
  seen_init(&b);
  seen_init(&c);
  /* Heartbeats 8 s apart: the early "here" (at most once per 2 s then) is what tells a
   * newcomer who is here. */
  mim_session *sa = join(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, 8000, &a);
  /* Bob joins after Alice's first "here" went out, within her early-here gap: her answer
   * is deferred to the gap's end, not skipped (else Bob waited for her heartbeat). */
  sleep_ms(300 * scale());
  int64_t tb = cmn_mono_ms();
  mim_session *sb = join(root, chat, "Bob", "bob", MIM_CHAT_CLIENT_ONLY, 8000, &b);
  assert_true(wait_line(&a, "joined bob", 0, 5000) >= 0);
  int ja = wait_line(&b, "joined alice", 0, 5000);
  assert_true(ja >= 0);
  assert_true(line_at(&b, ja) - tb < 4000 * scale());
  assert_int_equal(mim_set_typing(sa, true), MIM_OK); /* activity meanwhile */
  /* Past the early-here gap (a quarter heartbeat), well before the next heartbeat. */
  sleep_ms(2200 * scale());
  int64_t t0 = cmn_mono_ms();
  mim_session *sc = join(root, chat, "Carol", "carol", MIM_CHAT_CLIENT_ONLY, 8000, &c);
  int ia = wait_line(&c, "joined alice", 0, 3000);
  int ib = wait_line(&c, "joined bob", 0, 3000);
  assert_true(ia >= 0 && ib >= 0);
  assert_true(line_at(&c, ia) - t0 < 2500 * scale());
  assert_true(line_at(&c, ib) - t0 < 2500 * scale());
  assert_true(wait_line(&a, "joined carol", 0, 3000) >= 0);
  members_of(sc, got, sizeof got);
  assert_string_equal(got, "alice bob");
  mim_leave(sc);
  mim_leave(sb);
  mim_leave(sa);
  assert_list_empty(chat);
  seen_free(&a);
  seen_free(&b);
  seen_free(&c);
}

/* ---- the cost of an idle chat ---- */

static uint64_t calls_of(mim_client *c) {
  mim_client_stats st = MIM_CLIENT_STATS_INIT;
  assert_int_equal(mim_client_stats_get(c, &st), MIM_OK);
  return st.calls;
}

static void test_idle_rate(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "idle");
  enum { N = 3, HB = 500, WINDOW = 5000 };
  mim_client *cl[N];
  seen s[N];
  mim_session *ss[N];
  static const char *const uid[N] = {"u0", "u1", "u2"};
  for (int i = 0; i < N; i++) {
    cl[i] = test_client_from_key(srv->root_key);
    seen_init(&s[i]);
    ss[i] = join(cl[i], chat, uid[i], uid[i], MIM_CHAT_CLIENT_ONLY, HB, &s[i]);
  }
  for (int i = 0; i < N; i++)
    for (int j = 0; j < N; j++) {
      char line[32];
      snprintf(line, sizeof line, "joined %s", uid[j]);
      assert_true(i == j || wait_line(&s[i], line, 0, 5000) >= 0);
    }
  counter k = {0};
  mim_subscription_callbacks cbs = {.struct_size = sizeof cbs, .on_item = count_item, .user = &k};
  mim_subscription *sub = NULL;
  assert_int_equal(mim_topic_subscribe(root, CACHE, chat, NULL, &cbs, &sub), MIM_OK);
  uint64_t before[N];
  for (int i = 0; i < N; i++)
    before[i] = calls_of(cl[i]);
  sleep_ms((int64_t)WINDOW * scale()); /* the window measured, not a wait for a race */
  /* Heartbeats only, one per interval (+-10 % jitter) and session: WINDOW / HB = 10. */
  for (int i = 0; i < N; i++) {
    uint64_t d = calls_of(cl[i]) - before[i];
    print_message("session %d: %llu publishes in the window\n", i, (unsigned long long)d);
    assert_in_range(d, 8, 12);
  }
  int seen_on_topic = atomic_load(&k.presence);
  print_message("%d presence signals on the topic\n", seen_on_topic);
  assert_in_range(seen_on_topic, N * 8, N * 12);
  assert_int_equal(atomic_load(&k.other), 0);
  mim_topic_unsubscribe(sub);
  for (int i = 0; i < N; i++) {
    mim_leave(ss[i]);
    mim_client_free(cl[i]);
    assert_int_equal(s[i].messages, 0);
    seen_free(&s[i]);
  }
  assert_list_empty(chat);
}

/* ---- async join, leave from a callback, a forgotten session ---- */

typedef struct leaver {
  seen s;
  atomic_int joined; /* on_joined ran with MIM_OK */
} leaver;

/* Leaves from inside on_presence once someone types (the leave is deferred). */
static void leave_on_presence(mim_session *session, mim_presence_change change, const mim_member *m,
                              void *user) {
  on_presence(session, change, m, user);
  if (change == MIM_PRESENCE_TYPING)
    mim_leave(session);
}

static void on_joined(mim_session *session, mim_status st, const char *detail, void *user) {
  (void)session;
  (void)detail;
  leaver *l = user;
  if (st == MIM_OK)
    atomic_store(&l->joined, 1);
}

static void test_async_and_leaves(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "async");
  seen a;
  seen_init(&a);
  mim_session *sa = join(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, 1000, &a);
  leaver l = {0};
  seen_init(&l.s);
  mim_join_options o = MIM_JOIN_OPTIONS_INIT;
  o.display_name = "Dora";
  o.user_id = "dora";
  o.on_presence = leave_on_presence;
  o.presence_heartbeat_ms = (uint32_t)(1000 * scale());
  assert_int_equal(mim_join_async(root, CACHE, chat, &o, on_message, on_joined, &l), MIM_OK);
  /* Dora announces herself after the async join and hears Alice; Alice types, Dora
   * leaves from the callback: Alice sees her come and go. */
  assert_true(wait_line(&a, "joined dora", 0, 5000) >= 0);
  assert_true(wait_line(&l.s, "joined alice", 0, 5000) >= 0);
  assert_int_equal(mim_set_typing(sa, true), MIM_OK);
  assert_true(wait_line(&a, "left dora", 0, 5000) >= 0);
  assert_true(wait_line(&l.s, "typing alice", 0, 0) >= 0);
  assert_int_equal(atomic_load(&l.joined), 1);
  /* A session the application forgets: mim_client_free leaves it, "left" included. */
  mim_client *ce = test_client_from_key(srv->root_key);
  seen e;
  seen_init(&e);
  (void)join(ce, chat, "Eve", "eve", MIM_CHAT_CLIENT_ONLY, 1000, &e);
  assert_true(wait_line(&a, "joined eve", 0, 5000) >= 0);
  mim_client_free(ce);
  assert_true(wait_line(&a, "left eve", 0, 5000) >= 0);
  mim_leave(sa);
  seen_free(&a);
  seen_free(&e);
  seen_free(&l.s);
}

/* ---- a reconnect ---- */

/* Bob's connection is cut: his subscription reconnects and presence goes on, Alice
 * never sees him leave (the cut is far shorter than his ttl) and typing flows both ways
 * after it. */
static void test_reconnect(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "cut");
  chaos_proxy_opts po;
  chaos_proxy_opts_init(&po);
  po.start_paused = 1; /* only the scripted cut below */
  chaos_proxy *proxy = chaos_proxy_start(srv->port, &po);
  assert_non_null(proxy);
  char via[64];
  snprintf(via, sizeof via, "127.0.0.1:%d", chaos_proxy_port(proxy, 0));
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = srv->root_key;
  o.cache_host = o.control_host = o.token_host = via;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 10000 * scale();
  mim_client *cb = NULL;
  assert_int_equal(mim_client_create(&o, &cb), MIM_OK);
  seen a, b;
  seen_init(&a);
  seen_init(&b);
  mim_session *sa = join(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, 1000, &a);
  mim_session *sb = join(cb, chat, "Bob", "bob", MIM_CHAT_CLIENT_ONLY, 1000, &b);
  assert_true(wait_line(&a, "joined bob", 0, 5000) >= 0);
  assert_true(wait_line(&b, "joined alice", 0, 5000) >= 0);
  chaos_proxy_cut_all(proxy);
  /* Three heartbeats later Bob is still here for Alice, and Alice for Bob. */
  sleep_ms(3000 * scale());
  assert_true(wait_line(&b, "typing alice", 0, 0) < 0);
  assert_int_equal(mim_set_typing(sa, true), MIM_OK);
  assert_true(wait_line(&b, "typing alice", 0, 5000) >= 0);
  assert_int_equal(mim_set_typing(sb, true), MIM_OK);
  assert_true(wait_line(&a, "typing bob", 0, 5000) >= 0);
  assert_int_equal(wait_line(&a, "left bob", 0, 0), -1);
  assert_int_equal(wait_line(&b, "left alice", 0, 0), -1);
  chaos_proxy_stats st;
  chaos_proxy_get_stats(proxy, &st);
  assert_true(st.cut >= 1);
  mim_leave(sb);
  assert_true(wait_line(&a, "left bob", 0, 5000) >= 0);
  mim_leave(sa);
  mim_client_free(cb);
  chaos_proxy_stop(proxy);
  seen_free(&a);
  seen_free(&b);
}

/* ---- presence off ---- */

static void test_presence_off(void **state) {
  (void)state;
  char chat[64];
  new_chat(chat, sizeof chat, "off");
  seen a;
  seen_init(&a);
  mim_session *quiet = join(root, chat, "Quiet", "quiet", MIM_CHAT_CLIENT_ONLY, 1000, NULL);
  mim_session *sa = join(root, chat, "Alice", "alice", MIM_CHAT_CLIENT_ONLY, 1000, &a);
  mim_member_list *list = NULL;
  assert_int_equal(mim_members(quiet, &list), MIM_ERR_FAILED_PRECONDITION);
  assert_null(list);
  /* Typing works without presence; a session without presence is not announced. */
  assert_int_equal(mim_set_typing(quiet, true), MIM_OK);
  assert_true(wait_line(&a, "typing quiet", 0, 5000) >= 0);
  assert_int_equal(wait_line(&a, "joined alice", 0, 0), -1);
  mim_leave(quiet);
  mim_leave(sa);
  seen_free(&a);
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
      cmocka_unit_test(test_client_only),
      cmocka_unit_test(test_moderated),
      cmocka_unit_test(test_moderator_signal_rate),
      cmocka_unit_test(test_join_during_activity),
      cmocka_unit_test(test_idle_rate),
      cmocka_unit_test(test_async_and_leaves),
      cmocka_unit_test(test_reconnect),
      cmocka_unit_test(test_presence_off),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
