/* Internal: the presence table of one session, who is in the chat as signals show it
 * (docs/PROTOCOL.md section 5). Pure: no I/O, the caller passes the clock. Members are
 * keyed by sender (PROTOCOL 3.2): in a moderated chat the relayed "pub" (trusted), else
 * the claimed "uid" (or "from"). Each member has up to MIM_ROSTER_MAX_SIDS sessions,
 * each with its own expiry and typing lapse.
 *
 * Bounds: at most MIM_ROSTER_MAX_MEMBERS members (signals from further senders are
 * ignored until someone leaves) and MIM_ROSTER_MAX_SIDS sessions per member (a further
 * session replaces the one heard of least recently).
 *
 * Not thread-safe: the caller locks. Changes are reported through the emit function,
 * synchronously, inside mim_roster_apply / mim_roster_tick. */
#ifndef MIM_LIB_ROSTER_H
#define MIM_LIB_ROSTER_H

#include "chat_signal.h"

#include <momento/im.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MIM_ROSTER_MAX_MEMBERS 1024u
#define MIM_ROSTER_MAX_SIDS 8u

typedef void (*mim_roster_emit)(void *user, mim_presence_change change, const mim_member *member);

typedef struct mim_roster_member mim_roster_member;
typedef struct mim_roster {
  mim_roster_member *members;
  size_t count, capacity;
  bool moderated; /* whose "pub" is a trusted sender */
  mim_roster_emit emit;
  void *user;
} mim_roster;

void mim_roster_init(mim_roster *r, bool moderated, mim_roster_emit emit, void *user);
void mim_roster_free(mim_roster *r);

/* Applies one signal received at now_ms (a monotonic clock; wall_ms is what
 * last_seen_ms reports). default_ttl_ms is the expiry of a session whose presence signal
 * has no ttl. Returns true when the signal came from a session not known before (the
 * caller answers with an early "here"). Out of memory: the signal is ignored. */
bool mim_roster_apply(mim_roster *r, const mim_signal *sig, int64_t now_ms, int64_t wall_ms,
                      int64_t default_ttl_ms);

/* Lets typing lapse and sessions expire as of now_ms. Returns when it next has something
 * to do (monotonic ms), INT64_MAX when nothing is pending. */
int64_t mim_roster_tick(mim_roster *r, int64_t now_ms);

/* The members now, as an owned list (mim_member_list_free). MIM_ERR_NO_MEMORY. */
mim_status mim_roster_list(const mim_roster *r, mim_member_list **out);

#endif
