/* Building and packing mim_message values (see message.h). */
#include "message.h"

#include "error.h"

#include <stdlib.h>
#include <string.h>

static const char *or_empty(const char *s) {
  return s ? s : "";
}

bool mim_message_parse(const char *chat, const uint8_t *data, size_t len, mim_envelope *env) {
  const char *reason = NULL;
  if (mim_envelope_parse(data, len, env, &reason))
    return true;
  mim_log(MIM_LOG_DEBUG, "chat %s: foreign value of %zu bytes: %s", chat, len, reason);
  return false;
}

/* Points the text of a foreign message at its bytes when they are printable text. */
static const char *foreign_text(const uint8_t *raw, size_t len) {
  return raw && mim_utf8_text_valid(raw, len) ? (const char *)raw : "";
}

void mim_message_fill(mim_message *m, const mim_envelope *env, const char *chat,
                      const char *publisher_id, const uint8_t *raw, size_t raw_len,
                      uint64_t sequence, bool from_history) {
  memset(m, 0, sizeof *m);
  m->kind = env ? MIM_MESSAGE_CHAT : MIM_MESSAGE_FOREIGN;
  m->id = env ? env->id : "";
  m->chat = chat;
  m->from = env ? env->from : "";
  m->publisher_id = or_empty(publisher_id);
  m->text = env ? env->text : foreign_text(raw, raw_len);
  m->timestamp_ms = env ? env->ts : 0;
  m->sequence = sequence;
  m->from_history = from_history;
  m->raw = raw ? raw : (const uint8_t *)"";
  m->raw_len = raw ? raw_len : 0;
  m->version = env ? 1 : 0;
  m->sender_id = m->from; /* version 1 carries no user id: the claimed name stands in */
  m->reply_to = "";
}

static char *put_str(char **cursor, const char *s) {
  size_t n = strlen(s) + 1;
  char *at = *cursor;
  memcpy(at, s, n);
  *cursor += n;
  return at;
}

bool mim_message_pack(mim_message *m) {
  size_t need = m->raw_len + 1 + strlen(m->id) + strlen(m->chat) + strlen(m->from) +
                strlen(m->publisher_id) + strlen(m->sender_id) + strlen(m->reply_to) + 7;
  bool text_is_raw = m->text == (const char *)m->raw;
  if (!text_is_raw)
    need += strlen(m->text) + 1;
  char *block = malloc(need);
  if (!block)
    return false;
  memcpy(block, m->raw, m->raw_len);
  block[m->raw_len] = '\0';
  char *cur = block + m->raw_len + 1;
  m->id = put_str(&cur, m->id);
  m->chat = put_str(&cur, m->chat);
  m->from = put_str(&cur, m->from);
  m->publisher_id = put_str(&cur, m->publisher_id);
  m->sender_id = put_str(&cur, m->sender_id);
  m->reply_to = put_str(&cur, m->reply_to);
  m->text = text_is_raw ? block : put_str(&cur, m->text);
  m->raw = (const uint8_t *)block;
  return true;
}

void mim_message_free_packed(mim_message *m) {
  free((void *)m->raw);
}
