/* Internal: building the mim_message values the session hands to the app, from topic
 * items and list values, and packing one into a block of its own when it must outlive
 * the bytes it was read from (buffered live items, mim_history's lists). */
#ifndef MIM_LIB_MESSAGE_H
#define MIM_LIB_MESSAGE_H

#include "envelope.h"

#include <momento/im.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Parses one value of chat `chat`; logs (debug) why it is foreign. true with *env filled
 * (free with mim_envelope_clear) for an envelope. */
bool mim_message_parse(const char *chat, const uint8_t *data, size_t len, mim_envelope *env);

/* The sender of env per docs/PROTOCOL.md 3.2 (borrowed from env); *trusted: vouched for
 * by the moderator. */
const char *mim_envelope_sender(const mim_envelope *env, bool moderated, bool *trusted);

/* Fills *m from a parsed envelope (env NULL = foreign: text is raw when it is printable
 * text). Every pointer borrows from env, chat, publisher_id or raw. */
void mim_message_fill(mim_message *m, const mim_envelope *env, const char *chat,
                      const char *publisher_id, const uint8_t *raw, size_t raw_len,
                      uint64_t sequence, bool from_history);

/* Sets sender_id, sender_trusted and (moderated) publisher_id of a message filled from
 * env (NULL: foreign, nothing to do) for the chat's mode. */
void mim_message_fill_sender(mim_message *m, const mim_envelope *env, bool moderated);

/* Copies what *m points at (reactions included) into one malloc'd block that starts with the raw
 * bytes, so mim_message_free_packed frees the whole message. false when out of memory (*m
 * unchanged). */
bool mim_message_pack(mim_message *m);
void mim_message_free_packed(mim_message *m);

#endif
