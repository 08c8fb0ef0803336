/* Internal: the merge of a chat's history (the list) with its live messages (the topic):
 * every chat message is delivered once and in order, across the join, discontinuities
 * and reconnects, and the app hears of gaps whose messages were probably lost.
 *
 * Promises. While a fetch of the list is outstanding (the join fetch, or a refetch after
 * a discontinuity or a blind re-subscribe) live items are buffered. When it completes,
 * list values whose id was not delivered yet are delivered (oldest first), then the
 * buffered live items whose id was not delivered yet, then live items flow directly,
 * each checked against the set of delivered ids. The caller subscribes before the first
 * fetch, and senders push to the list before publishing, so every message is either in
 * the fetched list or arrives live afterwards: nothing is missed and the id set removes
 * the overlap. A resumed stream replays what it missed, in order, or reports a
 * discontinuity: only then (or after a stream lost before any value, which resumes live
 * only) is the list refetched, so a receiver far behind gets its messages from the
 * replay, oldest first, not the list's newest ones first.
 *
 * No transport, no threads, and no lock inside: the merge only says when a fetch is
 * needed, and its owner runs the fetch and feeds the result back. The owner serializes
 * every call (the session makes them all from the client's event thread, which runs
 * callbacks one at a time; see lib/im.c), and the sink is called from inside them. */
#ifndef MIM_LIB_MERGE_H
#define MIM_LIB_MERGE_H

#include "envelope.h"

#include <momento/im.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the merge's output goes. Called from inside the mim_merge_* calls. */
typedef struct mim_merge_sink {
  /* The next stored value to apply (a msg or an event, see env->type; env NULL for a
   * foreign value). Signals and values of unknown types are not passed on. Pointers are
   * valid only during the call. */
  void (*deliver)(void *user, const mim_message *m, const mim_envelope *env);
  /* Optional: before a fetched batch is delivered, each event (edit, delete, react) of
   * it not delivered yet, so that messages can be delivered with their state (the
   * fold's mim_fold_prepare). */
  void (*prepare)(void *user, const mim_envelope *env);
  /* Something the app should hear of: messages of a gap were probably lost
   * (MIM_ERR_RESOURCE_EXHAUSTED), or a refetch failed or could not start. */
  void (*report)(void *user, mim_status status, const char *detail);
  void *user;
} mim_merge_sink;

/* One chat's merge state. Fields are private to merge.c. */
typedef struct mim_merge {
  const char *chat; /* borrowed; outlives the merge */
  uint32_t history_cap;
  bool moderated; /* senders per docs/PROTOCOL.md 3.2 (set by the owner after init) */
  mim_merge_sink sink;
  bool confirmed;       /* the subscription was confirmed once (join fetch asked for) */
  bool joined;          /* the join fetch completed (or a refetch did after it failed) */
  bool fetching;        /* a list fetch is outstanding */
  bool refetch_wanted;  /* another fetch is needed after the current one */
  bool blind_reconnect; /* the stream was lost before any value: fetch at CONNECTED */
  /* Discontinuities since the last fetch started (gap_*), and those the outstanding
   * fetch must cover (fetch_gap_*): how many values the topic skipped, whether a gap
   * of unknown size was reported, and the id of the last message delivered before the
   * first of them (the anchor; "" = none or too long to keep): when the refetched list
   * still holds the anchor, it holds everything pushed after it, so the gap is covered. */
  uint64_t gap_missed, fetch_gap_missed;
  bool gap_unknown, fetch_gap_unknown;
  char gap_anchor[MIM_MESSAGE_ID_SIZE], fetch_gap_anchor[MIM_MESSAGE_ID_SIZE];
  /* The outstanding fetch asks for the newest fetch_window values (0 = the whole list):
   * a gap-fill with an anchor first fetches the tail that should hold the gap; when the
   * anchor is not in it, `widen` makes the next fetch one of the whole list. */
  size_t fetch_window;
  bool widen;
  char last_id[MIM_MESSAGE_ID_SIZE]; /* last chat message delivered ("" = none) */
  /* The oldest chat message of the join fetch ("" = none, or too long to keep). The join
   * may fetch only the newest part of the list: values before this one were never to be
   * shown, so a refetch delivers none of them. */
  char floor_id[MIM_MESSAGE_ID_SIZE];
  uint64_t page;        /* sequence page of the last live value */
  mim_message *pending; /* buffered live items, packed (message.h) */
  size_t npending, pending_cap;
  mim_idset delivered;
} mim_merge;

/* Starts an empty merge for chat (borrowed) whose list keeps history_cap (> 0) values.
 * MIM_ERR_NO_MEMORY. */
mim_status mim_merge_init(mim_merge *mg, const char *chat, uint32_t history_cap,
                          const mim_merge_sink *sink);
/* Frees what is still buffered (undelivered). */
void mim_merge_free(mim_merge *mg);

/* Events of the subscription. Those returning bool return true when the caller should
 * start a fetch of the whole list (see mim_merge_fetch_begin). */
void mim_merge_live(mim_merge *mg, const mim_topic_item *item);
bool mim_merge_discontinuity(mim_merge *mg, uint64_t last, uint64_t next, uint64_t page);
bool mim_merge_state(mim_merge *mg, mim_subscription_state state);

/* Before starting a fetch: true when the caller must now start it and later call
 * mim_merge_fetch_done (or mim_merge_fetch_not_started when it cannot start). False
 * when one is outstanding: another is asked for when that one is done. */
bool mim_merge_fetch_begin(mim_merge *mg);
/* The fetch completed with status (values: the whole list when MIM_OK; the join fetch
 * may be the newest part of it only, which then bounds what later fetches deliver: see
 * floor_id). A failed join
 * fetch leaves the merge unjoined, its live items still buffered. Returns true when
 * another fetch is wanted (the caller starts it as above). */
bool mim_merge_fetch_done(mim_merge *mg, mim_status status, const char *detail,
                          const mim_list_values *values);
/* The fetch begun could not start (no completion will come). */
void mim_merge_fetch_not_started(mim_merge *mg, mim_status status, const char *detail);

/* After mim_merge_fetch_begin returned true: how many of the newest values the fetch must
 * ask for, 0 = the whole list. Always 0 for the join fetch (the session decides its
 * range). A gap-fill of known size with an anchor asks for the gap, the live items
 * buffered and 32 values more (senders' pushes and publishes interleave), when that is
 * under the history cap; if the tail then does not hold the anchor, fetch_done asks for
 * another fetch, of the whole list, before delivering anything. */
size_t mim_merge_fetch_window(const mim_merge *mg);

/* How many delivered ids the merge remembers now (it grows with the lists fetched): the
 * window in which a repeat is recognized, which the fold's state follows. */
size_t mim_merge_capacity(const mim_merge *mg);

/* Whether the join fetch completed, and whether a fetch is outstanding. */
bool mim_merge_joined(const mim_merge *mg);
bool mim_merge_fetching(const mim_merge *mg);

#endif
