/*
 * Internal: read markers (docs/PROTOCOL.md section 6) for one session: the session's
 * record of the chat messages it delivered, in delivery order, and its own marker, from
 * which mim_unread_count counts locally. The public calls (mim_mark_read,
 * mim_unread_count, mim_read_markers) live in read.c and reach the session through
 * mim_session_read_target (im.c).
 *
 * Threading: mim_read_note and mim_read_forget run on the client's event thread (the
 * deliver and delete paths), the public calls on the caller's threads; a mutex inside
 * mim_read orders them. Nothing here calls the application.
 */
#ifndef MIM_LIB_READ_H
#define MIM_LIB_READ_H

#include <momento/im.h>

/* Messages the record holds: beyond it the oldest are forgotten (a marker older than
 * all of them gives an inexact count). */
#define MIM_READ_RECORD_CAP 1024u

typedef struct mim_read mim_read;

/* A record for chat_id whose own user is user_id (both copied). NULL when out of
 * memory (detail set). */
mim_read *mim_read_new(const char *chat_id, const char *user_id);
void mim_read_free(mim_read *r);

/* The deliver hook: records m (kind CHAT only) in delivery order; it counts as unread
 * unless it is mine, deleted or sent by the record's own user id. O(1), no allocation. */
void mim_read_note(mim_read *r, const mim_message *m);

/* The delete hook: message id no longer counts (it keeps its place, so a marker naming
 * it still finds where it was). Unknown ids are ignored. */
void mim_read_forget(mim_read *r, const char *id);

/* The unread count (see mim_unread_count) into *count and *exact; false (nothing
 * set) while the own marker is not known yet. */
bool mim_read_count(mim_read *r, size_t *count, bool *exact);

/* Sets the own marker (id NULL: there is none; id is at most 64 bytes). fetched: the
 * value came from the server, so it is ignored when a marker is known already (one set
 * by mim_mark_read meanwhile is newer). */
void mim_read_set_marker(mim_read *r, const char *id, bool fetched);

/* What the public calls need of a session (im.c fills it; borrowed from the session). */
typedef struct mim_read_target {
  mim_client *client;
  const char *cache;
  uint64_t ttl_ms; /* the history's TTL, 0 = the client's default */
  mim_read *read;
} mim_read_target;

void mim_session_read_target(mim_session *s, mim_read_target *out);

#endif
