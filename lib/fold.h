/* Internal: folding events into messages (docs/PROTOCOL.md 4.3). The fold keeps, for each
 * message delivered, its current state (text, edited, deleted, reactions) and the events
 * that arrived before their message (held), and turns each stored value into what the
 * application sees: a message with its state folded in, or the change an event made.
 *
 * Pure, like merge.c: no transport, no threads and no lock inside; the owner serializes
 * every call. Pointers it hands out (in mim_message views) stay valid until the next call
 * that changes the fold. Bounded: at most `capacity` message states (oldest dropped
 * first), MIM_FOLD_MAX_HELD held events, MIM_FOLD_MAX_KEYS reaction keys per message and
 * MIM_FOLD_MAX_USERS users per key (events beyond those are ignored, logged at debug). */
#ifndef MIM_LIB_FOLD_H
#define MIM_LIB_FOLD_H

#include "envelope.h"

#include <momento/im.h>

#include <stdbool.h>
#include <stddef.h>

#define MIM_FOLD_MAX_HELD 1024u
#define MIM_FOLD_MAX_KEYS 64u
#define MIM_FOLD_MAX_USERS 1024u

typedef struct fold_held fold_held;

/* Fields are private to fold.c. */
typedef struct mim_fold {
  bool moderated;                     /* senders per docs/PROTOCOL.md 3.2 */
  mim_idset msgs;    /* message id -> its state */
  mim_idset applied; /* ids of the events applied or held: each applies once */
  fold_held *held[MIM_FOLD_MAX_HELD]; /* events waiting for their message, oldest first */
  size_t nheld;
} mim_fold;

/* What an event did. */
typedef enum mim_fold_result {
  MIM_FOLD_CHANGED = 0, /* applied and changed its message: report it */
  MIM_FOLD_UNCHANGED,   /* applied, but nothing changed (e.g. a reaction already there) */
  MIM_FOLD_HELD,        /* its message is not known yet: kept for when it is */
  MIM_FOLD_IGNORED      /* refused (author check, deleted message, a cap): no effect */
} mim_fold_result;

/* An empty fold keeping at most capacity (> 0) message states. MIM_ERR_NO_MEMORY. */
mim_status mim_fold_init(mim_fold *f, size_t capacity, bool moderated);
/* Raises the capacity (the merge's delivered-id set grows with the list it fetched). */
void mim_fold_reserve(mim_fold *f, size_t capacity);
void mim_fold_free(mim_fold *f);

/* A msg is delivered (*m filled from its envelope by mim_message_fill and
 * mim_message_fill_sender): records its state, applies the events held for it, and sets
 * the state fields of *m (text, edited, edited_ms, deleted, reactions). A message known
 * already keeps its state. MIM_ERR_NO_MEMORY (then *m is left as the envelope says). */
mim_status mim_fold_message(mim_fold *f, mim_message *m);

/* An event (edit, delete or react) is delivered. On MIM_FOLD_CHANGED *current is its
 * message's state after the change, with the event's raw, sequence and from_history, and
 * *what what changed. An event whose id was applied or held before changes nothing
 * (MIM_FOLD_UNCHANGED). */
mim_fold_result mim_fold_event(mim_fold *f, const mim_envelope *env, const mim_message *event,
                               mim_message *current, mim_update_kind *what);

/* Before a batch of history is delivered: holds the event when its message is not known
 * yet, so that the message is delivered with it folded in and its later delivery changes
 * nothing (a late joiner sees the state, not a replay of changes). Events of known
 * messages are left for mim_fold_event, which reports them. */
void mim_fold_prepare(mim_fold *f, const mim_envelope *env);

/* The current state of message id into *m (as on_message would show it; raw "", sequence
 * 0): false when the fold does not know it. */
bool mim_fold_view(const mim_fold *f, const char *id, const char *chat, mim_message *m);

#endif
