/* Every public function refuses a bad argument with MIM_ERR_INVALID_ARGUMENT and a
 * detail naming the function and the argument ("mim_join: chat_id is NULL"). No server:
 * each call fails before anything is sent (the client points at a closed port). */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/client.h>
#include <momento/credentials.h>
#include <momento/dictionary.h>
#include <momento/im.h>
#include <momento/list.h>
#include <momento/token.h>
#include <momento/topics.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define C "cache"

static mim_client *cl;
static mim_permissions *perms;

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s, (void)m, (void)user;
}

static mim_moderation_verdict pass(const mim_message *msg, char **new_text, void *user) {
  (void)msg, (void)new_text, (void)user;
  return MIM_MODERATION_ACCEPT;
}

static void on_joined(mim_session *s, mim_status st, const char *detail, void *user) {
  (void)s, (void)st, (void)detail, (void)user;
}

static void on_fetch(void *user, mim_status st, const char *detail, const mim_list_values *v) {
  (void)user, (void)st, (void)detail, (void)v;
}

/* One bad argument each. */
static mim_status create_no_out(void) {
  return mim_client_create(NULL, NULL);
}
static mim_status create_negative_deadline(void) {
  mim_client *c = NULL;
  mim_client_options o = MIM_CLIENT_OPTIONS_INIT;
  o.default_deadline_ms = -1;
  return mim_client_create(&o, &c);
}
static mim_status stats_no_client(void) {
  mim_client_stats s = MIM_CLIENT_STATS_INIT;
  return mim_client_stats_get(NULL, &s);
}
static mim_status stats_no_out(void) {
  return mim_client_stats_get(cl, NULL);
}
static mim_status ping_no_client(void) {
  return mim_client_ping(NULL);
}
static mim_status cache_create_no_name(void) {
  return mim_cache_create(cl, NULL);
}
static mim_status cache_delete_empty(void) {
  return mim_cache_delete(cl, "");
}
static mim_status check_no_cache(void) {
  return mim_client_check_credentials(cl, NULL);
}
static mim_status creds_no_key(void) {
  mim_credentials *c = NULL;
  return mim_credentials_from_string(NULL, &c);
}
static mim_status creds_no_out(void) {
  return mim_credentials_from_string("key", NULL);
}
static mim_status creds_no_endpoint(void) {
  mim_credentials *c = NULL;
  return mim_credentials_from_key_and_endpoint("key", NULL, &c);
}
static mim_status creds_env_empty_name(void) {
  mim_credentials *c = NULL;
  return mim_credentials_from_env("", &c);
}
static mim_status creds_copy_null(void) {
  mim_credentials *c = NULL;
  return mim_credentials_copy(NULL, &c);
}
static mim_status creds_set_host_null(void) {
  return mim_credentials_set_host(NULL, MIM_HOST_CACHE, "h:1");
}
static mim_status encode_no_token(void) {
  char *k = NULL;
  return mim_credentials_encode_v1("h:1", NULL, &k);
}
static mim_status join_no_client(void) {
  mim_session *s = NULL;
  return mim_join(NULL, C, "chat", NULL, on_message, NULL, &s);
}
static mim_status join_no_cache(void) {
  mim_session *s = NULL;
  return mim_join(cl, NULL, "chat", NULL, on_message, NULL, &s);
}
static mim_status join_no_chat(void) {
  mim_session *s = NULL;
  return mim_join(cl, C, NULL, NULL, on_message, NULL, &s);
}
static mim_status join_empty_chat(void) {
  mim_session *s = NULL;
  return mim_join(cl, C, "", NULL, on_message, NULL, &s);
}
static mim_status join_no_on_message(void) {
  mim_session *s = NULL;
  return mim_join(cl, C, "chat", NULL, NULL, NULL, &s);
}
static mim_status join_no_out(void) {
  return mim_join(cl, C, "chat", NULL, on_message, NULL, NULL);
}
static mim_status join_bad_mode(void) {
  mim_session *s = NULL;
  mim_join_options o = MIM_JOIN_OPTIONS_INIT;
  o.mode = (mim_chat_mode)7;
  return mim_join(cl, C, "chat", &o, on_message, NULL, &s);
}
static mim_status join_async_no_chat(void) {
  return mim_join_async(cl, C, NULL, NULL, on_message, on_joined, NULL);
}
static mim_status join_async_no_on_joined(void) {
  return mim_join_async(cl, C, "chat", NULL, on_message, NULL, NULL);
}
static mim_status history_no_session(void) {
  mim_message_list *l = NULL;
  return mim_history(NULL, 0, &l);
}
static mim_status send_no_session(void) {
  return mim_send(NULL, "hi", NULL);
}
static mim_status send_opts_no_session(void) {
  return mim_send_with_options(NULL, "hi", NULL, NULL);
}
static mim_status message_id_no_out(void) {
  return mim_message_id_new(NULL);
}
static mim_status edit_no_session(void) {
  return mim_edit(NULL, "id", "t", NULL);
}
static mim_status delete_no_session(void) {
  return mim_delete(NULL, "id", NULL);
}
static mim_status react_no_session(void) {
  return mim_react(NULL, "id", "+1", true, NULL);
}
static mim_status set_typing_no_session(void) {
  return mim_set_typing(NULL, true);
}
static mim_status members_no_session(void) {
  mim_member_list *l = NULL;
  return mim_members(NULL, &l);
}
static mim_status remove_no_session(void) {
  return mim_remove_message(NULL, "id");
}
static mim_status mark_read_no_session(void) {
  return mim_mark_read(NULL, "id");
}
static mim_status unread_no_session(void) {
  size_t n = 0;
  return mim_unread_count(NULL, &n, NULL);
}
static mim_status read_markers_no_session(void) {
  mim_read_marker_list *l = NULL;
  return mim_read_markers(NULL, &l);
}
static mim_status moderator_no_chats(void) {
  mim_moderator *m = NULL;
  return mim_moderator_start(cl, C, NULL, 1, 0, pass, NULL, &m);
}
static mim_status moderator_no_filter(void) {
  mim_moderator *m = NULL;
  const char *chats[] = {"chat"};
  return mim_moderator_start(cl, C, chats, 1, 0, NULL, NULL, &m);
}
static mim_status moderator_null_chat(void) {
  mim_moderator *m = NULL;
  const char *chats[] = {"chat", NULL};
  return mim_moderator_start(cl, C, chats, 2, 0, pass, NULL, &m);
}
static mim_status push_no_client(void) {
  return mim_list_push_back(NULL, C, "l", "v", 1, NULL, NULL);
}
static mim_status push_empty_cache(void) {
  return mim_list_push_back(cl, "", "l", "v", 1, NULL, NULL);
}
static mim_status push_no_list(void) {
  return mim_list_push_front(cl, C, NULL, "v", 1, NULL, NULL);
}
static mim_status push_no_value(void) {
  return mim_list_push_back(cl, C, "l", NULL, 3, NULL, NULL);
}
static mim_status fetch_no_out(void) {
  return mim_list_fetch(cl, C, "l", NULL, NULL);
}
static mim_status length_no_cache(void) {
  uint32_t n;
  return mim_list_length(cl, NULL, "l", &n, NULL);
}
static mim_status concat_no_values(void) {
  return mim_list_concat_back(cl, C, "l", NULL, 2, NULL, NULL);
}
static mim_status erase_no_ranges(void) {
  return mim_list_erase(cl, C, "l", NULL, 2, NULL);
}
static mim_status item_delete_no_key(void) {
  return mim_item_delete(cl, C, NULL);
}
static mim_status fetch_async_no_cb(void) {
  return mim_list_fetch_async(cl, C, "l", NULL, NULL, NULL);
}
static mim_status fetch_async_no_list(void) {
  return mim_list_fetch_async(cl, C, NULL, NULL, on_fetch, NULL);
}
static mim_status dict_set_no_client(void) {
  return mim_dictionary_set_field(NULL, C, "d", "f", 1, "v", 1, NULL);
}
static mim_status dict_set_no_field(void) {
  return mim_dictionary_set_field(cl, C, "d", NULL, 1, "v", 1, NULL);
}
static mim_status dict_set_no_value(void) {
  return mim_dictionary_set_field(cl, C, "d", "f", 1, NULL, 2, NULL);
}
static mim_status dict_get_no_dictionary(void) {
  return mim_dictionary_get_field(cl, C, NULL, "f", 1, NULL, NULL, NULL);
}
static mim_status dict_get_no_field(void) {
  return mim_dictionary_get_field(cl, C, "d", NULL, 1, NULL, NULL, NULL);
}
static mim_status dict_fetch_no_out(void) {
  return mim_dictionary_fetch(cl, C, "d", NULL);
}
static mim_status dict_fetch_no_cache(void) {
  mim_dictionary_entries *e = NULL;
  return mim_dictionary_fetch(cl, NULL, "d", &e);
}
static mim_status publish_no_text(void) {
  return mim_topic_publish_text(cl, C, "t", NULL);
}
static mim_status publish_no_topic(void) {
  return mim_topic_publish_binary(cl, C, NULL, "x", 1);
}
static mim_status publish_no_data(void) {
  return mim_topic_publish_binary(cl, C, "t", NULL, 3);
}
static mim_status subscribe_no_callbacks(void) {
  mim_subscription *s = NULL;
  return mim_topic_subscribe(cl, C, "t", NULL, NULL, &s);
}
static mim_status subscribe_async_no_out(void) {
  mim_subscription_callbacks cbs = MIM_SUBSCRIPTION_CALLBACKS_INIT;
  return mim_topic_subscribe_async(cl, C, "t", NULL, &cbs, NULL);
}
static mim_status perms_null(void) {
  return mim_permissions_add_cache(NULL, MIM_CACHE_READ_ONLY, C, NULL, false);
}
static mim_status generate_no_perms(void) {
  mim_disposable_token *t = NULL;
  return mim_token_generate(cl, NULL, 60, NULL, &t);
}
static mim_status generate_zero_validity(void) {
  mim_disposable_token *t = NULL;
  return mim_token_generate(cl, perms, 0, NULL, &t);
}
static mim_status generate_client_only_no_chat(void) {
  mim_disposable_token *t = NULL;
  return mim_token_generate_client_only(cl, C, NULL, 60, NULL, &t);
}
static mim_status generate_moderated_no_cache(void) {
  mim_disposable_token *t = NULL;
  return mim_token_generate_moderated(cl, NULL, "chat", 60, NULL, &t);
}
static mim_status direct_id_no_user_a(void) {
  char out[MIM_DIRECT_CHAT_ID_SIZE];
  return mim_direct_chat_id(NULL, "bob", out);
}
static mim_status direct_id_no_out(void) {
  return mim_direct_chat_id("alice", "bob", NULL);
}
static mim_status generate_direct_no_other(void) {
  mim_disposable_token *t = NULL;
  return mim_token_generate_direct(cl, C, "alice", NULL, MIM_CHAT_CLIENT_ONLY, 60, &t);
}
static mim_status generate_direct_no_cache(void) {
  mim_disposable_token *t = NULL;
  return mim_token_generate_direct(cl, NULL, "alice", "bob", MIM_CHAT_MODERATED, 60, &t);
}

typedef struct arg_case {
  mim_status (*call)(void);
  const char *function; /* the public function the detail must name */
  const char *argument; /* and the words naming the bad argument */
} arg_case;

static const arg_case cases[] = {
    {create_no_out, "mim_client_create", "out is NULL"},
    {create_negative_deadline, "mim_client_create", "default_deadline_ms"},
    {stats_no_client, "mim_client_stats_get", "client is NULL"},
    {stats_no_out, "mim_client_stats_get", "out is NULL"},
    {ping_no_client, "mim_client_ping", "client is NULL"},
    {cache_create_no_name, "mim_cache_create", "cache name is NULL"},
    {cache_delete_empty, "mim_cache_delete", "cache name is empty"},
    {check_no_cache, "mim_client_check_credentials", "cache name is NULL"},
    {creds_no_key, "mim_credentials_from_string", "key is NULL"},
    {creds_no_out, "mim_credentials_from_string", "out is NULL"},
    {creds_no_endpoint, "mim_credentials_from_key_and_endpoint", "endpoint is NULL"},
    {creds_env_empty_name, "mim_credentials_from_env", "var_name is empty"},
    {creds_copy_null, "mim_credentials_copy", "creds is NULL"},
    {creds_set_host_null, "mim_credentials_set_host", "creds is NULL"},
    {encode_no_token, "mim_credentials_encode_v1", "auth_token is NULL"},
    {join_no_client, "mim_join", "client is NULL"},
    {join_no_cache, "mim_join", "cache is NULL"},
    {join_no_chat, "mim_join", "chat_id is NULL"},
    {join_empty_chat, "mim_join", "chat_id is empty"},
    {join_no_on_message, "mim_join", "on_message is NULL"},
    {join_no_out, "mim_join", "out is NULL"},
    {join_bad_mode, "mim_join", "options->mode"},
    {join_async_no_chat, "mim_join_async", "chat_id is NULL"},
    {join_async_no_on_joined, "mim_join_async", "on_joined"},
    {history_no_session, "mim_history", "session"},
    {mark_read_no_session, "mim_mark_read", "session is NULL"},
    {unread_no_session, "mim_unread_count", "session is NULL"},
    {read_markers_no_session, "mim_read_markers", "session is NULL"},
    {send_no_session, "mim_send", "session"},
    {send_opts_no_session, "mim_send_with_options", "session"},
    {message_id_no_out, "mim_message_id_new", "out"},
    {edit_no_session, "mim_edit", "session"},
    {delete_no_session, "mim_delete", "session"},
    {react_no_session, "mim_react", "session"},
    {remove_no_session, "mim_remove_message", "session"},
    {set_typing_no_session, "mim_set_typing", "session"},
    {members_no_session, "mim_members", "session"},
    {moderator_no_chats, "mim_moderator_start", "chat_ids is NULL"},
    {moderator_no_filter, "mim_moderator_start", "filter is NULL"},
    {moderator_null_chat, "mim_moderator_start", "chat_ids[1] is NULL"},
    {push_no_client, "mim_list_push_back", "client is NULL"},
    {push_empty_cache, "mim_list_push_back", "cache name is empty"},
    {push_no_list, "mim_list_push_front", "list name is NULL"},
    {push_no_value, "mim_list_push_back", "value is NULL"},
    {fetch_no_out, "mim_list_fetch", "out is NULL"},
    {length_no_cache, "mim_list_length", "cache name is NULL"},
    {concat_no_values, "mim_list_concat_back", "values is NULL"},
    {erase_no_ranges, "mim_list_erase", "ranges is NULL"},
    {item_delete_no_key, "mim_item_delete", "key is NULL"},
    {fetch_async_no_cb, "mim_list_fetch_async", "cb is NULL"},
    {dict_set_no_client, "mim_dictionary_set_field", "client is NULL"},
    {dict_set_no_field, "mim_dictionary_set_field", "field is NULL"},
    {dict_set_no_value, "mim_dictionary_set_field", "value is NULL"},
    {dict_get_no_dictionary, "mim_dictionary_get_field", "dictionary name is NULL"},
    {dict_get_no_field, "mim_dictionary_get_field", "field is NULL"},
    {dict_fetch_no_out, "mim_dictionary_fetch", "out is NULL"},
    {dict_fetch_no_cache, "mim_dictionary_fetch", "cache name is NULL"},
    {fetch_async_no_list, "mim_list_fetch_async", "list name is NULL"},
    {publish_no_text, "mim_topic_publish_text", "text is NULL"},
    {publish_no_topic, "mim_topic_publish_binary", "topic name is NULL"},
    {publish_no_data, "mim_topic_publish_binary", "data is NULL"},
    {subscribe_no_callbacks, "mim_topic_subscribe", "callbacks is NULL"},
    {subscribe_async_no_out, "mim_topic_subscribe_async", "out is NULL"},
    {perms_null, "mim_permissions_add_cache", "perms is NULL"},
    {generate_no_perms, "mim_token_generate", "perms is NULL"},
    {generate_zero_validity, "mim_token_generate", "valid_for_seconds is 0"},
    {generate_client_only_no_chat, "mim_token_generate_client_only", "chat_id is NULL"},
    {generate_moderated_no_cache, "mim_token_generate_moderated", "cache is NULL"},
    {direct_id_no_user_a, "mim_direct_chat_id", "user_a is NULL"},
    {direct_id_no_out, "mim_direct_chat_id", "out is NULL"},
    {generate_direct_no_other, "mim_token_generate_direct", "other_user_id is NULL"},
    {generate_direct_no_cache, "mim_token_generate_direct", "cache is NULL"},
};

static void test_each_bad_argument_is_named(void **state) {
  (void)state;
  int bad = 0;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    mim_status st = cases[i].call();
    const char *d = mim_last_error_detail();
    char fn[96];
    snprintf(fn, sizeof fn, "%s: ", cases[i].function);
    bool ok = st == MIM_ERR_INVALID_ARGUMENT && strncmp(d, fn, strlen(fn)) == 0 &&
              strstr(d, cases[i].argument) != NULL;
    if (!ok) {
      print_error("case %zu (%s, %s): %s \"%s\"\n", i, cases[i].function, cases[i].argument,
                  mim_status_name(st), d);
      bad++;
    }
  }
  assert_int_equal(bad, 0);
}

static int setup(void **state) {
  (void)state;
  char *key = NULL;
  if (mim_credentials_encode_v1("127.0.0.1:1", "token", &key) != MIM_OK)
    return -1;
  mim_client_options o = MIM_CLIENT_OPTIONS_INIT;
  o.api_key = key;
  o.tls = MIM_TLS_OFF;
  mim_status st = mim_client_create(&o, &cl);
  free(key);
  perms = mim_permissions_new();
  return st == MIM_OK && perms &&
                 mim_permissions_add_cache(perms, MIM_CACHE_READ_ONLY, C, NULL, false) == MIM_OK
             ? 0
             : -1;
}

static int teardown(void **state) {
  (void)state;
  mim_permissions_free(perms);
  mim_client_free(cl);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_each_bad_argument_is_named),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
