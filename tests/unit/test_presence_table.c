/* Unit tests for the pure parts of typing and presence, with no server: signal JSON
 * (lib/chat_signal.c), the presence table (lib/roster.c) and the moderator's per-sender
 * rate limit (lib/rate_table.c). The clock is passed in, so expiries are exact. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "chat_signal.h"
#include "rate_table.h"
#include "roster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- signals ---- */

static mim_signal_parse_result parse(const char *json, mim_signal *sig) {
  return mim_signal_parse((const uint8_t *)json, strlen(json), sig, NULL);
}

static void test_signal_round_trip(void **state) {
  (void)state;
  mim_signal in = {.kind = MIM_SIGNAL_PRESENCE,
                   .from = "Alice",
                   .uid = "alice",
                   .pub = "",
                   .sid = "0123456789abcdef",
                   .ts = 1764806400000,
                   .here = true,
                   .ttl_ms = 75000};
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_signal_build(&in, &json, &len), MIM_OK);
  assert_string_equal(json, "{\"v\":2,\"t\":\"presence\",\"from\":\"Alice\",\"uid\":\"alice\","
                            "\"sid\":\"0123456789abcdef\",\"ts\":1764806400000,"
                            "\"state\":\"here\",\"ttl\":75000}");
  mim_signal out;
  assert_int_equal(mim_signal_parse((const uint8_t *)json, len, &out, NULL), MIM_SIGNAL_OK);
  assert_int_equal(out.kind, MIM_SIGNAL_PRESENCE);
  assert_true(out.here);
  assert_int_equal(out.ttl_ms, 75000);
  assert_string_equal(out.uid, "alice");
  assert_string_equal(out.pub, "");
  mim_signal_clear(&out);
  free(json);
  in = (mim_signal){.kind = MIM_SIGNAL_TYPING,
                    .from = "Bob",
                    .uid = "bob",
                    .pub = "tok-bob",
                    .sid = "s1",
                    .ts = 5,
                    .on = true};
  assert_int_equal(mim_signal_build(&in, &json, &len), MIM_OK);
  assert_string_equal(json, "{\"v\":2,\"t\":\"typing\",\"from\":\"Bob\",\"uid\":\"bob\","
                            "\"pub\":\"tok-bob\",\"sid\":\"s1\",\"ts\":5,\"on\":true}");
  free(json);
}

static void test_signal_not_a_signal(void **state) {
  (void)state;
  mim_signal sig;
  /* Messages (also ones whose text names a signal type), foreign bytes. */
  assert_int_equal(parse("{\"v\":1,\"id\":\"a\",\"from\":\"x\",\"text\":\"hi\",\"ts\":1}", &sig),
                   MIM_SIGNAL_NONE);
  assert_int_equal(
      parse("{\"v\":2,\"t\":\"msg\",\"id\":\"a\",\"from\":\"x\",\"text\":\"typing\",\"ts\":1}",
            &sig),
      MIM_SIGNAL_NONE);
  assert_int_equal(parse("typing presence", &sig), MIM_SIGNAL_NONE);
  assert_int_equal(parse("[\"typing\"]", &sig), MIM_SIGNAL_NONE);
  assert_int_equal(mim_signal_parse(NULL, 0, &sig, NULL), MIM_SIGNAL_NONE);
}

static void test_signal_bad(void **state) {
  (void)state;
  static const char *const bad[] = {
      /* no sid */
      "{\"v\":2,\"t\":\"typing\",\"from\":\"a\",\"uid\":\"a\",\"ts\":1,\"on\":true}",
      /* on not a boolean */
      "{\"v\":2,\"t\":\"typing\",\"from\":\"a\",\"uid\":\"a\",\"sid\":\"s\",\"ts\":1,\"on\":1}",
      /* unknown state */
      "{\"v\":2,\"t\":\"presence\",\"from\":\"a\",\"sid\":\"s\",\"ts\":1,\"state\":\"gone\"}",
      /* ttl out of range (one literal on two lines) */
      ("{\"v\":2,\"t\":\"presence\",\"from\":\"a\",\"sid\":\"s\",\"ts\":1,\"state\":\"here\","
       "\"ttl\":300001}"),
      /* ts missing */
      "{\"v\":2,\"t\":\"presence\",\"from\":\"a\",\"sid\":\"s\",\"state\":\"here\"}",
      /* uid empty, v 1 */
      "{\"v\":2,\"t\":\"typing\",\"from\":\"a\",\"uid\":\"\",\"sid\":\"s\",\"ts\":1,\"on\":true}",
      "{\"v\":1,\"t\":\"typing\",\"from\":\"a\",\"sid\":\"s\",\"ts\":1,\"on\":true}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    mim_signal sig;
    const char *reason = NULL;
    assert_int_equal(mim_signal_parse((const uint8_t *)bad[i], strlen(bad[i]), &sig, &reason),
                     MIM_SIGNAL_BAD);
    assert_non_null(reason);
    assert_null(sig.sid);
  }
  /* jansson refuses \u0000 outright: that is not JSON a signal can be, so foreign. */
  mim_signal sig;
  assert_int_equal(
      parse("{\"v\":2,\"t\":\"typing\",\"from\":\"a\\u0000\",\"sid\":\"s\",\"ts\":1,\"on\":true}",
            &sig),
      MIM_SIGNAL_NONE);
}

static void test_signal_build_limits(void **state) {
  (void)state;
  char big[5000];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  mim_signal in = {.kind = MIM_SIGNAL_TYPING, .from = big, .uid = "u", .sid = "s", .on = true};
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_signal_build(&in, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  assert_null(json);
  in.from = "\xff";
  assert_int_equal(mim_signal_build(&in, &json, &len), MIM_ERR_INVALID_ARGUMENT);
  in.from = "a";
  in.sid = "";
  assert_int_equal(mim_signal_build(&in, &json, &len), MIM_ERR_INVALID_ARGUMENT);
}

/* ---- the presence table ---- */

#define MAX_EVENTS 64

typedef struct events {
  int n;
  char line[MAX_EVENTS][160];
} events;

static const char *const CHANGE[] = {"joined", "left", "typing", "stopped"};

static void record(void *user, mim_presence_change change, const mim_member *m) {
  events *e = user;
  if (e->n < MAX_EVENTS)
    snprintf(e->line[e->n++], sizeof e->line[0], "%s %s%s(%s)%s", CHANGE[change], m->user_id,
             m->trusted ? "*" : "", m->display_name, m->typing ? " typing" : "");
}

static mim_signal sig_of(mim_signal_kind kind, const char *uid, const char *pub, const char *sid,
                         bool flag, int64_t ttl) {
  mim_signal s = {.kind = kind,
                  .from = (char *)(uid[0] ? uid : "anon"),
                  .uid = (char *)uid,
                  .pub = (char *)pub,
                  .sid = (char *)sid,
                  .ttl_ms = ttl};
  if (kind == MIM_SIGNAL_TYPING)
    s.on = flag;
  else
    s.here = flag;
  return s;
}

static void here(mim_roster *r, const char *uid, const char *sid, int64_t now, int64_t ttl) {
  mim_signal s = sig_of(MIM_SIGNAL_PRESENCE, uid, "", sid, true, ttl);
  (void)mim_roster_apply(r, &s, now, now, 75000);
}

static void expect(events *e, int i, const char *line) {
  assert_true(i < e->n);
  assert_string_equal(e->line[i], line);
}

static void test_roster_join_leave_sessions(void **state) {
  (void)state;
  events e = {0};
  mim_roster r;
  mim_roster_init(&r, false, record, &e);
  mim_signal s = sig_of(MIM_SIGNAL_PRESENCE, "alice", "", "a1", true, 0);
  assert_true(mim_roster_apply(&r, &s, 0, 0, 75000)); /* new session */
  assert_false(mim_roster_apply(&r, &s, 10, 10, 75000));
  s.sid = "a2"; /* a second session of alice: no second "joined" */
  assert_true(mim_roster_apply(&r, &s, 20, 20, 75000));
  here(&r, "bob", "b1", 30, 0);
  assert_int_equal(e.n, 2);
  expect(&e, 0, "joined alice(alice)");
  expect(&e, 1, "joined bob(bob)");
  s.here = false; /* a2 leaves: alice still has a1 */
  assert_false(mim_roster_apply(&r, &s, 40, 40, 75000));
  assert_int_equal(e.n, 2);
  s.sid = "a1";
  (void)mim_roster_apply(&r, &s, 50, 50, 75000);
  expect(&e, 2, "left alice(alice)");
  mim_member_list *list = NULL;
  assert_int_equal(mim_roster_list(&r, &list), MIM_OK);
  assert_int_equal(list->count, 1);
  assert_string_equal(list->members[0].user_id, "bob");
  assert_false(list->members[0].trusted);
  assert_int_equal(list->members[0].last_seen_ms, 30);
  mim_member_list_free(list);
  (void)mim_roster_apply(&r, &s, 60, 60, 75000); /* left of someone unknown: nothing */
  assert_int_equal(e.n, 3);
  mim_roster_free(&r);
}

static void test_roster_expiry_uses_ttl(void **state) {
  (void)state;
  events e = {0};
  mim_roster r;
  mim_roster_init(&r, false, record, &e);
  here(&r, "alice", "a1", 0, 500); /* expires at 500 */
  here(&r, "bob", "b1", 0, 0);     /* default: 75000 */
  assert_int_equal(mim_roster_tick(&r, 100), 500);
  assert_int_equal(mim_roster_tick(&r, 499), 500);
  assert_int_equal(e.n, 2);
  /* Heard again (a typing signal carries no ttl): the ttl it announced stays. */
  mim_signal t = sig_of(MIM_SIGNAL_TYPING, "alice", "", "a1", false, 0);
  (void)mim_roster_apply(&r, &t, 400, 400, 75000);
  assert_int_equal(mim_roster_tick(&r, 899), 900);
  assert_int_equal(mim_roster_tick(&r, 900), 75000);
  expect(&e, 2, "left alice(alice)");
  assert_int_equal(mim_roster_tick(&r, 75000), INT64_MAX);
  expect(&e, 3, "left bob(bob)");
  assert_int_equal(r.count, 0);
  mim_roster_free(&r);
}

static void test_roster_typing(void **state) {
  (void)state;
  events e = {0};
  mim_roster r;
  mim_roster_init(&r, false, record, &e);
  mim_signal t = sig_of(MIM_SIGNAL_TYPING, "alice", "", "a1", true, 0);
  assert_true(mim_roster_apply(&r, &t, 0, 0, 75000)); /* typing also says: here */
  expect(&e, 0, "joined alice(alice)");
  expect(&e, 1, "typing alice(alice) typing");
  (void)mim_roster_apply(&r, &t, 3000, 3000, 75000); /* a refresh: no new event */
  assert_int_equal(e.n, 2);
  t.on = false;
  (void)mim_roster_apply(&r, &t, 4000, 4000, 75000);
  expect(&e, 2, "stopped alice(alice)");
  t.on = true;
  (void)mim_roster_apply(&r, &t, 5000, 5000, 75000);
  expect(&e, 3, "typing alice(alice) typing");
  /* Lapses MIM_TYPING_EXPIRY_MS after the last "on". */
  assert_int_equal(mim_roster_tick(&r, 5000 + MIM_TYPING_EXPIRY_MS - 1),
                   5000 + MIM_TYPING_EXPIRY_MS);
  assert_int_equal(e.n, 4);
  (void)mim_roster_tick(&r, 5000 + MIM_TYPING_EXPIRY_MS);
  expect(&e, 4, "stopped alice(alice)");
  /* Typing, then leaving: stopped first, then left. */
  (void)mim_roster_apply(&r, &t, 20000, 20000, 75000);
  mim_signal bye = sig_of(MIM_SIGNAL_PRESENCE, "alice", "", "a1", false, 0);
  (void)mim_roster_apply(&r, &bye, 20001, 20001, 75000);
  expect(&e, 5, "typing alice(alice) typing");
  expect(&e, 6, "stopped alice(alice)");
  expect(&e, 7, "left alice(alice)");
  /* Her "stopped typing" published before the "left" but arriving after it (publishes
   * are not ordered) does not bring her back, nor does one from a stranger. */
  t.on = false;
  assert_false(mim_roster_apply(&r, &t, 20002, 20002, 75000));
  mim_signal stranger = sig_of(MIM_SIGNAL_TYPING, "zed", "", "z1", false, 0);
  assert_false(mim_roster_apply(&r, &stranger, 20003, 20003, 75000));
  assert_int_equal(e.n, 8);
  assert_int_equal(r.count, 0);
  mim_roster_free(&r);
}

static void test_roster_moderated_sender(void **state) {
  (void)state;
  events e = {0};
  mim_roster r;
  mim_roster_init(&r, true, record, &e);
  /* Two sessions claiming different uids under one token are one trusted member. */
  mim_signal s = sig_of(MIM_SIGNAL_PRESENCE, "alice", "tok-a", "s1", true, 0);
  (void)mim_roster_apply(&r, &s, 0, 0, 75000);
  s = sig_of(MIM_SIGNAL_PRESENCE, "mallory", "tok-a", "s2", true, 0);
  (void)mim_roster_apply(&r, &s, 0, 0, 75000);
  /* Without pub (not relayed): the claimed uid, untrusted, a member of its own. */
  s = sig_of(MIM_SIGNAL_PRESENCE, "tok-a", "", "s3", true, 0);
  (void)mim_roster_apply(&r, &s, 0, 0, 75000);
  assert_int_equal(e.n, 2);
  expect(&e, 0, "joined tok-a*(alice)");
  expect(&e, 1, "joined tok-a(tok-a)");
  mim_member_list *list = NULL;
  assert_int_equal(mim_roster_list(&r, &list), MIM_OK);
  assert_int_equal(list->count, 2);
  assert_true(list->members[0].trusted);
  assert_string_equal(list->members[0].display_name, "mallory"); /* the latest name */
  mim_member_list_free(list);
  mim_roster_free(&r);
}

static void test_roster_bounds(void **state) {
  (void)state;
  mim_roster r;
  mim_roster_init(&r, false, NULL, NULL);
  char uid[32], sid[32];
  for (unsigned i = 0; i < MIM_ROSTER_MAX_MEMBERS + 10; i++) {
    snprintf(uid, sizeof uid, "u%u", i);
    here(&r, uid, "s", 0, 0);
  }
  assert_int_equal(r.count, MIM_ROSTER_MAX_MEMBERS);
  /* A member's ninth session replaces the one heard of least recently. */
  for (unsigned i = 0; i < MIM_ROSTER_MAX_SIDS + 1; i++) {
    snprintf(sid, sizeof sid, "x%u", i);
    here(&r, "u0", sid, 100 + i, 1000);
  }
  /* "s" (heard at 0, ttl 75000) was replaced: the rest expire by 1000 + 108. */
  (void)mim_roster_tick(&r, 1200);
  assert_int_equal(r.count, MIM_ROSTER_MAX_MEMBERS - 1);
  mim_roster_free(&r);
}

/* ---- the moderator's rate limit ---- */

static void test_rate_table(void **state) {
  (void)state;
  mim_rate_table t;
  mim_rate_table_init(&t, 2.0, 5.0);
  int allowed = 0;
  for (int i = 0; i < 20; i++)
    allowed += mim_rate_table_take(&t, "alice", 0);
  assert_int_equal(allowed, 5);                   /* the burst */
  assert_true(mim_rate_table_take(&t, "bob", 0)); /* per publisher */
  assert_false(mim_rate_table_take(&t, "alice", 499));
  assert_true(mim_rate_table_take(&t, "alice", 500)); /* 2 a second */
  /* Over 10 s at 100 a second: the burst plus 2 a second. */
  allowed = 0;
  for (int ms = 1000; ms < 11000; ms += 10)
    allowed += mim_rate_table_take(&t, "carol", ms);
  assert_in_range(allowed, 5 + 19, 5 + 21);
  /* Bounded: more keys than the table holds still work. */
  char key[32];
  for (unsigned i = 0; i < MIM_RATE_TABLE_MAX + 5; i++) {
    snprintf(key, sizeof key, "k%u", i);
    assert_true(mim_rate_table_take(&t, key, 20000));
  }
  assert_int_equal(t.count, MIM_RATE_TABLE_MAX);
  mim_rate_table_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signal_round_trip),
      cmocka_unit_test(test_signal_not_a_signal),
      cmocka_unit_test(test_signal_bad),
      cmocka_unit_test(test_signal_build_limits),
      cmocka_unit_test(test_roster_join_leave_sessions),
      cmocka_unit_test(test_roster_expiry_uses_ttl),
      cmocka_unit_test(test_roster_typing),
      cmocka_unit_test(test_roster_moderated_sender),
      cmocka_unit_test(test_roster_bounds),
      cmocka_unit_test(test_rate_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
