/*
 * libmomento-im: disposable tokens and permissions.
 *
 * A disposable token is a short-lived credential scoped by permissions. A privileged
 * process (a token vendor, a moderator) mints one per chat client; the client builds its
 * mim_client from the returned v1 credential string. The token id chosen by the minter
 * becomes the publisher_id receivers see on every value the token publishes: the only
 * sender identity they can trust.
 */
#ifndef MOMENTO_TOKEN_H
#define MOMENTO_TOKEN_H

#include <momento/client.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mim_cache_role {
  MIM_CACHE_READ_WRITE = 1, /* "readwrite" */
  MIM_CACHE_READ_ONLY = 2,  /* "read" */
  MIM_CACHE_WRITE_ONLY = 3  /* "write" */
} mim_cache_role;

typedef enum mim_topic_role {
  MIM_TOPIC_PUBLISH_SUBSCRIBE = 1, /* "publishsubscribe" */
  MIM_TOPIC_SUBSCRIBE_ONLY = 2,    /* "subscribeonly" */
  MIM_TOPIC_PUBLISH_ONLY = 3       /* "publishonly" */
} mim_topic_role;

/* Permissions one token may hold: hosted Momento's hard limit ("Permissions per API key
 * or token", docs.momentohq.com, Service Limits). mim_token_generate refuses more. */
#define MIM_MAX_TOKEN_PERMISSIONS 10

/* Permission builder. Not thread-safe (build it in one thread, then share read-only). */
typedef struct mim_permissions mim_permissions;

/* New empty set of explicit grants. NULL only when out of memory. */
MIM_API mim_permissions *mim_permissions_new(void);
MIM_API void mim_permissions_free(mim_permissions *perms);

/* Grants role on items of a cache. cache NULL = all caches. key NULL = all items;
 * else the item key (a list name) or, with is_prefix, every key starting with it.
 * Strings are copied. Errors: MIM_ERR_INVALID_ARGUMENT (NULL perms, unknown role, "" for
 * cache or key, is_prefix without a key, a cache name or key Momento would refuse: see
 * README "Names"; the detail says which), MIM_ERR_NO_MEMORY. */
MIM_API mim_status mim_permissions_add_cache(mim_permissions *perms, mim_cache_role role,
                                             const char *cache, const char *key, bool is_prefix);

/* Grants role on topics of a cache. cache NULL = all caches; topic NULL = all topics;
 * else the topic name or, with is_prefix, every topic starting with it. Errors as for
 * mim_permissions_add_cache (a topic name: at most 255 bytes of UTF-8). */
MIM_API mim_status mim_permissions_add_topic(mim_permissions *perms, mim_topic_role role,
                                             const char *cache, const char *topic, bool is_prefix);

/* A minted token. Owned by the caller; free with mim_disposable_token_free (zeroes it). */
typedef struct mim_disposable_token {
  char *credential;     /* v1 credential string (base64 JSON) to hand to the client */
  char *api_key;        /* the raw auth token inside it */
  char *endpoint;       /* base endpoint inside it */
  uint64_t valid_until; /* epoch seconds */
} mim_disposable_token;

MIM_API void mim_disposable_token_free(mim_disposable_token *token);

/* Mints a token with these permissions, valid for valid_for_seconds (> 0), carrying
 * token_id (may be NULL or "": no id). perms must hold at least one grant and at most
 * MIM_MAX_TOKEN_PERMISSIONS (more fails with MIM_ERR_INVALID_ARGUMENT before anything
 * is sent), and is not needed afterwards. The credential names the endpoint the server
 * returned, or the client's own endpoint when the server returned none. Only an API key
 * mints: the client must hold one (as in hosted Momento, a disposable token cannot mint
 * at all), and the token never outlives that key (valid_until says when it ends).
 * Blocking. Errors: MIM_ERR_INVALID_ARGUMENT, MIM_ERR_PERMISSION_DENIED (the client's
 * own key cannot mint, or cannot grant that), MIM_ERR_PROTOCOL (unusable response), and
 * call errors. */
MIM_API mim_status mim_token_generate(mim_client *client, const mim_permissions *perms,
                                      uint32_t valid_for_seconds, const char *token_id,
                                      mim_disposable_token **out);

/* The two policies of the instant-messaging pattern for chat `chat_id` in `cache`
 * (docs/PROTOCOL.md section 8):
 * client-only: readwrite on item chat_id, publishsubscribe on topic chat_id, readwrite
 * on item "<chat_id>-read" (3 permissions);
 * moderated (server-mediated): read on item chat_id, publishonly on topic
 * "<chat_id>-input", subscribeonly on topic chat_id, readwrite on item "<chat_id>-read"
 * (4 permissions).
 * "<chat_id>-read" is the read-marker dictionary (mim_mark_read, mim_read_markers):
 * markers are claims in both modes, so members write it directly. A chat id whose names
 * Momento would refuse (as mim_join checks them, "<chat_id>-input" included for
 * moderated, "<chat_id>-read" for both) fails with MIM_ERR_INVALID_ARGUMENT naming the
 * name, before anything is sent. */
MIM_API mim_status mim_token_generate_client_only(mim_client *client, const char *cache,
                                                  const char *chat_id, uint32_t valid_for_seconds,
                                                  const char *token_id, mim_disposable_token **out);
MIM_API mim_status mim_token_generate_moderated(mim_client *client, const char *cache,
                                                const char *chat_id, uint32_t valid_for_seconds,
                                                const char *token_id, mim_disposable_token **out);

#ifdef __cplusplus
}
#endif

#endif /* MOMENTO_TOKEN_H */
