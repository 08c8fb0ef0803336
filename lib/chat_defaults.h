/* Internal: what sessions (im.c), the moderator (moderator.c) and the token policies
 * (token.c) must agree on about a chat: the names of its moderated input topic and read-marker
 * dictionary, and the defaults of the options that both mim_join and mim_moderator_start take. One
 * place, so a client and the moderator it talks to can never disagree on them. */
#ifndef MIM_LIB_CHAT_DEFAULTS_H
#define MIM_LIB_CHAT_DEFAULTS_H

/* Messages a chat's list keeps when the caller says 0. */
#define MIM_DEFAULT_HISTORY_CAP 100u
/* History messages a join fetches and shows when the caller says 0: well under the cap,
 * so a join costs 10 operations of the cache's budget instead of 50. */
#define MIM_DEFAULT_INITIAL_HISTORY 20u
/* Outbox (see outbox.h): messages queued at most, how long leave/stop waits for them,
 * and how long a message is retried. */
#define MIM_DEFAULT_OUTBOX_LIMIT 1024u
#define MIM_DEFAULT_FLUSH_TIMEOUT_MS 2000u
#define MIM_DEFAULT_SEND_TIMEOUT_MS 60000u

/* Moderated clients publish on "<chat>" MIM_INPUT_TOPIC_SUFFIX, never on the chat topic. */
#define MIM_INPUT_TOPIC_SUFFIX "-input"

/* The input topic of chat_id, malloc'd (the caller frees it), or NULL when out of
 * memory. */
char *mim_chat_input_topic(const char *chat_id);

/* Read markers live in the dictionary "<chat>" MIM_READ_DICTIONARY_SUFFIX (PROTOCOL
 * section 6), one field per member. */
#define MIM_READ_DICTIONARY_SUFFIX "-read"

/* The read-marker dictionary of chat_id, malloc'd (the caller frees it), or NULL when
 * out of memory. */
char *mim_chat_read_dictionary(const char *chat_id);

#endif
