/* Unit tests for lib/merge.c: the history + live merge driven by scripted subscription
 * events and list pages, with no server. Each test plays the session's part (asks for a
 * fetch when the merge says so, feeds the page back) and checks what was delivered, in
 * which order, and which gaps were reported. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/im.h>

#include "envelope.h"
#include "merge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT "merge-chat"
#define MAX_SEEN 64
#define MAX_REPORTS 8
#define PAGE 7u

/* What the sink saw. Chat messages are recorded by id, foreign ones as "F:<text>"; a
 * trailing "*" marks a message delivered from the history. */
typedef struct fixture {
  mim_merge mg;
  char seen[MAX_SEEN][80]; /* the first MAX_SEEN since take_seen */
  int nseen;
  long delivered; /* all deliveries */
  mim_status report_status[MAX_REPORTS];
  char report_detail[MAX_REPORTS][200];
  int nreports;
} fixture;

static void on_deliver(void *user, const mim_message *m, const mim_envelope *env) {
  fixture *f = user;
  assert_string_equal(m->chat, CHAT);
  assert_true((env != NULL) == (m->kind == MIM_MESSAGE_CHAT));
  f->delivered++;
  if (f->nseen >= MAX_SEEN)
    return;
  if (m->kind == MIM_MESSAGE_CHAT)
    snprintf(f->seen[f->nseen], sizeof f->seen[0], "%s%s", m->id, m->from_history ? "*" : "");
  else
    snprintf(f->seen[f->nseen], sizeof f->seen[0], "F:%s%s", m->text, m->from_history ? "*" : "");
  f->nseen++;
}

static void on_report(void *user, mim_status status, const char *detail) {
  fixture *f = user;
  assert_true(f->nreports < MAX_REPORTS);
  f->report_status[f->nreports] = status;
  snprintf(f->report_detail[f->nreports], sizeof f->report_detail[0], "%s", detail ? detail : "");
  f->nreports++;
}

static fixture *new_fixture(uint32_t history_cap) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  mim_merge_sink sink = {.deliver = on_deliver, .report = on_report, .user = f};
  assert_int_equal(mim_merge_init(&f->mg, CHAT, history_cap, &sink), MIM_OK);
  return f;
}

static int teardown(void **state) {
  fixture *f = *state;
  if (f) {
    mim_merge_free(&f->mg);
    free(f);
  }
  return 0;
}

/* The deliveries so far, space-separated, then forgotten. */
static const char *take_seen(fixture *f) {
  static char all[MAX_SEEN * 82];
  size_t used = 0;
  all[0] = '\0';
  for (int i = 0; i < f->nseen; i++)
    used += (size_t)snprintf(all + used, sizeof all - used, "%s%s", i ? " " : "", f->seen[i]);
  f->nseen = 0;
  return all;
}

/* ---- scripted input ---- */

static char *envelope_of(const char *id) {
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build(id, "tester", "hello", 1700000000000LL, &json, &len), MIM_OK);
  return json;
}

static void live_bytes(fixture *f, const char *bytes, uint64_t seq, uint64_t page) {
  mim_topic_item item = {.sequence = seq,
                         .sequence_page = page,
                         .publisher_id = "pub",
                         .data = (const uint8_t *)bytes,
                         .len = strlen(bytes)};
  mim_merge_live(&f->mg, &item);
}

static void live(fixture *f, const char *id, uint64_t seq) {
  char *json = envelope_of(id);
  live_bytes(f, json, seq, PAGE);
  free(json);
}

/* A list page of space-separated entries: an id becomes an envelope; "F:x" the foreign
 * value x. Completes the outstanding fetch; returns whether another fetch is wanted. */
static bool page_done(fixture *f, const char *entries) {
  char *copy = strdup(entries);
  char *bufs[MAX_SEEN];
  mim_bytes values[MAX_SEEN];
  size_t n = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    assert_true(n < MAX_SEEN);
    bufs[n] = strncmp(tok, "F:", 2) == 0 ? strdup(tok + 2) : envelope_of(tok);
    values[n] = (mim_bytes){.data = (const uint8_t *)bufs[n], .len = strlen(bufs[n])};
    n++;
  }
  mim_list_values list = {.found = n > 0, .count = n, .values = values};
  bool again = mim_merge_fetch_done(&f->mg, MIM_OK, NULL, &list);
  for (size_t i = 0; i < n; i++)
    free(bufs[i]);
  free(copy);
  return again;
}

/* The subscription is confirmed: the merge asks for the join fetch, which starts. */
static void confirm(fixture *f) {
  assert_true(mim_merge_state(&f->mg, MIM_SUB_CONNECTED));
  assert_true(mim_merge_fetch_begin(&f->mg));
}

/* A merge whose join fetch is outstanding (the test's state, for the teardown). */
static fixture *joining(void **state, uint32_t history_cap) {
  fixture *f = new_fixture(history_cap);
  *state = f;
  confirm(f);
  return f;
}

/* A joined merge over an empty chat. */
static fixture *joined(void **state, uint32_t history_cap) {
  fixture *f = joining(state, history_cap);
  assert_false(page_done(f, ""));
  assert_true(mim_merge_joined(&f->mg));
  return f;
}

/* A discontinuity, the refetch it asks for, and that fetch's page. */
static void gap_refetch(fixture *f, uint64_t last, uint64_t next, uint64_t page,
                        const char *entries) {
  assert_true(mim_merge_discontinuity(&f->mg, last, next, page));
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_false(page_done(f, entries));
}

/* Exactly one report so far: messages were probably lost. */
static void assert_one_loss(const fixture *f, const char *detail_part) {
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->report_status[0], MIM_ERR_RESOURCE_EXHAUSTED);
  assert_non_null(strstr(f->report_detail[0], detail_part));
}

/* ---- join ---- */

static void test_join_history_overlapping_live(void **state) {
  fixture *f = joining(state, 100);
  live(f, "m3", 1);
  live(f, "m4", 2);
  assert_string_equal(take_seen(f), ""); /* buffered until the history is in */
  assert_false(page_done(f, "m1 m2 m3"));
  assert_string_equal(take_seen(f), "m1* m2* m3* m4");
  live(f, "m5", 3);
  assert_string_equal(take_seen(f), "m5");
  assert_int_equal(f->nreports, 0);
}

static void test_live_before_confirmation_is_buffered(void **state) {
  fixture *f = new_fixture(100);
  *state = f;
  live(f, "m2", 1);
  assert_false(mim_merge_joined(&f->mg));
  assert_string_equal(take_seen(f), "");
  confirm(f);
  assert_false(page_done(f, "m1"));
  assert_string_equal(take_seen(f), "m1* m2");
}

static void test_empty_history(void **state) {
  fixture *f = joining(state, 100);
  live(f, "m1", 1);
  assert_false(page_done(f, ""));
  assert_true(mim_merge_joined(&f->mg));
  assert_false(mim_merge_fetching(&f->mg));
  assert_string_equal(take_seen(f), "m1");
  assert_int_equal(f->nreports, 0);
}

static void test_duplicates_dropped(void **state) {
  fixture *f = joining(state, 100);
  live(f, "m2", 1);
  live(f, "m2", 2); /* a retried publish */
  assert_false(page_done(f, "m1 m1 m2"));
  assert_string_equal(take_seen(f), "m1* m2*");
  live(f, "m1", 3);
  live(f, "m3", 4);
  live(f, "m3", 5);
  assert_string_equal(take_seen(f), "m3");
}

/* Not joined, no fetch outstanding, nothing delivered or reported. */
static void assert_join_failed_quietly(fixture *f) {
  assert_false(mim_merge_joined(&f->mg));
  assert_false(mim_merge_fetching(&f->mg));
  assert_string_equal(take_seen(f), "");
  assert_int_equal(f->nreports, 0);
}

/* The join fetch failed: the session fails the join, so nothing is reported here and
 * nothing buffered is delivered. */
static void test_join_fetch_failure(void **state) {
  fixture *f = joining(state, 100);
  live(f, "m1", 1);
  assert_false(mim_merge_fetch_done(&f->mg, MIM_ERR_UNAVAILABLE, "down", NULL));
  assert_join_failed_quietly(f);
}

static void test_join_fetch_not_started(void **state) {
  fixture *f = joining(state, 100);
  live(f, "m1", 1);
  mim_merge_fetch_not_started(&f->mg, MIM_ERR_NO_MEMORY, "out of memory");
  assert_join_failed_quietly(f);
}

/* ---- foreign values ---- */

static void test_foreign_values(void **state) {
  fixture *f = joining(state, 100);
  live_bytes(f, "plain", 1, PAGE);
  assert_false(page_done(f, "F:old m1 F:{\"v\":1}"));
  assert_string_equal(take_seen(f), "F:old* m1* F:{\"v\":1}* F:plain");
  /* Live foreign values have no id to de-duplicate by: each is shown. */
  live_bytes(f, "plain", 2, PAGE);
  live_bytes(f, "plain", 3, PAGE);
  assert_string_equal(take_seen(f), "F:plain F:plain");
  /* A refetch shows the list's foreign values no more (they were shown at the join). */
  assert_true(mim_merge_discontinuity(&f->mg, 3, 5, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_false(page_done(f, "F:old m1 F:{\"v\":1} m2"));
  assert_string_equal(take_seen(f), "m2*");
}

static void test_binary_foreign_value_has_empty_text(void **state) {
  fixture *f = joining(state, 100);
  assert_false(page_done(f, ""));
  const char bin[] = {'a', (char)0xff, 'b', 0};
  live_bytes(f, bin, 1, PAGE);
  assert_string_equal(take_seen(f), "F:");
}

/* ---- discontinuities and gaps ---- */

static void test_discontinuity_refetch_fills_gap(void **state) {
  fixture *f = joined(state, 100);
  live(f, "m1", 1);
  live(f, "m2", 2);
  assert_string_equal(take_seen(f), "m1 m2");
  assert_true(mim_merge_discontinuity(&f->mg, 2, 5, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  live(f, "m5", 5);
  live(f, "m6", 6);
  assert_string_equal(take_seen(f), ""); /* buffered during the refetch */
  assert_false(page_done(f, "m1 m2 m3 m4 m5"));
  assert_string_equal(take_seen(f), "m3* m4* m5* m6");
  assert_int_equal(f->nreports, 0); /* the list still holds m2: the gap is covered */
}

/* The topic skipped more values than the list keeps (values never stored in the list,
 * say), but the list still holds the anchor: the anchor decides, nothing is reported. */
static void test_gap_covered_by_anchor(void **state) {
  fixture *f = joined(state, 3);
  live(f, "m1", 1);
  take_seen(f);
  gap_refetch(f, 1, 6, PAGE, "m1 m2 m3");
  assert_string_equal(take_seen(f), "m2* m3*");
  assert_int_equal(f->nreports, 0);
}

static void test_gap_no_longer_in_list_reported(void **state) {
  fixture *f = joined(state, 3);
  live(f, "m1", 1);
  live(f, "m2", 2);
  take_seen(f);
  assert_true(mim_merge_discontinuity(&f->mg, 2, 6, PAGE)); /* m3..m5 skipped */
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_false(page_done(f, "m4 m5 m6"));
  assert_string_equal(take_seen(f), "m4* m5* m6*");
  assert_one_loss(f, "no longer holds the last message");
}

/* mim-local restarted without persistence: the topic starts a new page and the list
 * is gone. */
static void test_restart_without_persistence_reported(void **state) {
  fixture *f = joined(state, 100);
  live(f, "m1", 1);
  live(f, "m2", 2);
  take_seen(f);
  assert_false(mim_merge_state(&f->mg, MIM_SUB_RECONNECTING));
  assert_false(mim_merge_state(&f->mg, MIM_SUB_CONNECTED)); /* the resumed stream tells */
  assert_true(mim_merge_discontinuity(&f->mg, 2, 1, PAGE + 1));
  assert_true(mim_merge_fetch_begin(&f->mg));
  live_bytes(f, "x", 1, PAGE + 1);
  assert_false(page_done(f, ""));
  assert_string_equal(take_seen(f), "F:x");
  assert_one_loss(f, "no longer holds the last message");
}

/* Nothing delivered before the gap (no anchor): judged by the gap's size. */
static void test_gap_larger_than_cap_without_anchor(void **state) {
  fixture *f = joined(state, 3);
  live_bytes(f, "x", 1, PAGE); /* foreign: no id to anchor on */
  take_seen(f);
  gap_refetch(f, 1, 10, PAGE, "m7 m8 m9");
  assert_string_equal(take_seen(f), "m7* m8* m9*");
  assert_int_equal(f->nreports, 1);
  assert_string_equal(f->report_detail[0],
                      "gap of 8 values larger than the history cap 3: some messages were lost");
}

static void test_gap_within_cap_without_anchor_not_reported(void **state) {
  fixture *f = joined(state, 5);
  live_bytes(f, "x", 1, PAGE);
  take_seen(f);
  gap_refetch(f, 1, 4, PAGE, "m2 m3");
  assert_string_equal(take_seen(f), "m2* m3*");
  assert_int_equal(f->nreports, 0);
}

/* An id too long to keep as an anchor: a full list of nothing delivered means the
 * start of the gap was truncated away. */
static void test_full_list_of_unknown_reported(void **state) {
  fixture *f = joined(state, 3);
  const char *long_id = "a123456789b123456789c123456789d123456789";
  live(f, long_id, 1);
  assert_string_equal(take_seen(f), long_id);
  gap_refetch(f, 1, 3, PAGE, "m3 m4 m5");
  assert_string_equal(take_seen(f), "m3* m4* m5*");
  assert_one_loss(f, "gap of 1 values larger");
}

/* The join fetched only the newest part of the list (m3 m4 of m1..m4): a refetch after
 * a discontinuity delivers what is new since, never the older messages the join left
 * for mim_history_before. */
static void test_refetch_skips_older_than_join(void **state) {
  fixture *f = joining(state, 100);
  assert_false(page_done(f, "m3 m4"));
  assert_string_equal(take_seen(f), "m3* m4*");
  live(f, "m5", 1);
  take_seen(f);
  gap_refetch(f, 1, 3, PAGE, "m1 m2 m3 m4 m5 m6 m7");
  assert_string_equal(take_seen(f), "m6* m7*");
  assert_int_equal(f->nreports, 0);
}

/* When the join's oldest message was truncated away, everything in the list is newer. */
static void test_refetch_after_join_floor_truncated(void **state) {
  fixture *f = joining(state, 3);
  assert_false(page_done(f, "F:x m3 m4"));
  assert_string_equal(take_seen(f), "F:x* m3* m4*");
  gap_refetch(f, 0, 3, PAGE, "m4 m5 m6");
  assert_string_equal(take_seen(f), "m5* m6*");
}

/* A gap of known size after a delivered message: the refetch asks only for the tail that
 * should hold the gap (2 missed + 32), and it holds the anchor. */
static void test_gap_fill_fetches_a_tail(void **state) {
  fixture *f = joined(state, 100);
  live(f, "m1", 1);
  live(f, "m2", 2);
  take_seen(f);
  assert_true(mim_merge_discontinuity(&f->mg, 2, 5, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_int_equal(mim_merge_fetch_window(&f->mg), 34);
  live(f, "m5", 5); /* buffered until the fetch is done */
  assert_false(page_done(f, "m1 m2 m3 m4 m5"));
  assert_string_equal(take_seen(f), "m3* m4* m5*");
  assert_int_equal(f->nreports, 0);
}

/* The tail came back full without the anchor: nothing is delivered, and the next fetch
 * (of the whole list) fills the gap in order, with no loss report. */
static void test_gap_fill_tail_without_anchor_widens(void **state) {
  fixture *f = joined(state, 100);
  live(f, "a0", 1);
  take_seen(f);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  size_t window = mim_merge_fetch_window(&f->mg);
  assert_int_equal(window, 1 + 32);
  char tail[MAX_SEEN * 8] = "", whole[MAX_SEEN * 8] = "a0";
  for (size_t i = 0; i < window; i++) {
    char id[32];
    snprintf(id, sizeof id, "%sb%zu", i ? " " : "", i);
    strcat(tail, id);
    snprintf(id, sizeof id, " b%zu", i);
    strcat(whole, id);
  }
  live(f, "c0", 4);
  assert_true(page_done(f, tail)); /* another fetch wanted */
  assert_string_equal(take_seen(f), "");
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_int_equal(mim_merge_fetch_window(&f->mg), 0);
  assert_false(page_done(f, whole));
  const char *seen = take_seen(f);
  assert_non_null(strstr(seen, "b0* b1* b2*"));
  assert_non_null(strstr(seen, "b32* c0"));
  assert_int_equal(f->delivered, 1 + 33 + 1);
  assert_int_equal(f->nreports, 0);
}

/* Without an anchor, of unknown size, or as large as the list: the whole list. */
static void test_gap_fill_whole_list_when_unsure(void **state) {
  fixture *f = joined(state, 40);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE)); /* nothing delivered: no anchor */
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_int_equal(mim_merge_fetch_window(&f->mg), 0);
  assert_false(page_done(f, "m1"));
  take_seen(f);
  assert_true(mim_merge_discontinuity(&f->mg, 5, 1, 99)); /* another page: unknown size */
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_int_equal(mim_merge_fetch_window(&f->mg), 0);
  assert_false(page_done(f, "m1"));
  assert_true(mim_merge_discontinuity(&f->mg, 1, 10, 99)); /* 8 + 32 >= the cap 40 */
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_int_equal(mim_merge_fetch_window(&f->mg), 0);
  assert_false(page_done(f, "m1"));
}

/* A discontinuity during a fetch: one more fetch after it, which carries the gap. */
static void test_discontinuity_during_fetch_refetches(void **state) {
  fixture *f = joined(state, 3);
  live(f, "m1", 1);
  take_seen(f);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_true(mim_merge_discontinuity(&f->mg, 3, 5, PAGE));
  assert_false(mim_merge_fetch_begin(&f->mg)); /* one at a time */
  assert_true(page_done(f, "m1 m2 m3"));       /* the anchor m1 is there */
  assert_int_equal(f->nreports, 0);
  assert_true(mim_merge_fetch_begin(&f->mg));
  /* The second gap began before m2 and m3 were delivered: its anchor, m1, is gone. */
  assert_false(page_done(f, "m4 m5 m6"));
  assert_string_equal(take_seen(f), "m2* m3* m4* m5* m6*");
  assert_int_equal(f->nreports, 1);
}

/* Two gaps before the fetch that covers them starts: the anchor is the last message
 * delivered before the first one (m1), not before the second (m3). */
static void test_anchor_is_before_the_first_gap(void **state) {
  fixture *f = joined(state, 100);
  live(f, "m1", 1);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE)); /* fetch not begun yet */
  live(f, "m3", 3);
  gap_refetch(f, 3, 5, PAGE, "m2 m3 m4");
  assert_string_equal(take_seen(f), "m1 m3 m2* m4*");
  assert_one_loss(f, "no longer holds the last message");
}

/* Sequence numbers of another page (the topic was reset) say nothing about the gap's
 * size: it is unknown, not next - last - 1. */
static void test_topic_reset_gap_size_unknown(void **state) {
  fixture *f = joined(state, 5);
  live(f, "m1", 1);
  gap_refetch(f, 1, 100, PAGE + 1, "");
  assert_int_equal(f->nreports, 1);
  assert_string_equal(f->report_detail[0],
                      "the history no longer holds the last message delivered before the gap: "
                      "messages may have been lost");
}

/* A stream lost before any value resumes with numbers of unknown meaning. */
static void test_first_discontinuity_without_position_unknown(void **state) {
  fixture *f = joined(state, 2);
  live_bytes(f, "x", 1, 0); /* page 0: no position yet */
  gap_refetch(f, 0, 50, PAGE, "m1");
  assert_int_equal(f->nreports, 0); /* unknown size, no anchor: nothing to judge by */
  gap_refetch(f, 50, 60, PAGE, "m1 m2");
  assert_int_equal(f->nreports, 0); /* the anchor m1 is there */
}

static void test_refetch_failure_reported_and_buffer_drained(void **state) {
  fixture *f = joined(state, 100);
  live(f, "m1", 1);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  live(f, "m3", 3);
  assert_false(mim_merge_fetch_done(&f->mg, MIM_ERR_UNAVAILABLE, "list down", NULL));
  assert_string_equal(take_seen(f), "m1 m3");
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->report_status[0], MIM_ERR_UNAVAILABLE);
  assert_string_equal(f->report_detail[0], "list down");
}

static void test_refetch_not_started_reported_and_buffer_drained(void **state) {
  fixture *f = joined(state, 100);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  live(f, "m3", 3);
  mim_merge_fetch_not_started(&f->mg, MIM_ERR_NO_MEMORY, "no memory");
  assert_string_equal(take_seen(f), "m3");
  assert_int_equal(f->nreports, 1);
  assert_int_equal(f->report_status[0], MIM_ERR_NO_MEMORY);
  assert_false(mim_merge_fetching(&f->mg));
}

/* ---- reconnects ---- */

/* A receiver far behind: the resumed stream replays in order; fetching the list too
 * would show its newest messages before the replayed older ones. */
static void test_reconnect_through_replay_does_not_fetch(void **state) {
  fixture *f = joined(state, 2);
  live(f, "m1", 1);
  assert_false(mim_merge_state(&f->mg, MIM_SUB_RECONNECTING));
  assert_false(mim_merge_state(&f->mg, MIM_SUB_CONNECTED));
  for (int i = 2; i <= 5; i++) {
    char id[32];
    snprintf(id, sizeof id, "m%d", i);
    live(f, id, (uint64_t)i);
  }
  assert_false(mim_merge_fetching(&f->mg));
  assert_string_equal(take_seen(f), "m1 m2 m3 m4 m5");
}

/* Lost before any value: the re-subscribe is live only, so the list fills the gap. */
static void test_blind_reconnect_fetches(void **state) {
  fixture *f = joined(state, 100);
  assert_false(mim_merge_state(&f->mg, MIM_SUB_RECONNECTING));
  assert_true(mim_merge_state(&f->mg, MIM_SUB_CONNECTED));
  assert_true(mim_merge_fetch_begin(&f->mg));
  assert_false(page_done(f, "m1"));
  assert_string_equal(take_seen(f), "m1*");
  assert_false(mim_merge_state(&f->mg, MIM_SUB_CONNECTED)); /* once only */
}

/* ---- the live buffer's bound ---- */

static void test_full_buffer_asks_for_refetch(void **state) {
  fixture *f = joined(state, 100);
  assert_true(mim_merge_discontinuity(&f->mg, 1, 3, PAGE));
  assert_true(mim_merge_fetch_begin(&f->mg));
  for (uint64_t i = 0; i <= 65536; i++)
    live_bytes(f, "x", 3 + i, PAGE); /* one past the bound: dropped */
  assert_int_equal(f->delivered, 0);
  assert_true(page_done(f, "")); /* the dropped one is recovered by one more fetch */
  assert_int_equal(f->delivered, 65536);
  assert_true(mim_merge_fetch_begin(&f->mg));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_join_history_overlapping_live, teardown),
      cmocka_unit_test_teardown(test_live_before_confirmation_is_buffered, teardown),
      cmocka_unit_test_teardown(test_empty_history, teardown),
      cmocka_unit_test_teardown(test_duplicates_dropped, teardown),
      cmocka_unit_test_teardown(test_join_fetch_failure, teardown),
      cmocka_unit_test_teardown(test_join_fetch_not_started, teardown),
      cmocka_unit_test_teardown(test_foreign_values, teardown),
      cmocka_unit_test_teardown(test_binary_foreign_value_has_empty_text, teardown),
      cmocka_unit_test_teardown(test_discontinuity_refetch_fills_gap, teardown),
      cmocka_unit_test_teardown(test_gap_covered_by_anchor, teardown),
      cmocka_unit_test_teardown(test_gap_no_longer_in_list_reported, teardown),
      cmocka_unit_test_teardown(test_restart_without_persistence_reported, teardown),
      cmocka_unit_test_teardown(test_gap_larger_than_cap_without_anchor, teardown),
      cmocka_unit_test_teardown(test_gap_within_cap_without_anchor_not_reported, teardown),
      cmocka_unit_test_teardown(test_full_list_of_unknown_reported, teardown),
      cmocka_unit_test_teardown(test_refetch_skips_older_than_join, teardown),
      cmocka_unit_test_teardown(test_refetch_after_join_floor_truncated, teardown),
      cmocka_unit_test_teardown(test_gap_fill_fetches_a_tail, teardown),
      cmocka_unit_test_teardown(test_gap_fill_tail_without_anchor_widens, teardown),
      cmocka_unit_test_teardown(test_gap_fill_whole_list_when_unsure, teardown),
      cmocka_unit_test_teardown(test_discontinuity_during_fetch_refetches, teardown),
      cmocka_unit_test_teardown(test_anchor_is_before_the_first_gap, teardown),
      cmocka_unit_test_teardown(test_topic_reset_gap_size_unknown, teardown),
      cmocka_unit_test_teardown(test_first_discontinuity_without_position_unknown, teardown),
      cmocka_unit_test_teardown(test_refetch_failure_reported_and_buffer_drained, teardown),
      cmocka_unit_test_teardown(test_refetch_not_started_reported_and_buffer_drained, teardown),
      cmocka_unit_test_teardown(test_reconnect_through_replay_does_not_fetch, teardown),
      cmocka_unit_test_teardown(test_blind_reconnect_fetches, teardown),
      cmocka_unit_test_teardown(test_full_buffer_asks_for_refetch, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
