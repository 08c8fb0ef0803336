/* Internal: a session's typing and presence (docs/PROTOCOL.md section 5): its sid, the
 * signals it publishes (here, heartbeats, early here, left, typing), the presence table
 * of what it hears (roster.h) and the expiry timer that reports lapses.
 *
 * Threading. Timers are the client's transport timers: they run on the event thread, and
 * every arm and cancel happens there too (start and stop hand themselves over with a
 * zero-delay timer), so a timer is never cancelled after it ran. The table is guarded by
 * a recursive lock held while on_presence runs, so a callback may call mim_members. */
#ifndef MIM_LIB_PRESENCE_H
#define MIM_LIB_PRESENCE_H

#include <momento/im.h>

#include <stdbool.h>

typedef struct mim_presence mim_presence;

typedef struct mim_presence_config {
  mim_client *client;
  const char *cache;
  const char *topic; /* where this session publishes: <chat>, or "<chat>-input" */
  const char *from;  /* display name */
  const char *uid;   /* user id */
  bool moderated;
  bool enabled;          /* presence on: announce, heartbeat, keep the table */
  uint32_t heartbeat_ms; /* 0 = MIM_PRESENCE_HEARTBEAT_MS */
  /* Reports a change (event thread); the caller drops it once the session closes. */
  void (*emit)(void *user, mim_presence_change change, const mim_member *member);
  void *user;
} mim_presence_config;

/* Strings are copied. MIM_ERR_NO_MEMORY, MIM_ERR_INTERNAL (no random sid). */
mim_status mim_presence_new(const mim_presence_config *cfg, mim_presence **out);

/* After the join: announces the session and starts heartbeats (presence on; else
 * nothing). Any thread; once. */
void mim_presence_start(mim_presence *p);

/* Event thread: true when item is a signal, which it then consumed (applied, or dropped
 * as its own or malformed): the caller must not hand it on. */
bool mim_presence_on_item(mim_presence *p, const uint8_t *data, size_t len);

mim_status mim_presence_set_typing(mim_presence *p, bool typing);
mim_status mim_presence_members(mim_presence *p, mim_member_list **out);

/* Not on the event thread: stops the timers and publishes "left" when it announced
 * itself, without waiting for that publish (see mim_presence_drain). No emit after it
 * returns. NULL is ignored. */
void mim_presence_stop(mim_presence *p);

/* Not on the event thread, after mim_presence_stop: waits for every publish of it to end
 * (each has the client's deadline). Separate from the stop so a leave waits for "left"
 * and for its outbox flush at the same time, not one deadline after the other. NULL is
 * ignored. */
void mim_presence_drain(mim_presence *p);

/* Frees (after mim_presence_drain, or when it never started). NULL is ignored. */
void mim_presence_free(mim_presence *p);

#endif
