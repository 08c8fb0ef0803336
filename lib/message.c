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
  if (env->type == MIM_ENV_FOREIGN)
    mim_log(MIM_LOG_DEBUG, "chat %s: foreign value of %zu bytes: %s", chat, len, reason);
  return false;
}

/* Points the text of a foreign message at its bytes when they are printable text. */
static const char *foreign_text(const uint8_t *raw, size_t len) {
  return raw && mim_utf8_text_valid(raw, len) ? (const char *)raw : "";
}

const char *mim_envelope_sender(const mim_envelope *env, bool moderated, bool *trusted) {
  *trusted = moderated && env->pub;
  if (*trusted)
    return env->pub;
  return env->uid ? env->uid : env->from;
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
  m->version = env ? env->v : 0;
  m->sender_id = m->from; /* refined by mim_message_fill_sender */
  m->reply_to = env && env->type == MIM_ENV_MSG ? or_empty(env->ref) : "";
}

void mim_message_fill_sender(mim_message *m, const mim_envelope *env, bool moderated) {
  if (!env)
    return;
  m->sender_id = mim_envelope_sender(env, moderated, &m->sender_trusted);
  /* Moderated: the topic's publisher is the moderator; the member is what it recorded. */
  if (moderated)
    m->publisher_id = or_empty(env->pub);
}

static char *put_str(char **cursor, const char *s) {
  size_t n = strlen(s) + 1;
  char *at = *cursor;
  memcpy(at, s, n);
  *cursor += n;
  return at;
}

/* Bytes the reactions take: the array, the users arrays, then (strings) their strings. */
static size_t reactions_size(const mim_message *m, size_t *strings) {
  size_t n = m->n_reactions * sizeof(mim_reaction);
  *strings = 0;
  for (size_t i = 0; i < m->n_reactions; i++) {
    n += m->reactions[i].count * sizeof(char *);
    *strings += strlen(m->reactions[i].key) + 1;
    for (size_t u = 0; u < m->reactions[i].count; u++)
      *strings += strlen(m->reactions[i].users[u]) + 1;
  }
  return n;
}

/* Copies the reactions into the block: arrays at *arrays, strings at *cur. */
static mim_reaction *put_reactions(const mim_message *m, char *arrays, char **cur) {
  mim_reaction *out = (mim_reaction *)(void *)arrays;
  const char **users = (const char **)(void *)(out + m->n_reactions);
  for (size_t i = 0; i < m->n_reactions; i++) {
    const mim_reaction *r = &m->reactions[i];
    for (size_t u = 0; u < r->count; u++)
      users[u] = put_str(cur, r->users[u]);
    out[i] = (mim_reaction){.key = put_str(cur, r->key), .count = r->count, .users = users};
    users += r->count;
  }
  return out;
}

bool mim_message_pack(mim_message *m) {
  size_t strings = 0;
  size_t arrays = reactions_size(m, &strings);
  size_t need = arrays + m->raw_len + 1 + strlen(m->id) + strlen(m->chat) + strlen(m->from) +
                strlen(m->publisher_id) + strlen(m->sender_id) + strlen(m->reply_to) + 7 + strings;
  bool text_is_raw = m->text == (const char *)m->raw;
  if (!text_is_raw)
    need += strlen(m->text) + 1;
  char *block = malloc(need);
  if (!block)
    return false;
  /* The arrays first (malloc's alignment), then the bytes. */
  char *raw = block + arrays;
  memcpy(raw, m->raw, m->raw_len);
  raw[m->raw_len] = '\0';
  char *cur = raw + m->raw_len + 1;
  m->id = put_str(&cur, m->id);
  m->chat = put_str(&cur, m->chat);
  m->from = put_str(&cur, m->from);
  m->publisher_id = put_str(&cur, m->publisher_id);
  m->sender_id = put_str(&cur, m->sender_id);
  m->reply_to = put_str(&cur, m->reply_to);
  m->text = text_is_raw ? raw : put_str(&cur, m->text);
  m->reactions = m->n_reactions ? put_reactions(m, block, &cur) : NULL;
  m->raw = (const uint8_t *)raw;
  return true;
}

void mim_message_free_packed(mim_message *m) {
  /* The block starts with the reactions when there are any, else with raw. */
  free(m->n_reactions ? (void *)m->reactions : (void *)m->raw);
}
