/* The name rules of names.h. */
#include "names.h"

#include "chat_defaults.h"
#include "error.h"
#include "utf8.h"

#include <stdio.h>
#include <string.h>

/* Room for MIM_NAME_ECHO bytes escaped as \xNN, "...", a suffix and the NUL. */
#define ECHO_CAP (MIM_NAME_ECHO * 4 + 64)

static size_t max_len(mim_name_kind kind) {
  if (kind == MIM_NAME_CACHE)
    return MIM_MAX_CACHE_NAME;
  return kind == MIM_NAME_TOPIC ? MIM_MAX_TOPIC_NAME : MIM_MAX_LIST_NAME;
}

/* Length of the valid UTF-8 multi-byte sequence at s[0..n), or 0 when there is none. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : 2;
  if (s[0] < 0xc2 || s[0] > 0xf4 || len > n || !cmn_utf8_valid(s, len))
    return 0;
  return len;
}

/* Writes at most MIM_NAME_ECHO bytes of name[0..len) into out, quoted so a detail stays
 * readable text: printable ASCII and whole UTF-8 characters as they are, '"', '\\' and
 * every other byte as \xNN; "..." when cut; then suffix. */
static void echo_name(char *out, const char *name, size_t len, const char *suffix) {
  const unsigned char *s = (const unsigned char *)name;
  size_t n = len < MIM_NAME_ECHO ? len : MIM_NAME_ECHO;
  size_t o = 0;
  size_t i = 0;
  while (i < n) {
    size_t seq = s[i] >= 0x80 ? utf8_seq(s + i, len - i) : 0;
    if (seq && i + seq > n)
      break; /* a character the cut would split: leave it out whole */
    if (seq) {
      memcpy(out + o, s + i, seq);
      o += seq;
      i += seq;
    } else if (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') {
      out[o++] = (char)s[i++];
    } else {
      o += (size_t)snprintf(out + o, ECHO_CAP - o, "\\x%02X", s[i++]);
    }
  }
  snprintf(out + o, ECHO_CAP - o, "%s%s", i < len ? "..." : "", suffix ? suffix : "");
}

static bool is_blank(const char *s, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (!strchr(" \t\n\v\f\r", s[i]))
      return false;
  return true;
}

/* Offset of the first byte the kind does not allow in name[0..len), or SIZE_MAX. Cache
 * names are gRPC metadata (printable ASCII), topic names proto3 strings (UTF-8); list
 * keys are bytes and any byte but NUL (which a C string cannot hold) goes. */
static size_t bad_byte_at(mim_name_kind kind, const char *name, size_t len) {
  if (kind == MIM_NAME_TOPIC)
    return cmn_utf8_invalid_at(name, len);
  if (kind == MIM_NAME_CACHE)
    for (size_t i = 0; i < len; i++)
      if ((unsigned char)name[i] < 0x20 || (unsigned char)name[i] > 0x7e)
        return i;
  return SIZE_MAX;
}

static mim_status fail_chars(mim_name_kind kind, const char *what, const char *echo, size_t at,
                             unsigned char byte) {
  if (kind == MIM_NAME_CACHE)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "%s \"%s\" has byte 0x%02X at offset %zu; a cache name travels as gRPC "
                    "metadata and may hold printable ASCII only",
                    what, echo, byte, at);
  return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                  "%s \"%s\" is not valid UTF-8 at offset %zu; Momento takes it as a string", what,
                  echo, at);
}

mim_status mim_check_name_as(mim_name_kind kind, const char *what, const char *name,
                             const char *suffix) {
  if (!name)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is NULL", what);
  if (!*name)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is empty", what);
  size_t max = max_len(kind);
  size_t slen = suffix ? strlen(suffix) : 0;
  size_t len = strnlen(name, max + 1); /* bounded: a valid name is never read further */
  char echo[ECHO_CAP];
  if (len + slen > max) {
    len = strlen(name); /* only to report the real size */
    echo_name(echo, name, len, suffix);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s \"%s\" is %zu bytes; Momento allows at most %zu",
                    what, echo, len + slen, max);
  }
  size_t at = bad_byte_at(kind, name, len);
  if (at != SIZE_MAX) {
    echo_name(echo, name, len, suffix);
    return fail_chars(kind, what, echo, at, (unsigned char)name[at]);
  }
  if (!slen && is_blank(name, len)) {
    echo_name(echo, name, len, NULL);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "%s \"%s\" is only whitespace; Momento's SDKs refuse blank names", what, echo);
  }
  return MIM_OK;
}

mim_status mim_check_cache_name(const char *cache) {
  return mim_check_name_as(MIM_NAME_CACHE, "cache name", cache, NULL);
}

mim_status mim_check_topic_name(const char *topic) {
  return mim_check_name_as(MIM_NAME_TOPIC, "topic name", topic, NULL);
}

mim_status mim_check_list_name(const char *what, const char *key) {
  return mim_check_name_as(MIM_NAME_LIST, what, key, NULL);
}

/* Re-states the calling thread's detail with fn in front, so the caller of a public call
 * sees where the name came from. */
static mim_status with_caller(const char *fn, mim_status st) {
  char detail[512];
  snprintf(detail, sizeof detail, "%s", mim_last_error_detail());
  return mim_fail(st, "%s: %s", fn, detail);
}

mim_status mim_check_chat_names(const char *fn, const char *chat_id, bool moderated) {
  mim_status st = mim_check_name_as(MIM_NAME_TOPIC, "chat id (its topic name)", chat_id, NULL);
  if (st == MIM_OK)
    st = mim_check_name_as(MIM_NAME_LIST, "chat id (its list key)", chat_id, NULL);
  if (st == MIM_OK)
    st = mim_check_name_as(MIM_NAME_LIST, "read-marker dictionary name", chat_id,
                           MIM_READ_DICTIONARY_SUFFIX);
  if (st == MIM_OK && moderated)
    st = mim_check_name_as(MIM_NAME_TOPIC, "moderated input topic name", chat_id,
                           MIM_INPUT_TOPIC_SUFFIX);
  return st == MIM_OK ? MIM_OK : with_caller(fn, st);
}
