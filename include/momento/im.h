/*
 * libmomento-im: instant messaging on Momento.
 *
 * A chat `C` in a cache is a list `C` (history, the last N messages) plus a topic `C`
 * (live delivery). mim_join subscribes to the topic, waits for the server's
 * confirmation, then fetches the list, and delivers history followed by live messages
 * with no gap and no duplicate. In moderated mode clients publish to topic "C-input"
 * only; a trusted moderator (mim_moderator) checks each message, pushes it to list C and
 * publishes it on topic C.
 *
 * Wire format: docs/PROTOCOL.md (the open protocol any client can speak). Each list and
 * topic value is one JSON envelope; version 2, which the library writes, adds a type (a
 * message, or an edit, deletion or reaction of one), the sender's user id and, in
 * moderated mode, the trusted sender the moderator records; version 1 envelopes
 *   {"v":1,"id":"<id>","from":"<display name>","text":"...","ts":<epoch ms>}
 * stay readable. Events are folded into the messages they refer to (mim_edit, mim_delete,
 * mim_react, mim_join_options.on_update); values of types this version does not know, and
 * typing / presence signals, are not delivered as messages. Values that are not an envelope (plain
 * text, binary, bad JSON, invalid UTF-8, missing or mistyped members, larger than 256 KiB) are
 * delivered to on_message with kind MIM_MESSAGE_FOREIGN and the raw bytes (see mim_message); they
 * never crash. The reason is logged at MIM_LOG_DEBUG.
 *
 * This header includes every other public header.
 */
#ifndef MOMENTO_IM_H
#define MOMENTO_IM_H

#include <momento/client.h>
#include <momento/common.h>
#include <momento/credentials.h>
#include <momento/dictionary.h>
#include <momento/list.h>
#include <momento/token.h>
#include <momento/topics.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mim_session mim_session;

typedef enum mim_message_kind {
  MIM_MESSAGE_CHAT = 0,   /* a well-formed envelope */
  MIM_MESSAGE_FOREIGN = 1 /* something else on the list/topic: see raw */
} mim_message_kind;

/* One reaction on a message: `key` (e.g. "+1" or an emoji, 1..64 bytes of UTF-8) and
 * who reacted with it (user ids, in the order this session applied their reactions: the
 * set is the same for every reader, the order may differ in client-only mode; see
 * docs/PROTOCOL.md 4.3). */
typedef struct mim_reaction {
  const char *key;
  size_t count;             /* number of users */
  const char *const *users; /* count user ids */
} mim_reaction;

/* One message. Every pointer is valid only during the callback (or until the
 * mim_message_list holding it is freed); strings are NUL-terminated UTF-8 or "".
 * For MIM_MESSAGE_FOREIGN: id and from are "", timestamp_ms is 0, text is the raw value
 * when that is valid UTF-8 without NUL bytes (else ""), and raw/raw_len hold the bytes.
 * Foreign values have no id, so they are not de-duplicated.
 *
 * Sender. sender_id is who wrote the message, as the chat's mode can vouch for it (see
 * docs/PROTOCOL.md, "Senders"): in moderated mode the trusted token id the moderator
 * recorded (sender_trusted true, also for history); in client-only mode the user id the
 * sender claims ("uid"; sender_trusted false: any holder of the chat's token can claim
 * any id). For version 1 envelopes, which carry no user id, sender_id is `from`.
 *
 * State. A message's edits, deletion and reactions arrive as events of their own (see
 * mim_edit, mim_delete, mim_react); the library folds them into the message, so the
 * fields below are its current state when the callback runs. Changes after a message was
 * delivered are reported through mim_join_options.on_update. */
typedef struct mim_message {
  mim_message_kind kind;
  const char *id;           /* unique message id ("" for foreign values) */
  const char *chat;         /* chat id */
  const char *from;         /* sender display name as claimed by the sender */
  const char *publisher_id; /* trusted token id of the publisher: moderated: recorded by
                             * the moderator (history and live); client-only: of the
                             * topic publish (live only; "" for history) */
  const char *text;         /* current text ("" once deleted) */
  int64_t timestamp_ms;     /* sender's clock, epoch ms */
  uint64_t sequence;        /* topic sequence number (0 for history) */
  bool from_history;        /* true: fetched from the list; false: live */
  const uint8_t *raw;       /* the value as received */
  size_t raw_len;
  /* ---- since 0.3.0 (ABI 2) ---- */
  uint32_t version;      /* envelope version ("v"): 1 or 2; 0 for foreign values */
  const char *sender_id; /* see "Sender" above */
  bool sender_trusted;   /* sender_id is vouched for by the moderator */
  bool mine;             /* sent by this session (mim_send & co. on this handle) */
  const char *reply_to;  /* id of the message this one replies to, or "" */
  bool edited;           /* text is the author's latest edit */
  int64_t edited_ms;     /* the edit's timestamp (sender's clock), 0 when not edited */
  bool deleted;          /* deleted by its author: text is "" */
  size_t n_reactions;
  const mim_reaction *reactions; /* n_reactions, in order of their first reaction */
} mim_message;

/* What changed in a message reported through on_update. */
typedef enum mim_update_kind {
  MIM_UPDATE_EDITED = 0,   /* its author replaced the text */
  MIM_UPDATE_DELETED = 1,  /* its author deleted it */
  MIM_UPDATE_REACTIONS = 2 /* a reaction was added or removed */
} mim_update_kind;

/* A change to a message delivered earlier: `current` is its state after the change (as
 * in on_message; from_history and sequence are those of the event that changed it).
 * Called once per change, on the event thread, with on_message's rules. */
typedef void (*mim_on_update)(mim_session *session, const mim_message *current,
                              mim_update_kind what, void *user);

/* A chat member as presence signals show it (see mim_members). */
typedef struct mim_member {
  const char *user_id;      /* moderated: trusted token id; client-only: claimed id */
  const char *display_name; /* as claimed */
  bool trusted;             /* user_id is vouched for by the moderator */
  bool typing;              /* a typing signal is in force */
  int64_t last_seen_ms;     /* receiver's clock, epoch ms, of the last signal */
} mim_member;

/* Presence timing (docs/PROTOCOL.md, "Typing and presence"): a session with presence on
 * sends a heartbeat every MIM_PRESENCE_HEARTBEAT_MS; a member not heard of for
 * MIM_PRESENCE_EXPIRY_MS has left. A typing signal is repeated every MIM_TYPING_REFRESH_MS
 * while typing goes on, and lapses MIM_TYPING_EXPIRY_MS after the last one. */
#define MIM_PRESENCE_HEARTBEAT_MS 30000
#define MIM_PRESENCE_EXPIRY_MS 75000
#define MIM_TYPING_REFRESH_MS 3000
#define MIM_TYPING_EXPIRY_MS 6000

typedef enum mim_presence_change {
  MIM_PRESENCE_JOINED = 0,
  MIM_PRESENCE_LEFT = 1, /* said so, or no heartbeat for MIM_PRESENCE_EXPIRY_MS */
  MIM_PRESENCE_TYPING = 2,
  MIM_PRESENCE_STOPPED_TYPING = 3 /* said so, or no refresh for MIM_TYPING_EXPIRY_MS */
} mim_presence_change;

/* A change in who is in the chat or typing (never this session itself). Runs on the
 * event thread with on_message's rules; member is valid only during the call. */
typedef void (*mim_on_presence)(mim_session *session, mim_presence_change change,
                                const mim_member *member, void *user);

typedef void (*mim_on_message)(mim_session *session, const mim_message *msg, void *user);

typedef enum mim_chat_mode {
  MIM_CHAT_CLIENT_ONLY = 0, /* clients push to the list and publish on the topic */
  MIM_CHAT_MODERATED = 1    /* clients publish on "<chat>-input" only */
} mim_chat_mode;

typedef struct mim_join_options {
  size_t struct_size;       /* sizeof(mim_join_options): MIM_JOIN_OPTIONS_INIT sets it */
  const char *display_name; /* "from" of messages we send; NULL = "anonymous" */
  mim_chat_mode mode;
  uint32_t history_cap;    /* list is truncated to the last N; 0 = 100 */
  uint64_t history_ttl_ms; /* TTL of the list; 0 = server default */
  /* Optional, runs on the event thread: every state change of the subscription
   * (RECONNECTING, CONNECTED, CLOSED with the reason), and with state CONNECTED and a
   * non-OK status when a gap could not be filled: the refetch of the list failed
   * (its status), or after a discontinuity the refetched list no longer holds the last
   * message delivered before the gap (truncated away by newer ones, or the server lost
   * the chat: restarted without persistence) or, when nothing had been delivered, the
   * gap was larger than the history cap (MIM_ERR_RESOURCE_EXHAUSTED: messages may have
   * been lost; also when that message was removed with mim_remove_message). Not called
   * after mim_leave. */
  void (*on_event)(mim_session *session, mim_subscription_state state, mim_status status,
                   const char *detail, void *user);
  /* ---- sending (see mim_send) ---- */
  uint32_t outbox_limit;     /* messages queued at most; 0 = 1024 */
  uint32_t flush_timeout_ms; /* how long mim_leave waits for the outbox; 0 = 2000 */
  uint32_t send_timeout_ms;  /* retries of a message stop this long after mim_send;
                              * 0 = 60000 */
  /* Optional: the final outcome of each message for which mim_send returned MIM_OK,
   * exactly once, with its id: MIM_OK when it was sent (client-only: pushed to the list
   * and published; moderated: published on "<chat>-input"), else the last error (a
   * status not worth retrying, the send timeout passed, or MIM_ERR_CANCELLED from
   * mim_leave for what the flush did not send). Runs on the event thread, or in the
   * thread of mim_leave (its reports) or of mim_send (when a call could not even be
   * started); must return quickly; may call mim_send (on the event thread it queues
   * without waiting), must not call other blocking functions of the client. */
  void (*on_send_result)(mim_session *session, const char *message_id, mim_status status,
                         const char *detail, void *user);
  /* ---- operations budget ---- */
  /* How many of the newest history messages the join fetches and shows; 0 = 20. The join
   * fetches only these (a ListFetch of the last N values costs ceil(N/2) of the cache's
   * operations, see mim_client_stats), so joining a busy room stays cheap; page back
   * through older ones with mim_history_before. Values of history_cap or more fetch the
   * whole list. A gap-fill after a discontinuity fetches the newest (gap size + 32)
   * values when it knows the gap's size and the last message delivered before it, and
   * the whole list when that message is not among them or the size is unknown; it never
   * delivers messages older than the join's oldest. */
  uint32_t initial_history;
  /* ---- since 0.3.0 ---- */
  /* Who this session's user is (the envelope's "uid", the field of its read marker, its
   * presence entry): 1..128 bytes of UTF-8 (else mim_join fails with
   * MIM_ERR_INVALID_ARGUMENT); NULL = display_name ("anonymous" when that is NULL), or no
   * user id when the display name is empty or longer than 128 bytes (readers then go by
   * the display name). In moderated mode the moderator vouches for the token id instead
   * (docs/PROTOCOL.md, "Senders"). */
  const char *user_id;
  /* Optional: changes to delivered messages (edits, deletions, reactions). */
  mim_on_update on_update;
  /* Optional: presence and typing changes. Setting it also turns presence on: the
   * session announces itself and sends heartbeats (see mim_members). */
  mim_on_presence on_presence;
  /* Heartbeat interval of this session's presence, in ms; 0 = MIM_PRESENCE_HEARTBEAT_MS.
   * Its signals tell readers to expire it after 2.5 times this ("ttl"). Shorter
   * intervals cost more operations (see mim_members); meant for tests. */
  uint32_t presence_heartbeat_ms;
} mim_join_options;

/* Defaults, with struct_size set: `mim_join_options o = MIM_JOIN_OPTIONS_INIT;`. */
#define MIM_JOIN_OPTIONS_INIT                                                                      \
  { .struct_size = sizeof(mim_join_options) }

/* Fills *options with defaults, as MIM_JOIN_OPTIONS_INIT does. Inline, so that it writes
 * the struct as the header the program was compiled against defines it, never more, whatever
 * library version the program runs with. NULL is ignored. */
static inline void mim_join_options_init(mim_join_options *options) {
  if (options) {
    memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
  }
}

/* Joins chat_id in cache: subscribes, fetches the newest initial_history messages of the
 * history (older ones: mim_history_before), then calls on_message for each of them
 * (from_history true, oldest first) and afterwards for each live message, each exactly
 * once, on the client's event thread. Blocking until the history has been
 * delivered (loop mode on the loop thread: runs the loop meanwhile, see <momento/loop.h>;
 * from a callback: MIM_ERR_FAILED_PRECONDITION, use mim_join_async). *out owned by the
 * caller: release with mim_leave. options may be NULL.
 *
 * No gap, no duplicate: live values arriving before the history was delivered are held
 * back, then delivered unless their id was in the history. Delivered ids are remembered
 * in a bounded set (the larger of history_cap and the fetched list length, plus 4096
 * more), so duplicates are removed within that window. When the subscription
 * reconnects, the topic replays what was missed, in order; when it cannot (it reports a
 * discontinuity), the list is fetched again and the messages in it that were not
 * delivered yet are delivered (from_history true; foreign list values only on the
 * join; none older than the oldest message the join showed), live values being held
 * back meanwhile.
 * Order: history in list order, then live values in topic order. A message recovered by a
 * gap-fill, or one truncated out of the list while the join ran and then received live,
 * can come after newer messages (still exactly once).
 * on_message must return quickly and must not call blocking functions of the client
 * (mim_history, mim_remove_message, ...); hand work to another thread instead. It may
 * call mim_send (it queues without waiting) and mim_leave (deferred, see there).
 * Errors: MIM_ERR_INVALID_ARGUMENT (also for a chat id whose names Momento would refuse:
 * list and topic <chat_id>, and in moderated mode topic "<chat_id>-input", so a chat id
 * of 250 bytes joins client-only but not moderated; the detail names the name; README
 * "Names"), subscription and list errors (no callback runs after a failed join
 * returns); MIM_ERR_CANCELLED when a callback of this session
 * called mim_leave before mim_join returned (the session is freed, *out not set). */
MIM_API mim_status mim_join(mim_client *client, const char *cache, const char *chat_id,
                            const mim_join_options *options, mim_on_message on_message, void *user,
                            mim_session **out);

/* Completion of mim_join_async. Runs exactly once, on the client's event thread (loop
 * mode: the loop thread), after the history has been delivered through on_message
 * (status MIM_OK, detail "") or when the join failed (the same errors as mim_join,
 * MIM_ERR_CANCELLED when a callback of the session called mim_leave before this ran).
 * Ownership: on MIM_OK the session is the caller's from this call on, exactly as *out
 * of mim_join (live messages follow; release it with mim_leave, which may be called
 * from here: it is then deferred as from any callback). On any other status the library
 * frees the session after this returns: do not keep the pointer, and no callback of it
 * runs after this one. Same rules as on_message (must return quickly, no blocking
 * calls of the client). */
typedef void (*mim_join_done_fn)(mim_session *session, mim_status status, const char *detail,
                                 void *user);

/* mim_join without waiting: subscribes and returns at once; the join (history fetch and
 * delivery) goes on on the event thread and ends with on_joined (required), which gets
 * `user` like on_message. Usable in both modes, also from a callback, and the way to
 * join from the loop thread without blocking it. Until on_joined has run, the session
 * exists only through the callbacks' session argument: mim_leave on it from one of them
 * cancels the join (on_joined then gets MIM_ERR_CANCELLED); do not hand it to another
 * thread before. Wait for on_joined before mim_client_free. Returns
 * MIM_ERR_INVALID_ARGUMENT, MIM_ERR_NO_MEMORY or an error starting the subscription, and
 * then on_joined does not run; MIM_OK: on_joined will run exactly once. */
MIM_API mim_status mim_join_async(mim_client *client, const char *cache, const char *chat_id,
                                  const mim_join_options *options, mim_on_message on_message,
                                  mim_join_done_fn on_joined, void *user);

/* An owned list of messages (oldest first). Free with mim_message_list_free. */
typedef struct mim_message_list {
  size_t count;
  mim_message *messages;
} mim_message_list;
MIM_API void mim_message_list_free(mim_message_list *list);

/* The current history: the last `last_n` values of the list (0 = all kept), foreign
 * values included (from_history true, sequence 0); a message held twice by the list (a
 * retried send) is returned once, so fewer than last_n may come back. Messages only:
 * the events among those values (edits, deletions, reactions) are not listed but folded
 * into the messages they refer to, and a message this session has delivered shows the
 * state the session knows (which may include events outside the range); `mine` as in
 * on_message. Fetches from the server. *out owned
 * by the caller. Blocking. Errors: MIM_ERR_INVALID_ARGUMENT, list errors. */
MIM_API mim_status mim_history(mim_session *session, size_t last_n, mim_message_list **out);

/* One page of older history: up to `count` (> 0) list values just older than the message
 * before_id, oldest first (from_history true, sequence 0; foreign values included); with
 * before_id NULL or "" the newest `count`. Page back through the whole list by passing
 * the id of the oldest message of the previous page (or of the join's history) while
 * *more is true. *more (may be NULL) is false when nothing older is in the list; true when
 * older values exist or may exist (a page that reaches the start of the list exactly can
 * say true and the next call then returns no message).
 *
 * Fetches only ranges from the end of the list: first the newest 2 * count + 20 values,
 * growing fourfold each time before_id is not in them or has fewer than `count` older
 * values beside it, so a page near the end costs about ceil((2 * count + 20) / 2)
 * operations (see mim_client_stats). Each fetch is one consistent view, so values pushed
 * meanwhile do not shift the page. A message held twice by the list (a retried send)
 * counts once within a page, so a page may hold fewer than `count`; it can reappear in
 * the next page when its copies straddle the boundary. Events count as values but are
 * folded in rather than listed, as for mim_history, so a page may hold fewer messages.
 *
 * *out owned by the caller (mim_message_list_free), set only on MIM_OK. Blocking (from a
 * callback: MIM_ERR_FAILED_PRECONDITION). Errors: MIM_ERR_INVALID_ARGUMENT (NULL session
 * or out, count 0 or over 1000000), MIM_ERR_NOT_FOUND (before_id is not in the list:
 * truncated away or removed), list errors. */
MIM_API mim_status mim_history_before(mim_session *session, const char *before_id, size_t count,
                                      mim_message_list **out, bool *more);

/* Length of a message id including its NUL. */
#define MIM_MESSAGE_ID_SIZE 33

/* The longest mim_send waits for the first attempt of a message, in ms (see mim_send). */
#define MIM_SEND_WAIT_MS 50

/* Sends text (valid UTF-8; a C string, so it holds no NUL byte), at least once.
 * Client-only mode: pushes the envelope to the list (truncated to history_cap, with TTL),
 * then publishes it on the topic. Moderated mode: publishes it on "<chat>-input". id_out
 * (may be NULL) receives the new message's id whenever MIM_OK is returned.
 *
 * Outbox. The message is queued in the session's outbox (at most outbox_limit
 * messages), which sends one message at a time, oldest first, so a sender's messages
 * keep their order. A send that fails with UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED
 * (connection lost), INTERNAL or UNKNOWN is retried with exponential backoff (50 ms
 * doubling to 2 s, with jitter) until it succeeds or send_timeout_ms has passed since
 * mim_send; after a successful push only the publish is retried. UNAUTHENTICATED is
 * retried too, a few times, when the client gets its tokens from a token_url (the
 * refusal makes it fetch a fresh token); with a fixed credential it is final.
 *
 * Hosted Momento's limits. The envelope (the JSON published, id, sender name and
 * timestamp included: about 90 bytes plus the name and the text, with JSON escapes) may
 * be at most mim_client_options.max_topic_payload_bytes (default 4096, hosted Momento's
 * hard topic payload limit); a larger one is refused at once with
 * MIM_ERR_INVALID_ARGUMENT, a detail naming the limit and both sizes, and nothing is
 * queued (no on_send_result). A server that throttles (RESOURCE_EXHAUSTED whose cause,
 * mim_limit_cause_of(detail), is mim_limit_cause_is_throttling: the operations or
 * throughput rate) is retried with a slower backoff of its own: at least 500 ms, the
 * window doubling to 2 s, with jitter, until send_timeout_ms; a message still refused
 * then is reported through on_send_result with RESOURCE_EXHAUSTED and the cause in its
 * detail. Any other RESOURCE_EXHAUSTED (a size cause, or no known cause) is final.
 *
 * Bounded wait: mim_send waits for the first attempt of this message, but never longer
 * than MIM_SEND_WAIT_MS, whatever the network does (a hung server or connection); it
 * returns once queued without waiting at all when an earlier message is being retried
 * or when called on the event thread (from a callback). It returns:
 *   MIM_OK - sent; or queued (the first attempt failed with a retryable status, or had
 *            not finished within MIM_SEND_WAIT_MS): the outbox goes on sending it and
 *            on_send_result reports the final outcome either way, which can then also
 *            be a status not worth retrying such as PERMISSION_DENIED;
 *   an error - the first attempt failed within MIM_SEND_WAIT_MS with a status not worth
 *            retrying (e.g. PERMISSION_DENIED, NOT_FOUND): nothing is queued and
 *            on_send_result does not run for it;
 *   MIM_ERR_RESOURCE_EXHAUSTED - the outbox is full; MIM_ERR_INVALID_ARGUMENT - NULL,
 *            not UTF-8, envelope over max_topic_payload_bytes.
 * So a fast refusal is returned at once, and a slow or hung network never holds the
 * caller for more than MIM_SEND_WAIT_MS (plus building the envelope): rely on
 * on_send_result for the outcome of every send that returned MIM_OK.
 *
 * Loop mode (mim_client_options.loop): mim_send never waits, on any thread; it returns
 * MIM_OK once queued (or an argument / outbox-full error) and every outcome comes
 * through on_send_result, on the loop thread.
 *
 * Duplicates. A retry can repeat what the server did but could not confirm: the list
 * may hold the message twice, the topic may carry it twice. Receivers drop repeats by
 * id (mim_join's delivered-id set, mim_history), so each message is shown once.
 * Client-only mode: if the push succeeded but the publish finally failed, the message
 * is in the history and live subscribers get it at their next gap-fill (or never). */
MIM_API mim_status mim_send(mim_session *session, const char *text,
                            char id_out[MIM_MESSAGE_ID_SIZE]);

/* Removes the message with this id from the chat's history (list remove of its stored
 * value). Needs write permission on the list (moderators). MIM_ERR_NOT_FOUND when no
 * such message is in the history. Blocking. */
MIM_API mim_status mim_remove_message(mim_session *session, const char *message_id);

/* Leaves the chat: first flushes the outbox, waiting up to flush_timeout_ms for the
 * queued messages to be sent (each reported through on_send_result as usual), then
 * reports every message still queued through on_send_result with MIM_ERR_CANCELLED
 * (nothing is dropped silently; the one in flight at that moment may still reach the
 * server), waits for that call to end (its deadline) and for a pending backoff timer (at
 * most 2 s), unsubscribes and frees the session. When it returns no callback of the
 * session runs. Must not be called while another thread is in mim_send on it. NULL is
 * ignored.
 *
 * From a callback (any callback of this client, e.g. the session's own on_message or
 * on_event) it cannot wait for the event thread it runs on, so it is deferred: it returns
 * at once, no on_message or on_event of the session runs after that, and the rest (flush,
 * on_send_result reports, unsubscribe, free) runs on a library thread once the callback
 * has returned; mim_client_free waits for it. During mim_join (history delivery, or the
 * first on_event) the leave is done by mim_join, which returns MIM_ERR_CANCELLED (for
 * mim_join_async: its on_joined gets MIM_ERR_CANCELLED, then the library frees the
 * session). Calling it again for the same session from a callback does nothing more.
 *
 * Loop mode: on the loop thread outside callbacks it runs the loop while it waits (other
 * callbacks of the client may run inside it). From a callback, no thread is started:
 * the rest of the leave runs on the loop thread once the application's
 * mim_loop_fd_ready / mim_loop_timeout call that ran the callback returns (it then runs
 * the loop for the flush, up to flush_timeout_ms plus a call deadline), or in
 * mim_client_free, whichever comes first. From another thread it waits for the loop
 * thread to do the work.
 *
 * Forgotten: mim_client_free leaves every session still joined (one whose mim_join or
 * mim_join_async succeeded and that mim_leave was not called for), exactly as mim_leave
 * would, after logging a MIM_LOG_WARN line with their count; the handles are freed then
 * and must not be used afterwards (mim_leave on them after mim_client_free is a use
 * after free). */
MIM_API void mim_leave(mim_session *session);

/* ---- Own messages, replies, edits, deletions, reactions (docs/PROTOCOL.md 3, 4) ---- */

/* Writes a fresh random message id (32 lowercase hex digits and a NUL) into out, for
 * mim_send_options.id: an application that records the id before sending knows the
 * message when its first callback arrives. Thread-safe, non-blocking. Errors:
 * MIM_ERR_INVALID_ARGUMENT (NULL out), MIM_ERR_INTERNAL (the random generator failed). */
MIM_API mim_status mim_message_id_new(char out[MIM_MESSAGE_ID_SIZE]);

/* Options of mim_send_with_options. Borrowed: read during the call only. */
typedef struct mim_send_options {
  size_t struct_size;   /* sizeof(mim_send_options): MIM_SEND_OPTIONS_INIT sets it */
  const char *id;       /* the message's id (from mim_message_id_new; any 1..32 bytes of
                         * UTF-8 unique in the chat), or NULL = a new one */
  const char *reply_to; /* id of the message this one replies to, or NULL / "" */
} mim_send_options;

/* Defaults, with struct_size set: `mim_send_options o = MIM_SEND_OPTIONS_INIT;`. */
#define MIM_SEND_OPTIONS_INIT                                                                      \
  { .struct_size = sizeof(mim_send_options) }

/* mim_send with options (NULL: as mim_send, which is this with NULL). The message is this
 * session's own: on_message reports it with `mine` true to this session only (the
 * session remembers the last 8192 ids it sent). Same queueing, return values,
 * on_send_result and threading as mim_send; also MIM_ERR_INVALID_ARGUMENT for a bad
 * struct_size, an id not 1..32 or a reply_to not 1..64 bytes of UTF-8. id_out (may be NULL)
 * receives the id (the caller's or a new one) whenever MIM_OK is returned. */
MIM_API mim_status mim_send_with_options(mim_session *session, const char *text,
                                         const mim_send_options *options,
                                         char id_out[MIM_MESSAGE_ID_SIZE]);

/* Events. Each sends an event (its own id, written to event_id_out, may be NULL, on
 * MIM_OK) that every reader folds into message `message_id` (docs/PROTOCOL.md 4.3):
 * readers report the change through on_update (with the message's new state) and show it
 * in later on_message and mim_history results. Sent exactly like mim_send: same outbox,
 * order, retries, return values and on_send_result rules (on_send_result reports the
 * event's id), same threads; an event is one message of the outbox (same operations).
 *
 * Only the author's edits and deletions take effect: readers ignore the others (in a
 * moderated chat the moderator does not even forward them). So mim_edit and mim_delete
 * return MIM_ERR_PERMISSION_DENIED without sending when this session has delivered the
 * message and its sender is not this session's user (client-only: its user_id;
 * moderated: its token id, known once one of its own messages came back; before that
 * the event is sent and the moderator decides). An event for a message that readers do
 * not have (yet) is held by each of them (at most 1024) until the message arrives.
 * Errors besides mim_send's: MIM_ERR_INVALID_ARGUMENT (message_id or key not 1..64
 * bytes, text not UTF-8). */

/* Replaces the text of message_id (the author's own) with new_text. Later edits win; an
 * edit of a deleted message is ignored. */
MIM_API mim_status mim_edit(mim_session *session, const char *message_id, const char *new_text,
                            char event_id_out[MIM_MESSAGE_ID_SIZE]);

/* Deletes message_id (the author's own): readers show it with deleted true and text "",
 * without reactions; it stays deleted. */
MIM_API mim_status mim_delete(mim_session *session, const char *message_id,
                              char event_id_out[MIM_MESSAGE_ID_SIZE]);

/* Adds (on true) or removes (on false) this user's reaction `key` (1..64 bytes of UTF-8,
 * e.g. "+1" or an emoji) on message_id; anyone may react. Adding a reaction already
 * there, or removing an absent one, changes nothing (no on_update). */
MIM_API mim_status mim_react(mim_session *session, const char *message_id, const char *key, bool on,
                             char event_id_out[MIM_MESSAGE_ID_SIZE]);

/* ---- Typing and presence ---- */

/* Who is here now: an owned list (mim_member_list_free). */
typedef struct mim_member_list {
  size_t count;
  mim_member *members; /* count members; strings owned by the list */
} mim_member_list;

/* Says this session's user is typing (a keystroke: call it as often as the user types) or
 * has stopped (typing false: the message was sent or the text cleared). Works whether
 * presence is on or not. Never blocks: the signal is published asynchronously
 * (client-only: on topic <chat>; moderated: on "<chat>-input", relayed by the moderator),
 * fire and forget: a failure is logged at MIM_LOG_DEBUG and not retried.
 *
 * Rate (docs/PROTOCOL.md section 5): typing true publishes only when no "on" was sent in
 * the last MIM_TYPING_REFRESH_MS (other calls return MIM_OK and send nothing), so
 * continuous typing costs at most 20 publishes a minute; readers let it lapse
 * MIM_TYPING_EXPIRY_MS after the last one, so keep calling it while the user types.
 * typing false publishes only when an "on" was sent in the last MIM_TYPING_EXPIRY_MS and
 * no "off" since (at most 20 more a minute). Each publish is delivered to every
 * subscriber (N operations more).
 *
 * Thread-safe; callable from callbacks. Errors: MIM_ERR_INVALID_ARGUMENT (NULL session),
 * publish start errors (MIM_ERR_NO_MEMORY, a client being freed). */
MIM_API mim_status mim_set_typing(mim_session *session, bool typing);

/* The members present in the chat now, as this session's presence table knows them: the
 * senders (moderated: trusted token ids, trusted true; client-only: claimed user ids) of
 * which a session was heard of within its expiry (the "ttl" its signals carry; default
 * MIM_PRESENCE_EXPIRY_MS) and did not leave, without this session itself (other sessions
 * of the same user are listed). Local: no server call, never blocks for the network.
 *
 * Presence is on when mim_join_options.on_presence is set: the session then publishes
 * "here" after the join, a heartbeat every presence_heartbeat_ms (MIM_PRESENCE_HEARTBEAT_MS,
 * with +-10 % jitter), an early "here" when it hears a session it did not know (at most
 * once per 5 s, or per a quarter heartbeat when that is shorter: one due within that
 * time waits for its end), and "left" at mim_leave (best effort, bounded by the client's
 * deadline). Operations: each member with
 * presence on publishes 2 heartbeats a minute, so an idle chat of N such members costs 2N
 * publishes + 2N x N deliveries a minute (moderated: plus 2N relays and their 2N
 * deliveries to the moderator): 10 members, 20 + 200 a minute. Bounds: at most 1024
 * members and 8 sessions per member are tracked (further senders are ignored until one
 * leaves; a ninth session replaces the one heard of least recently).
 *
 * *out owned by the caller (mim_member_list_free), set only on MIM_OK. Thread-safe;
 * callable from callbacks (on_presence too). Errors: MIM_ERR_INVALID_ARGUMENT (NULL),
 * MIM_ERR_FAILED_PRECONDITION (presence is off: no on_presence), MIM_ERR_NO_MEMORY. */
MIM_API mim_status mim_members(mim_session *session, mim_member_list **out);

/* Frees a list from mim_members. NULL is ignored. */
MIM_API void mim_member_list_free(mim_member_list *list);

/* ---- Read markers ---- */

/* Read markers (docs/PROTOCOL.md section 6) live in the dictionary "<chat>-read" of the
 * chat's cache, one field per member: the field is the member's user id
 * (mim_join_options.user_id, default display_name), the value
 * {"v":1,"id":"<message id>","ts":<epoch ms>}: "has read everything up to and including
 * that message". They are claims in both modes (any member may write any field). The
 * token needs read-write on "<chat>-read" (the seed policies of <momento/token.h> grant
 * it); without it these calls fail with MIM_ERR_PERMISSION_DENIED. */

/* Marks everything up to and including message_id (1..64 bytes of UTF-8) as read by
 * this session's user: one DictionarySet of its field, with the chat history's TTL
 * (history_ttl_ms, else the client's default), refreshed. The session's unread count
 * then counts from that message. Blocking (from a callback:
 * MIM_ERR_FAILED_PRECONDITION). Thread-safe. Errors: MIM_ERR_INVALID_ARGUMENT (NULL
 * session, bad message_id), dictionary errors (<momento/dictionary.h>). */
MIM_API mim_status mim_mark_read(mim_session *session, const char *message_id);

/* The number of chat messages this session delivered after the one its user's marker
 * names, leaving out those sent by its own user id (sender_id, or `from` for version 1
 * envelopes; mim_message.mine) and deleted ones. *exact is false when the marker's
 * message is not among the last 1024 messages the session delivered (it is older than
 * the join's history, or there is no marker): every such message delivered then counts.
 * The first call fetches the marker (one DictionaryGet) and blocks (from a callback:
 * MIM_ERR_FAILED_PRECONDITION); once it is known (that call, or mim_mark_read) the count
 * is local, costs nothing and may be taken from a callback too. exact may be NULL.
 * Thread-safe. Errors: MIM_ERR_INVALID_ARGUMENT (NULL session or count), dictionary
 * errors; on error *count is 0 and *exact false. */
MIM_API mim_status mim_unread_count(mim_session *session, size_t *count, bool *exact);

/* One member's marker. */
typedef struct mim_read_marker {
  const char *user_id;    /* the field: the member's user id (as claimed) */
  const char *message_id; /* read up to and including this message */
  int64_t read_at_ms;     /* the member's clock when it marked, epoch ms */
} mim_read_marker;

/* Every member's marker, in no particular order. Owned by the caller: free with
 * mim_read_marker_list_free (the strings live in the same allocation). */
typedef struct mim_read_marker_list {
  size_t count;
  mim_read_marker *markers; /* count entries */
} mim_read_marker_list;

/* Read receipts: every member's marker (one DictionaryFetch of "<chat>-read"). Fields
 * whose value is not a marker (section 6), or that are not UTF-8 without NUL, are
 * skipped. *out owned by the caller, set only on MIM_OK (an empty list when nobody has
 * marked). Blocking (from a callback: MIM_ERR_FAILED_PRECONDITION). Thread-safe. Errors:
 * MIM_ERR_INVALID_ARGUMENT (NULL session or out), dictionary errors. */
MIM_API mim_status mim_read_markers(mim_session *session, mim_read_marker_list **out);

/* Frees what mim_read_markers returned; NULL is a no-op. */
MIM_API void mim_read_marker_list_free(mim_read_marker_list *list);

/* ---- Direct chats ---- */

/* Size of a direct chat id buffer: "dm-", 32 hex digits and the NUL. */
#define MIM_DIRECT_CHAT_ID_SIZE 36
/* A user id in a direct chat is 1..MIM_DIRECT_USER_ID_MAX bytes of UTF-8. */
#define MIM_DIRECT_USER_ID_MAX 128

/* Writes the id of the direct chat of users user_a and user_b into out (NUL-terminated,
 * 35 characters): "dm-" followed by the lowercase hex of the first 16 bytes of
 * SHA-256(x || 0x00 || y), x being the smaller of the two ids in byte order (a proper
 * prefix is smaller) and y the other (docs/PROTOCOL.md, section 7). Both users get the
 * same id whatever the argument order; it reveals neither name. The id is an ordinary
 * chat id: join it in either mode, with the tokens mim_token_generate_direct mints.
 * Local: no call to the server, no allocation. Thread-safe.
 * Errors: MIM_ERR_INVALID_ARGUMENT naming the argument when out is NULL or a user id is
 * NULL, empty, longer than MIM_DIRECT_USER_ID_MAX bytes or not valid UTF-8; out is then
 * set to "" (when not NULL). user_a == user_b is allowed (a chat with oneself). */
MIM_API mim_status mim_direct_chat_id(const char *user_a, const char *user_b,
                                      char out[MIM_DIRECT_CHAT_ID_SIZE]);

/* Mints user_id's token for its direct chat with other_user_id in cache: the token of
 * mode's policy (mim_token_generate_client_only or mim_token_generate_moderated) for the
 * chat mim_direct_chat_id(user_id, other_user_id) names, with user_id as the token id
 * (the trusted sender a moderator sees). It grants nothing outside that chat, so it
 * cannot read or join another pair's chat. A real token vendor must authenticate
 * user_id before calling this: anyone who gets the token speaks as user_id.
 * *out is set to a token the caller frees with mim_disposable_token_free, or NULL on
 * error. Blocking (one GenerateDisposableToken call); thread-safe as mim_token_generate.
 * Errors: MIM_ERR_INVALID_ARGUMENT naming the argument (NULL client, cache or out; a user
 * id mim_direct_chat_id refuses; a mode that is not a mim_chat_mode; valid_for_seconds
 * 0), then the errors of mim_token_generate. */
MIM_API mim_status mim_token_generate_direct(mim_client *client, const char *cache,
                                             const char *user_id, const char *other_user_id,
                                             mim_chat_mode mode, uint32_t valid_for_seconds,
                                             mim_disposable_token **out);

/* ---- Moderation (server-mediated pattern) ---- */

typedef struct mim_moderator mim_moderator;

typedef enum mim_moderation_verdict {
  MIM_MODERATION_ACCEPT = 0,  /* push + publish as is */
  MIM_MODERATION_REWRITE = 1, /* push + publish with *new_text instead */
  MIM_MODERATION_REJECT = 2   /* drop it */
} mim_moderation_verdict;

/* Decides on one message from "<chat>-input". To rewrite, set *new_text to a malloc'd
 * UTF-8 string (the library frees it, whatever the verdict); REWRITE without new_text
 * forwards the message as is. msg->publisher_id (and sender_id) is the sender's trusted
 * token id. Edits (mim_edit) are decided here too, their new text in msg->text: they come
 * with msg->edited true, edited_ms their timestamp, id the edit's own id and reply_to ""
 * (the edited message is in raw, "ref"); messages come with edited false. Deletions and
 * reactions are forwarded without asking the filter. Runs on the client's event thread:
 * must not call blocking functions of the client. */
typedef mim_moderation_verdict (*mim_moderation_fn)(const mim_message *msg, char **new_text,
                                                    void *user);

/* Final outcome of one forward: the moderator pushed message_id to list chat_id and
 * published it on topic chat_id (MIM_OK), or gave up (the last error). Called exactly once
 * for each input the filter accepted or rewrote and each deletion and reaction forwarded
 * (repeats, foreign inputs, signals, and edits or deletions dropped by the author check of
 * mim_moderator_start_with_options are not forwarded and get no call), with the
 * moderator's `user`. Runs on the client's event
 * thread, or in the thread of mim_moderator_stop (forwards its flush did not send:
 * MIM_ERR_CANCELLED). Pointers are valid only during the call. Must return quickly and
 * must not call blocking functions of the client nor mim_moderator_stop. */
typedef void (*mim_forward_result_fn)(mim_moderator *moderator, const char *chat_id,
                                      const char *message_id, mim_status status, const char *detail,
                                      void *user);

typedef struct mim_moderator_options {
  size_t struct_size;        /* sizeof(mim_moderator_options): MIM_MODERATOR_OPTIONS_INIT */
  uint32_t history_cap;      /* lists are truncated to the last N; 0 = 100 */
  uint32_t outbox_limit;     /* forwards queued per chat at most; 0 = 1024 */
  uint32_t flush_timeout_ms; /* how long mim_moderator_stop waits for them; 0 = 2000 */
  uint32_t send_timeout_ms;  /* retries of a forward stop this long after its input
                              * arrived; 0 = 60000 */
  mim_forward_result_fn on_forward_result; /* optional */
} mim_moderator_options;

/* Defaults, with struct_size set. */
#define MIM_MODERATOR_OPTIONS_INIT                                                                 \
  { .struct_size = sizeof(mim_moderator_options) }

/* Fills *options with defaults, as MIM_MODERATOR_OPTIONS_INIT does. Inline, so that it writes
 * the struct as the header the program was compiled against defines it, never more, whatever
 * library version the program runs with. NULL is ignored. */
static inline void mim_moderator_options_init(mim_moderator_options *options) {
  if (options) {
    memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
  }
}

/* Subscribes to "<chat>-input" for each of the chats and forwards what the filter
 * accepts to list <chat> (capped to history_cap) and topic <chat>, keeping the message's
 * id, from and timestamp, and recording its sender: "pub", the token id Momento reports
 * for the input (docs/PROTOCOL.md 3.2), replacing any the input carried. Foreign inputs
 * (not an envelope) and repeats of a recently forwarded id are dropped without calling
 * the filter (logged at MIM_LOG_DEBUG).
 *
 * Author check (docs/PROTOCOL.md 4.4): an edit or a deletion is forwarded only when its
 * publisher is the recorded sender of the message it refers to; the moderator knows the
 * senders of what it forwarded and, read once at start (one ListFetch per chat), of the
 * messages the lists held then (history_cap + 4096 per chat at most, oldest forgotten
 * first). Others are dropped (MIM_LOG_DEBUG), also when the message is unknown.
 *
 * Forwarding goes through an outbox per chat, like mim_send's: a forward pushes to the
 * list, then publishes; a chat's forwards run one at a time in input order, so list and
 * topic keep the order of "<chat>-input" (and so each sender's order). A forward that
 * fails with a status worth retrying (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED,
 * INTERNAL, UNKNOWN; UNAUTHENTICATED a few times with a token_url) is retried with
 * exponential backoff (50 ms doubling to 2 s, with jitter) until it succeeds or
 * send_timeout_ms has passed; after a successful push only the publish is retried (a
 * push whose answer was lost may leave the message twice in the list: readers drop the
 * repeat by id). Each outcome goes to on_forward_result; failures are also logged
 * (MIM_LOG_WARN). When outbox_limit forwards of a chat are queued, an accepted input is
 * dropped and reported with MIM_ERR_RESOURCE_EXHAUSTED.
 *
 * The client needs read/write on those lists and publish/subscribe on those topics.
 * Blocking until every subscription is confirmed. *out owned by the caller: release
 * with mim_moderator_stop. options may be NULL (defaults). Errors:
 * MIM_ERR_INVALID_ARGUMENT (also for a chat whose list, topic or "<chat>-input" topic
 * Momento would refuse, as mim_join checks them), MIM_ERR_NO_MEMORY and subscription
 * errors;
 * MIM_ERR_CANCELLED when a callback called mim_moderator_stop on it before this returned
 * (it is then stopped and freed). */
MIM_API mim_status mim_moderator_start_with_options(mim_client *client, const char *cache,
                                                    const char *const *chat_ids, size_t n_chats,
                                                    const mim_moderator_options *options,
                                                    mim_moderation_fn filter, void *user,
                                                    mim_moderator **out);

/* mim_moderator_start_with_options with the defaults and this history_cap (0 = 100). */
MIM_API mim_status mim_moderator_start(mim_client *client, const char *cache,
                                       const char *const *chat_ids, size_t n_chats,
                                       uint32_t history_cap, mim_moderation_fn filter, void *user,
                                       mim_moderator **out);

/* Stops and frees: unsubscribes (no filter call runs after that), then waits up to
 * flush_timeout_ms (all chats together) for the queued forwards to be done (each
 * reported as usual), reports
 * every forward still queued with MIM_ERR_CANCELLED (the one in flight at that moment
 * may still reach the server), and waits for that call to end (its deadline) and for a
 * pending backoff timer (at most 2 s). When it returns no callback of the moderator runs.
 * NULL is ignored. From a callback of the client (e.g. the filter) it is deferred, as
 * mim_leave is: it returns at once, the filter is not called any more, and the rest runs
 * on a library thread (on_forward_result still reports each forward);
 * mim_client_free waits for it. A moderator not stopped by then is stopped by
 * mim_client_free (after a MIM_LOG_WARN line), as this function would; its handle is
 * freed and must not be used afterwards. */
MIM_API void mim_moderator_stop(mim_moderator *moderator);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_IM_H */
