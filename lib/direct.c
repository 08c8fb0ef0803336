/*
 * Direct chats (docs/PROTOCOL.md, section 7): the deterministic chat id of two users and
 * the token that lets one of them into it. The id is computed locally; the token is one
 * of the two seed policies, so a direct chat is an ordinary chat in either mode.
 */
#include "error.h"
#include "names.h"
#include "utf8.h"

#include <momento/im.h>
#include <openssl/sha.h>
#include <string.h>

/* Bytes of the digest the id keeps: 128 bits make a collision between two pairs
 * practically impossible while keeping the id short. */
#define DIGEST_KEPT 16

static mim_status check_user(const char *what, const char *user, size_t *len) {
  if (!user)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is NULL", what);
  *len = strnlen(user, MIM_DIRECT_USER_ID_MAX + 1);
  if (*len == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is empty", what);
  if (*len > MIM_DIRECT_USER_ID_MAX)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is longer than %d bytes", what,
                    MIM_DIRECT_USER_ID_MAX);
  if (!cmn_utf8_valid(user, *len))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is not valid UTF-8", what);
  return MIM_OK;
}

/* Byte order with a proper prefix first, so both users put the pair the same way. */
static bool less_or_equal(const char *a, size_t na, const char *b, size_t nb) {
  int c = memcmp(a, b, na < nb ? na : nb);
  return c < 0 || (c == 0 && na <= nb);
}

static void hex_id(const unsigned char *digest, char out[MIM_DIRECT_CHAT_ID_SIZE]) {
  static const char hex[] = "0123456789abcdef";
  memcpy(out, "dm-", 3);
  for (size_t i = 0; i < DIGEST_KEPT; i++) {
    out[3 + 2 * i] = hex[digest[i] >> 4];
    out[4 + 2 * i] = hex[digest[i] & 0xf];
  }
  out[3 + 2 * DIGEST_KEPT] = '\0';
}

/* The id of two checked user ids (names: what errors call them). */
static mim_status direct_id(const char *name_a, const char *a, const char *name_b, const char *b,
                            char out[MIM_DIRECT_CHAT_ID_SIZE]) {
  size_t na = 0, nb = 0;
  mim_status st = check_user(name_a, a, &na);
  if (st == MIM_OK)
    st = check_user(name_b, b, &nb);
  if (st != MIM_OK) {
    out[0] = '\0';
    return st;
  }
  if (!less_or_equal(a, na, b, nb)) {
    const char *t = a;
    size_t nt = na;
    a = b, na = nb, b = t, nb = nt;
  }
  /* x || 0x00 || y: the separator keeps ("ab","c") and ("a","bc") apart. */
  unsigned char buf[2 * MIM_DIRECT_USER_ID_MAX + 1];
  memcpy(buf, a, na);
  buf[na] = 0;
  memcpy(buf + na + 1, b, nb);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(buf, na + 1 + nb, digest);
  hex_id(digest, out);
  return MIM_OK;
}

MIM_API mim_status mim_direct_chat_id(const char *user_a, const char *user_b,
                                      char out[MIM_DIRECT_CHAT_ID_SIZE]) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  return mim_arg_in(__func__, direct_id("user_a", user_a, "user_b", user_b, out));
}

/* The arguments the seed policy functions would name under their own names. */
static mim_status check_direct_args(const mim_client *client, const char *cache, mim_chat_mode mode,
                                    uint32_t valid_for_seconds) {
  if (!client)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  if (!cache || !*cache)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "cache is %s", cache ? "empty" : "NULL");
  if (mode != MIM_CHAT_CLIENT_ONLY && mode != MIM_CHAT_MODERATED)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mode %d is not a mim_chat_mode", (int)mode);
  if (valid_for_seconds == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "valid_for_seconds is 0");
  return mim_check_cache_name(cache);
}

MIM_API mim_status mim_token_generate_direct(mim_client *client, const char *cache,
                                             const char *user_id, const char *other_user_id,
                                             mim_chat_mode mode, uint32_t valid_for_seconds,
                                             mim_disposable_token **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  char chat[MIM_DIRECT_CHAT_ID_SIZE];
  mim_status st = check_direct_args(client, cache, mode, valid_for_seconds);
  if (st == MIM_OK)
    st = direct_id("user_id", user_id, "other_user_id", other_user_id, chat);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  /* The seed policies themselves, so a direct chat's token grants exactly what any
   * chat's token of that mode grants (docs/PROTOCOL.md, section 8). */
  if (mode == MIM_CHAT_MODERATED)
    return mim_token_generate_moderated(client, cache, chat, valid_for_seconds, user_id, out);
  return mim_token_generate_client_only(client, cache, chat, valid_for_seconds, user_id, out);
}
