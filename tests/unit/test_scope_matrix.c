/* The scope matrix of the instant-messaging pattern, run through the public API against
 * mim-local: for each of the two policies (client-only, moderated) x every list
 * operation, dictionary operation (on C-read and, refused by type, on C), topic operation and
 * token-minting attempt x the token's own chat / another chat, the expected MIM_OK or
 * MIM_ERR_PERMISSION_DENIED (spec "Permissions" and "The two policies"; server/README.md "Tokens").
 * Every cell is run; the cells that disagree are printed together before the test fails. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "mim_local.h"
#include "test_client.h"

#include <momento/dictionary.h>
#include <momento/list.h>
#include <momento/token.h>
#include <momento/topics.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CACHE "instant-messaging"
#define OWN_CHAT "chat-own"
#define OTHER_CHAT "chat-other"
#define OK MIM_OK
#define NO MIM_ERR_PERMISSION_DENIED
#define WT MIM_ERR_FAILED_PRECONDITION /* admitted, but the item is of another type */

static mim_local *srv;
static mim_client *root;

static int setup(void **state) {
  (void)state;
  const char *caches[] = {CACHE, NULL};
  return test_local_start(caches, &srv, &root);
}

static int teardown(void **state) {
  (void)state;
  return test_local_stop(&srv, &root);
}

/* ---- the operations: each takes the chat id it targets ---- */

typedef mim_status (*op_fn)(mim_client *c, const char *chat);

static const mim_list_write_options g_wopt = {
    .struct_size = sizeof(mim_list_write_options), .ttl_ms = 60000, .refresh_ttl = true};
static const mim_bytes g_two[] = {{(const uint8_t *)"x", 1}, {(const uint8_t *)"y", 1}};

static mim_status op_push_back(mim_client *c, const char *chat) {
  return mim_list_push_back(c, CACHE, chat, "m", 1, &g_wopt, NULL);
}
static mim_status op_push_front(mim_client *c, const char *chat) {
  return mim_list_push_front(c, CACHE, chat, "m", 1, &g_wopt, NULL);
}
static mim_status op_concat_back(mim_client *c, const char *chat) {
  return mim_list_concat_back(c, CACHE, chat, g_two, 2, &g_wopt, NULL);
}
static mim_status op_concat_front(mim_client *c, const char *chat) {
  return mim_list_concat_front(c, CACHE, chat, g_two, 2, &g_wopt, NULL);
}
static mim_status op_fetch(mim_client *c, const char *chat) {
  mim_list_values *v = NULL;
  mim_status st = mim_list_fetch(c, CACHE, chat, NULL, &v);
  mim_list_values_free(v);
  return st;
}
static mim_status op_length(mim_client *c, const char *chat) {
  uint32_t n = 0;
  return mim_list_length(c, CACHE, chat, &n, NULL);
}
static mim_status op_retain(mim_client *c, const char *chat) {
  mim_list_range r = {.has_start = true, .start = 0, .has_end = true, .end = 2};
  return mim_list_retain(c, CACHE, chat, &r, &g_wopt, NULL);
}
static mim_status op_remove_value(mim_client *c, const char *chat) {
  return mim_list_remove_value(c, CACHE, chat, "m", 1, NULL);
}
static mim_status op_erase(mim_client *c, const char *chat) {
  mim_list_erase_range r = {.begin = 0, .count = 1};
  return mim_list_erase(c, CACHE, chat, &r, 1, NULL);
}
static mim_status op_pop_front(mim_client *c, const char *chat) {
  return mim_list_pop_front(c, CACHE, chat, NULL, NULL, NULL);
}
static mim_status op_pop_back(mim_client *c, const char *chat) {
  return mim_list_pop_back(c, CACHE, chat, NULL, NULL, NULL);
}
static mim_status op_item_delete(mim_client *c, const char *chat) {
  return mim_item_delete(c, CACHE, chat);
}
static mim_status op_item_ttl(mim_client *c, const char *chat) {
  return mim_item_ttl(c, CACHE, chat, NULL, NULL);
}

/* Dictionary calls on the chat's read-marker dictionary "C-read" and on C itself. */
static void read_dict(const char *chat, char *buf, size_t cap) {
  snprintf(buf, cap, "%s-read", chat);
}
static mim_status op_dict_set(mim_client *c, const char *chat) {
  char d[64];
  read_dict(chat, d, sizeof d);
  return mim_dictionary_set_field(c, CACHE, d, "alice", 5, "m", 1, NULL);
}
static mim_status op_dict_get(mim_client *c, const char *chat) {
  char d[64];
  read_dict(chat, d, sizeof d);
  return mim_dictionary_get_field(c, CACHE, d, "alice", 5, NULL, NULL, NULL);
}
static mim_status op_dict_fetch(mim_client *c, const char *chat) {
  char d[64];
  read_dict(chat, d, sizeof d);
  mim_dictionary_entries *e = NULL;
  mim_status st = mim_dictionary_fetch(c, CACHE, d, &e);
  mim_dictionary_entries_free(e);
  return st;
}
static mim_status op_dict_set_on_list(mim_client *c, const char *chat) {
  return mim_dictionary_set_field(c, CACHE, chat, "alice", 5, "m", 1, NULL);
}
static mim_status op_dict_get_on_list(mim_client *c, const char *chat) {
  return mim_dictionary_get_field(c, CACHE, chat, "alice", 5, NULL, NULL, NULL);
}

static void input_topic(const char *chat, char *buf, size_t cap) {
  snprintf(buf, cap, "%s-input", chat);
}

static mim_status op_publish_chat(mim_client *c, const char *chat) {
  return mim_topic_publish_text(c, CACHE, chat, "{\"v\":1}");
}
static mim_status op_publish_input(mim_client *c, const char *chat) {
  char t[64];
  input_topic(chat, t, sizeof t);
  return mim_topic_publish_text(c, CACHE, t, "{\"v\":1}");
}

static void ignore_item(void *user, const mim_topic_item *item) {
  (void)user;
  (void)item;
}

/* Subscribes (waiting for the server's confirmation) and at once unsubscribes. */
static mim_status subscribe_once(mim_client *c, const char *topic) {
  mim_subscription_callbacks cb = {.struct_size = sizeof(mim_subscription_callbacks),
                                   .on_item = ignore_item};
  mim_subscription *sub = NULL;
  mim_status st = mim_topic_subscribe(c, CACHE, topic, NULL, &cb, &sub);
  if (st == MIM_OK) {
    mim_topic_unsubscribe(sub);
  }
  return st;
}
static mim_status op_subscribe_chat(mim_client *c, const char *chat) {
  return subscribe_once(c, chat);
}
static mim_status op_subscribe_input(mim_client *c, const char *chat) {
  char t[64];
  input_topic(chat, t, sizeof t);
  return subscribe_once(c, t);
}

/* Minting from the disposable token: each returned token is freed at once. */
static mim_status mint(mim_client *c, mim_permissions *p) {
  mim_disposable_token *tok = NULL;
  mim_status st = p ? mim_token_generate(c, p, 60, "minted", &tok) : MIM_ERR_NO_MEMORY;
  mim_disposable_token_free(tok);
  mim_permissions_free(p);
  return st;
}
/* Narrower than both policies: read the chat's list, subscribe to its topic. */
static mim_status op_mint_narrower(mim_client *c, const char *chat) {
  mim_permissions *p = mim_permissions_new();
  if (p && (mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, chat, false) != MIM_OK ||
            mim_permissions_add_topic(p, MIM_TOPIC_SUBSCRIBE_ONLY, CACHE, chat, false) != MIM_OK)) {
    mim_permissions_free(p);
    p = NULL;
  }
  return mint(c, p);
}
/* Broader: every item of the cache. */
static mim_status op_mint_all_items(mim_client *c, const char *chat) {
  (void)chat;
  mim_permissions *p = mim_permissions_new();
  if (p && mim_permissions_add_cache(p, MIM_CACHE_READ_WRITE, CACHE, NULL, false) != MIM_OK) {
    mim_permissions_free(p);
    p = NULL;
  }
  return mint(c, p);
}
/* Broader: every topic of the cache. */
static mim_status op_mint_all_topics(mim_client *c, const char *chat) {
  (void)chat;
  mim_permissions *p = mim_permissions_new();
  if (p &&
      mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, NULL, false) != MIM_OK) {
    mim_permissions_free(p);
    p = NULL;
  }
  return mint(c, p);
}
/* Broader: a prefix that covers the chat and more. */
static mim_status op_mint_prefix(mim_client *c, const char *chat) {
  mim_permissions *p = mim_permissions_new();
  if (p && mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, CACHE, chat, true) != MIM_OK) {
    mim_permissions_free(p);
    p = NULL;
  }
  return mint(c, p);
}
/* The two policies re-minted for the chat: refused like every mint by a disposable token. */
static mim_status op_mint_client_only(mim_client *c, const char *chat) {
  mim_disposable_token *tok = NULL;
  mim_status st = mim_token_generate_client_only(c, CACHE, chat, 60, "minted", &tok);
  mim_disposable_token_free(tok);
  return st;
}
static mim_status op_mint_moderated(mim_client *c, const char *chat) {
  mim_disposable_token *tok = NULL;
  mim_status st = mim_token_generate_moderated(c, CACHE, chat, 60, "minted", &tok);
  mim_disposable_token_free(tok);
  return st;
}

/* ---- the table ---- */

typedef enum { POL_CLIENT_ONLY, POL_MODERATED, POL_COUNT } policy;
static const char *const g_policy_names[] = {"client-only", "moderated"};

typedef struct row {
  const char *name;
  op_fn fn;
  bool needs_list; /* reset the target lists before the cell (list operations) */
  /* [policy][0 = own chat, 1 = other chat] */
  mim_status want[POL_COUNT][2];
} row;

/* Own chat: client-only may read and write its list and publish/subscribe its topic;
 * moderated may only read the list, publish to C-input and subscribe to C. Another chat
 * is never covered. Minting: a disposable token never mints, not even a narrower token
 * (server/README.md "Tokens"; issue 13: a child could outlive it or take another id). */
static const row g_rows[] = {
    {"list push back", op_push_back, true, {{OK, NO}, {NO, NO}}},
    {"list push front", op_push_front, true, {{OK, NO}, {NO, NO}}},
    {"list concat back", op_concat_back, true, {{OK, NO}, {NO, NO}}},
    {"list concat front", op_concat_front, true, {{OK, NO}, {NO, NO}}},
    {"list fetch", op_fetch, true, {{OK, NO}, {OK, NO}}},
    {"list length", op_length, true, {{OK, NO}, {OK, NO}}},
    {"list retain", op_retain, true, {{OK, NO}, {NO, NO}}},
    {"list remove value", op_remove_value, true, {{OK, NO}, {NO, NO}}},
    {"list erase", op_erase, true, {{OK, NO}, {NO, NO}}},
    {"list pop front", op_pop_front, true, {{OK, NO}, {NO, NO}}},
    {"list pop back", op_pop_back, true, {{OK, NO}, {NO, NO}}},
    {"item delete", op_item_delete, true, {{OK, NO}, {NO, NO}}},
    {"item ttl", op_item_ttl, true, {{OK, NO}, {OK, NO}}},
    {"dictionary set on C-read", op_dict_set, true, {{OK, NO}, {OK, NO}}},
    {"dictionary get on C-read", op_dict_get, true, {{OK, NO}, {OK, NO}}},
    {"dictionary fetch on C-read", op_dict_fetch, true, {{OK, NO}, {OK, NO}}},
    /* Permitted or not before the type: C holds a list, which a dictionary call may not
     * touch; the moderated read-only grant admits the get but never the set. */
    {"dictionary set on C (a list)", op_dict_set_on_list, true, {{WT, NO}, {NO, NO}}},
    {"dictionary get on C (a list)", op_dict_get_on_list, true, {{WT, NO}, {WT, NO}}},
    {"publish on C", op_publish_chat, false, {{OK, NO}, {NO, NO}}},
    {"publish on C-input", op_publish_input, false, {{NO, NO}, {OK, NO}}},
    {"subscribe on C", op_subscribe_chat, false, {{OK, NO}, {OK, NO}}},
    {"subscribe on C-input", op_subscribe_input, false, {{NO, NO}, {NO, NO}}},
    {"mint narrower (read C, subscribe C)", op_mint_narrower, false, {{NO, NO}, {NO, NO}}},
    {"mint client-only policy for C", op_mint_client_only, false, {{NO, NO}, {NO, NO}}},
    {"mint moderated policy for C", op_mint_moderated, false, {{NO, NO}, {NO, NO}}},
    {"mint broader (all items)", op_mint_all_items, false, {{NO, NO}, {NO, NO}}},
    {"mint broader (all topics)", op_mint_all_topics, false, {{NO, NO}, {NO, NO}}},
    {"mint broader (key prefix C*)", op_mint_prefix, false, {{NO, NO}, {NO, NO}}},
};
#define N_ROWS (sizeof g_rows / sizeof g_rows[0])

/* Puts both chats' lists back into a known state (3 values), and their read-marker
 * dictionaries (one field), as the super-user, so a
 * list operation never depends on what the previous cell did. */
static void reset_lists(void) {
  const char *chats[] = {OWN_CHAT, OTHER_CHAT};
  const mim_bytes vals[] = {
      {(const uint8_t *)"m", 1}, {(const uint8_t *)"n", 1}, {(const uint8_t *)"m", 1}};
  for (size_t i = 0; i < 2; i++) {
    assert_int_equal(mim_item_delete(root, CACHE, chats[i]), MIM_OK);
    assert_int_equal(mim_list_concat_back(root, CACHE, chats[i], vals, 3, &g_wopt, NULL), MIM_OK);
    char d[64];
    read_dict(chats[i], d, sizeof d);
    assert_int_equal(mim_item_delete(root, CACHE, d), MIM_OK);
    assert_int_equal(mim_dictionary_set_field(root, CACHE, d, "bob", 3, "n", 1, NULL), MIM_OK);
  }
}

static mim_client *policy_client(policy p) {
  mim_disposable_token *tok = NULL;
  mim_status st = p == POL_CLIENT_ONLY
                      ? mim_token_generate_client_only(root, CACHE, OWN_CHAT, 3600, "alice", &tok)
                      : mim_token_generate_moderated(root, CACHE, OWN_CHAT, 3600, "alice", &tok);
  assert_int_equal(st, MIM_OK);
  mim_client *c = test_client_from_key(tok->credential);
  mim_disposable_token_free(tok);
  return c;
}

static void test_scope_matrix(void **state) {
  (void)state;
  const char *chats[] = {OWN_CHAT, OTHER_CHAT};
  size_t cells = 0, failed = 0;
  char report[8192] = "";
  size_t used = 0;
  for (int p = 0; p < POL_COUNT; p++) {
    mim_client *c = policy_client((policy)p);
    for (size_t r = 0; r < N_ROWS; r++) {
      for (int other = 0; other < 2; other++) {
        if (g_rows[r].needs_list) {
          reset_lists();
        }
        mim_status want = g_rows[r].want[p][other];
        mim_status got = g_rows[r].fn(c, chats[other]);
        cells++;
        if (got != want) {
          failed++;
          int n = snprintf(report + used, sizeof report - used,
                           "  %-12s %-38s %-10s want %s, got %s (%s)\n", g_policy_names[p],
                           g_rows[r].name, other ? "other chat" : "own chat", mim_status_name(want),
                           mim_status_name(got), mim_last_error_detail());
          if (n > 0 && (size_t)n < sizeof report - used) {
            used += (size_t)n;
          }
        }
      }
    }
    mim_client_free(c);
  }
  if (failed) {
    print_message("scope matrix: cells that disagree with the spec:\n%s", report);
  }
  print_message("scope matrix: %zu cells (%d policies x %zu operations x 2 chats), %zu failed\n",
                cells, (int)POL_COUNT, (size_t)N_ROWS, failed);
  assert_int_equal(cells, (size_t)POL_COUNT * N_ROWS * 2);
  assert_int_equal(failed, 0);
}

/* The matrix must be able to fail: a super-user passes cells the policies deny. */
static void test_root_is_not_scoped(void **state) {
  (void)state;
  reset_lists();
  assert_int_equal(op_push_back(root, OTHER_CHAT), MIM_OK);
  assert_int_equal(op_publish_input(root, OTHER_CHAT), MIM_OK);
  assert_int_equal(op_mint_all_items(root, OTHER_CHAT), MIM_OK);
}

/* A list read of a missing list is MIM_OK with found = false, also under a read grant. */
static void test_missing_list_read_is_ok(void **state) {
  (void)state;
  assert_int_equal(mim_item_delete(root, CACHE, OWN_CHAT), MIM_OK);
  mim_client *c = policy_client(POL_MODERATED);
  mim_list_values *v = NULL;
  assert_int_equal(mim_list_fetch(c, CACHE, OWN_CHAT, NULL, &v), MIM_OK);
  assert_non_null(v);
  assert_false(v->found);
  mim_list_values_free(v);
  uint32_t n = 7;
  bool found = true;
  assert_int_equal(mim_list_length(c, CACHE, OWN_CHAT, &n, &found), MIM_OK);
  assert_false(found);
  assert_int_equal(n, 0);
  mim_client_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scope_matrix),
      cmocka_unit_test(test_root_is_not_scoped),
      cmocka_unit_test(test_missing_list_read_is_ok),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
