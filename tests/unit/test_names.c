/* lib/names.c: the rules for cache names, list keys and topic names at their boundaries
 * (empty, blank, the maximum and one byte more, characters each kind refuses, UTF-8),
 * and the detail of a refusal: which name, why, and never more than a bounded prefix. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include "names.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd name of n copies of c. */
static char *repeat(char c, size_t n) {
  char *s = malloc(n + 1);
  assert_non_null(s);
  memset(s, c, n);
  s[n] = '\0';
  return s;
}

static void assert_detail_has(const char *needle) {
  const char *d = mim_last_error_detail();
  if (!strstr(d, needle))
    fail_msg("detail \"%s\" lacks \"%s\"", d, needle);
}

static void test_null_empty_blank(void **state) {
  (void)state;
  assert_int_equal(mim_check_topic_name(NULL), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("topic name is NULL");
  assert_int_equal(mim_check_cache_name(""), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("cache name is empty");
  assert_int_equal(mim_check_list_name("list name", " \t "), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("list name \" \\x09 \"");
  assert_detail_has("whitespace");
  assert_int_equal(mim_check_topic_name("  "), MIM_ERR_INVALID_ARGUMENT);
  assert_int_equal(mim_check_cache_name(" a "), MIM_OK);
  assert_int_equal(mim_check_topic_name("a"), MIM_OK);
  assert_int_equal(mim_check_list_name("list name", "a"), MIM_OK);
}

/* max passes, max + 1 fails with the real size, the limit and a cut quote. */
static void check_length(mim_name_kind kind, size_t max, const char *what) {
  char *ok = repeat('n', max);
  char *over = repeat('n', max + 1);
  assert_int_equal(mim_check_name_as(kind, what, ok, NULL), MIM_OK);
  assert_int_equal(mim_check_name_as(kind, what, over, NULL), MIM_ERR_INVALID_ARGUMENT);
  char want[128];
  snprintf(want, sizeof want, "%s \"%.*s...\" is %zu bytes; Momento allows at most %zu", what,
           MIM_NAME_ECHO, over, max + 1, max);
  assert_string_equal(mim_last_error_detail(), want);
  free(ok);
  free(over);
}

static void test_lengths(void **state) {
  (void)state;
  check_length(MIM_NAME_CACHE, 255, "cache name");
  check_length(MIM_NAME_TOPIC, 255, "topic name");
  check_length(MIM_NAME_LIST, 4096, "list key");
}

/* A 1 MiB name is refused without quoting it all. */
static void test_huge_name_quote_is_bounded(void **state) {
  (void)state;
  char *huge = repeat('h', (size_t)1 << 20);
  assert_int_equal(mim_check_list_name("list key", huge), MIM_ERR_INVALID_ARGUMENT);
  assert_true(strlen(mim_last_error_detail()) < 200);
  assert_detail_has("is 1048576 bytes");
  free(huge);
}

static void test_cache_name_printable_ascii(void **state) {
  (void)state;
  assert_int_equal(mim_check_cache_name("ok-cache_1.~"), MIM_OK);
  assert_int_equal(mim_check_cache_name("tab\there"), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("byte 0x09 at offset 3");
  assert_detail_has("\"tab\\x09here\"");
  assert_int_equal(mim_check_cache_name("caf\xC3\xA9"), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("byte 0xC3 at offset 3");
  assert_int_equal(mim_check_cache_name("del\x7f"), MIM_ERR_INVALID_ARGUMENT);
}

static void test_topic_name_utf8(void **state) {
  (void)state;
  assert_int_equal(mim_check_topic_name("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"), MIM_OK);
  assert_int_equal(mim_check_topic_name("bad \xC3\x28"), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("not valid UTF-8 at offset 4");
  assert_detail_has("\"bad \\xC3(\"");
  assert_int_equal(mim_check_topic_name("\xED\xA0\x80"), MIM_ERR_INVALID_ARGUMENT); /* surrogate */
  assert_int_equal(mim_check_topic_name("cut \xE2\x82"), MIM_ERR_INVALID_ARGUMENT);
  /* 255 bytes of 2-byte characters is the limit too: the limit counts bytes. */
  char name[258] = {0};
  for (size_t i = 0; i < 254; i += 2) {
    name[i] = '\xC3';
    name[i + 1] = '\xA9';
  }
  name[254] = 'x';
  assert_int_equal(mim_check_topic_name(name), MIM_OK);
  name[255] = 'x';
  assert_int_equal(mim_check_topic_name(name), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("is 256 bytes");
}

/* List keys are bytes: anything but NUL (and a blank key) goes. */
static void test_list_key_bytes(void **state) {
  (void)state;
  assert_int_equal(mim_check_list_name("list key", "\xFF\x01 x"), MIM_OK);
  assert_int_equal(mim_check_list_name("list key", "caf\xC3\xA9"), MIM_OK);
}

/* The quote keeps whole characters and escapes quotes and backslashes. */
static void test_quote_escapes(void **state) {
  (void)state;
  assert_int_equal(mim_check_cache_name("a\"b\\\x01"), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("cache name \"a\\x22b\\x5C\\x01\" has byte 0x01 at offset 4");
  /* a 3-byte character across the 40-byte cut is left out whole, not split */
  char name[300];
  memset(name, 'e', 39);
  memcpy(name + 39, "\xE2\x82\xAC", 3);
  memset(name + 42, 'e', 230);
  name[272] = '\0';
  assert_int_equal(mim_check_topic_name(name), MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("eee...\" is 272 bytes");
}

/* The case: a 250-byte chat id fits as list key and topic, but moderated mode
 * also needs "<chat>-input", 256 bytes: the check names that topic. */
static void test_chat_names(void **state) {
  (void)state;
  char *chat = repeat('c', 250);
  assert_int_equal(mim_check_chat_names("mim_join", chat, false), MIM_OK);
  assert_int_equal(mim_check_chat_names("mim_join", chat, true), MIM_ERR_INVALID_ARGUMENT);
  char want[160];
  snprintf(want, sizeof want,
           "mim_join: moderated input topic name \"%.*s...-input\" is 256 bytes; Momento "
           "allows at most 255",
           MIM_NAME_ECHO, chat);
  assert_string_equal(mim_last_error_detail(), want);
  chat[249] = '\0'; /* 249 + 6 = 255: fits */
  assert_int_equal(mim_check_chat_names("mim_join", chat, true), MIM_OK);
  free(chat);
  assert_int_equal(mim_check_chat_names("mim_join", "bad \xC3\x28", false),
                   MIM_ERR_INVALID_ARGUMENT);
  assert_detail_has("mim_join: chat id (its topic name)");
  assert_int_equal(mim_check_chat_names("mim_join", "", true), MIM_ERR_INVALID_ARGUMENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_null_empty_blank),
      cmocka_unit_test(test_lengths),
      cmocka_unit_test(test_huge_name_quote_is_bounded),
      cmocka_unit_test(test_cache_name_printable_ascii),
      cmocka_unit_test(test_topic_name_utf8),
      cmocka_unit_test(test_list_key_bytes),
      cmocka_unit_test(test_quote_escapes),
      cmocka_unit_test(test_chat_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
