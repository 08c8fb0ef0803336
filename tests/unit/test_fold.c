/* Unit tests for lib/fold.c (docs/PROTOCOL.md 4.3): events folded into messages, author
 * checks, held events, reactions, caps. No server: values are built as readers get them. */
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
#include "fold.h"
#include "message.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT "fold-chat"

/* A parsed envelope of this type (strings copied; clear with mim_envelope_clear). */
static mim_envelope make(mim_envelope_type type, const char *id, const char *uid, const char *pub,
                         const char *ref, const char *text, const char *key, bool on) {
  mim_envelope e = {.type = type,
                    .id = (char *)id,
                    .from = (char *)"Name",
                    .uid = (char *)uid,
                    .pub = (char *)pub,
                    .text = (char *)(text ? text : ""),
                    .ref = (char *)ref,
                    .key = (char *)key,
                    .on = on,
                    .ts = 42};
  char *json = NULL;
  size_t len = 0;
  assert_int_equal(mim_envelope_build_v2(&e, &json, &len), MIM_OK);
  mim_envelope out;
  assert_true(mim_envelope_parse((const uint8_t *)json, len, &out, NULL));
  free(json);
  return out;
}

/* Delivers a msg to the fold; *m is its view. */
static void msg(mim_fold *f, const char *id, const char *uid, const char *pub, mim_message *m) {
  mim_envelope e = make(MIM_ENV_MSG, id, uid, pub, NULL, "text of msg", NULL, false);
  mim_message_fill(m, &e, CHAT, "", (const uint8_t *)"x", 1, 0, false);
  mim_message_fill_sender(m, &e, f->moderated);
  assert_int_equal(mim_fold_message(f, m), MIM_OK);
  /* The view must not point into the envelope, which goes now. */
  static char keep[8][64];
  static int k;
  snprintf(keep[k % 8], sizeof keep[0], "%s", m->text);
  m->text = keep[k++ % 8];
  m->id = m->sender_id = m->from = m->reply_to = "";
  mim_envelope_clear(&e);
}

/* Delivers an event; returns what the fold says, *cur / *what on a change. */
static mim_fold_result event(mim_fold *f, mim_envelope_type type, const char *id, const char *uid,
                             const char *pub, const char *ref, const char *text, const char *key,
                             bool on, mim_message *cur, mim_update_kind *what) {
  mim_envelope e = make(type, id, uid, pub, ref, text, key, on);
  mim_message m;
  mim_message_fill(&m, &e, CHAT, "", (const uint8_t *)"ev", 2, 7, false);
  mim_fold_result r = mim_fold_event(f, &e, &m, cur, what);
  mim_envelope_clear(&e);
  return r;
}

static void test_edit_delete_by_author(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 100, false), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  msg(&f, "m1", "alice", NULL, &m);
  assert_false(m.edited);
  /* bob may not edit alice's message. */
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e0", "bob", NULL, "m1", "forged", NULL, false, &cur, &what),
      MIM_FOLD_IGNORED);
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e1", "alice", NULL, "m1", "v2", NULL, false, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_int_equal(what, MIM_UPDATE_EDITED);
  assert_string_equal(cur.text, "v2");
  assert_string_equal(cur.id, "m1");
  assert_string_equal(cur.sender_id, "alice");
  assert_true(cur.edited);
  assert_int_equal(cur.edited_ms, 42);
  assert_int_equal(cur.sequence, 7);
  assert_int_equal(
      event(&f, MIM_ENV_DELETE, "d0", "bob", NULL, "m1", NULL, NULL, false, &cur, &what),
      MIM_FOLD_IGNORED);
  assert_int_equal(event(&f, MIM_ENV_REACT, "r1", "bob", NULL, "m1", NULL, "+1", true, &cur, &what),
                   MIM_FOLD_CHANGED);
  assert_int_equal(
      event(&f, MIM_ENV_DELETE, "d1", "alice", NULL, "m1", NULL, NULL, false, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_int_equal(what, MIM_UPDATE_DELETED);
  assert_true(cur.deleted);
  assert_string_equal(cur.text, "");
  assert_int_equal(cur.n_reactions, 0);
  /* Deleted stays deleted: later edits and reactions change nothing. */
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e2", "alice", NULL, "m1", "back", NULL, false, &cur, &what),
      MIM_FOLD_IGNORED);
  assert_int_equal(event(&f, MIM_ENV_REACT, "r2", "bob", NULL, "m1", NULL, "+1", true, &cur, &what),
                   MIM_FOLD_IGNORED);
  assert_int_equal(
      event(&f, MIM_ENV_DELETE, "d2", "alice", NULL, "m1", NULL, NULL, false, &cur, &what),
      MIM_FOLD_UNCHANGED);
  mim_fold_free(&f);
}

static void test_reactions(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 100, false), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  msg(&f, "m1", "alice", NULL, &m);
  assert_int_equal(event(&f, MIM_ENV_REACT, "r1", "bob", NULL, "m1", NULL, "+1", true, &cur, &what),
                   MIM_FOLD_CHANGED);
  assert_int_equal(what, MIM_UPDATE_REACTIONS);
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r2", "carol", NULL, "m1", NULL, "+1", true, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r3", "alice", NULL, "m1", NULL, "heart", true, &cur, &what),
      MIM_FOLD_CHANGED);
  /* Adding again: no change. */
  assert_int_equal(event(&f, MIM_ENV_REACT, "r4", "bob", NULL, "m1", NULL, "+1", true, &cur, &what),
                   MIM_FOLD_UNCHANGED);
  /* Removing an absent one: no change. */
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r5", "bob", NULL, "m1", NULL, "heart", false, &cur, &what),
      MIM_FOLD_UNCHANGED);
  assert_true(mim_fold_view(&f, "m1", CHAT, &cur));
  assert_int_equal(cur.n_reactions, 2);
  assert_string_equal(cur.reactions[0].key, "+1");
  assert_int_equal(cur.reactions[0].count, 2);
  assert_string_equal(cur.reactions[0].users[0], "bob");
  assert_string_equal(cur.reactions[0].users[1], "carol");
  assert_string_equal(cur.reactions[1].key, "heart");
  /* The last user of a key leaves: the key goes, the order of the others stays. */
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r6", "bob", NULL, "m1", NULL, "+1", false, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r7", "carol", NULL, "m1", NULL, "+1", false, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_int_equal(cur.n_reactions, 1);
  assert_string_equal(cur.reactions[0].key, "heart");
  assert_string_equal(cur.reactions[0].users[0], "alice");
  mim_fold_free(&f);
}

static void test_held_events(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 100, false), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  /* Events before their message (e.g. the message came from an older part of the list). */
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e1", "alice", NULL, "m1", "edited", NULL, false, &cur, &what),
      MIM_FOLD_HELD);
  assert_int_equal(event(&f, MIM_ENV_REACT, "r1", "bob", NULL, "m1", NULL, "+1", true, &cur, &what),
                   MIM_FOLD_HELD);
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e2", "mallory", NULL, "m1", "forged", NULL, false, &cur, &what),
      MIM_FOLD_HELD);
  msg(&f, "m1", "alice", NULL, &m);
  assert_string_equal(m.text, "edited");
  assert_true(m.edited);
  assert_int_equal(m.n_reactions, 1);
  assert_int_equal(f.nheld, 0);
  /* At most MIM_FOLD_MAX_HELD are held, oldest dropped first. */
  char id[32];
  for (unsigned i = 0; i <= MIM_FOLD_MAX_HELD; i++) {
    snprintf(id, sizeof id, "h%u", i);
    assert_int_equal(event(&f, MIM_ENV_REACT, id, i == 0 ? "first" : "u", NULL, "m2", NULL, "k",
                           true, &cur, &what),
                     MIM_FOLD_HELD);
  }
  assert_int_equal(f.nheld, MIM_FOLD_MAX_HELD);
  msg(&f, "m2", "alice", NULL, &m);
  assert_int_equal(m.n_reactions, 1);
  assert_int_equal(m.reactions[0].count, 1); /* "first" was dropped, "u" once */
  assert_string_equal(m.reactions[0].users[0], "u");
  mim_fold_free(&f);
}

static void test_moderated_senders(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 100, true), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  msg(&f, "m1", "alice", "tok-alice", &m);
  /* Claiming alice's uid is not enough: the sender is the moderator's pub. */
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e1", "alice", NULL, "m1", "forged", NULL, false, &cur, &what),
      MIM_FOLD_IGNORED);
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e2", "bob", "tok-bob", "m1", "forged", NULL, false, &cur, &what),
      MIM_FOLD_IGNORED);
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e3", "whatever", "tok-alice", "m1", "ok", NULL, false, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_true(cur.sender_trusted);
  assert_string_equal(cur.sender_id, "tok-alice");
  assert_string_equal(cur.publisher_id, "tok-alice");
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r1", "bob", "tok-bob", "m1", NULL, "+1", true, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_string_equal(cur.reactions[0].users[0], "tok-bob");
  mim_fold_free(&f);
}

static void test_capacity(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 3, false), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  msg(&f, "m1", "alice", NULL, &m);
  msg(&f, "m2", "alice", NULL, &m);
  msg(&f, "m3", "alice", NULL, &m);
  msg(&f, "m4", "alice", NULL, &m);
  /* m1's state is gone: an event for it is held, not applied. */
  assert_false(mim_fold_view(&f, "m1", CHAT, &cur));
  assert_int_equal(
      event(&f, MIM_ENV_EDIT, "e1", "alice", NULL, "m1", "x", NULL, false, &cur, &what),
      MIM_FOLD_HELD);
  assert_true(mim_fold_view(&f, "m4", CHAT, &cur));
  /* Keys per message are capped. */
  char key[16];
  for (unsigned i = 0; i < MIM_FOLD_MAX_KEYS; i++) {
    snprintf(key, sizeof key, "k%u", i);
    assert_int_equal(event(&f, MIM_ENV_REACT, key, "bob", NULL, "m4", NULL, key, true, &cur, &what),
                     MIM_FOLD_CHANGED);
  }
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "over", "bob", NULL, "m4", NULL, "over", true, &cur, &what),
      MIM_FOLD_IGNORED);
  assert_true(mim_fold_view(&f, "m4", CHAT, &cur));
  assert_int_equal(cur.n_reactions, MIM_FOLD_MAX_KEYS);
  mim_fold_free(&f);
}

/* A history batch: its events for unknown messages are folded in before the message is
 * delivered, and their own delivery later changes nothing; repeats never apply twice. */
static void test_prepare_and_repeats(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 10, false), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  mim_envelope e = make(MIM_ENV_EDIT, "e1", "alice", NULL, "m1", "new", NULL, false);
  mim_fold_prepare(&f, &e);
  msg(&f, "m1", "alice", NULL, &m);
  assert_string_equal(m.text, "new");
  mim_message em;
  mim_message_fill(&em, &e, CHAT, "", (const uint8_t *)"e", 1, 0, true);
  assert_int_equal(mim_fold_event(&f, &e, &em, &cur, &what), MIM_FOLD_UNCHANGED);
  mim_envelope_clear(&e);
  /* An event of a known message is left to mim_fold_event, which reports it once. */
  e = make(MIM_ENV_REACT, "r1", "bob", NULL, "m1", NULL, "+1", true);
  mim_fold_prepare(&f, &e);
  mim_message_fill(&em, &e, CHAT, "", (const uint8_t *)"e", 1, 0, true);
  assert_int_equal(mim_fold_event(&f, &e, &em, &cur, &what), MIM_FOLD_CHANGED);
  assert_int_equal(mim_fold_event(&f, &e, &em, &cur, &what), MIM_FOLD_UNCHANGED);
  mim_envelope_clear(&e);
  /* off, then the "on" repeated: still off. */
  assert_int_equal(
      event(&f, MIM_ENV_REACT, "r2", "bob", NULL, "m1", NULL, "+1", false, &cur, &what),
      MIM_FOLD_CHANGED);
  assert_int_equal(event(&f, MIM_ENV_REACT, "r1", "bob", NULL, "m1", NULL, "+1", true, &cur, &what),
                   MIM_FOLD_UNCHANGED);
  assert_true(mim_fold_view(&f, "m1", CHAT, &cur));
  assert_int_equal(cur.n_reactions, 0);
  mim_fold_free(&f);
}

/* Packing (mim_history's lists, buffered items) copies the reactions. */
static void test_pack_reactions(void **state) {
  (void)state;
  mim_fold f;
  assert_int_equal(mim_fold_init(&f, 10, false), MIM_OK);
  mim_message m, cur;
  mim_update_kind what;
  msg(&f, "m1", "alice", NULL, &m);
  (void)event(&f, MIM_ENV_REACT, "r1", "bob", NULL, "m1", NULL, "+1", true, &cur, &what);
  (void)event(&f, MIM_ENV_REACT, "r2", "carol", NULL, "m1", NULL, "+1", true, &cur, &what);
  (void)event(&f, MIM_ENV_REACT, "r3", "carol", NULL, "m1", NULL, "wow", true, &cur, &what);
  assert_true(mim_fold_view(&f, "m1", CHAT, &cur));
  assert_true(mim_message_pack(&cur));
  mim_fold_free(&f); /* the packed copy must not need the fold */
  assert_int_equal(cur.n_reactions, 2);
  assert_string_equal(cur.reactions[0].key, "+1");
  assert_string_equal(cur.reactions[0].users[1], "carol");
  assert_string_equal(cur.reactions[1].key, "wow");
  assert_string_equal(cur.reactions[1].users[0], "carol");
  assert_string_equal(cur.id, "m1");
  mim_message_free_packed(&cur);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_edit_delete_by_author),
      cmocka_unit_test(test_reactions),
      cmocka_unit_test(test_held_events),
      cmocka_unit_test(test_moderated_senders),
      cmocka_unit_test(test_capacity),
      cmocka_unit_test(test_prepare_and_repeats),
      cmocka_unit_test(test_pack_reactions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
