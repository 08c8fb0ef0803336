/*
 * Disposable tokens: a permission builder that produces permission_messages.Permissions
 * (always the explicit form), /token.Token/GenerateDisposableToken on the token plane, and
 * the two policies of the instant-messaging pattern.
 */
#include "chat_defaults.h"
#include "client_internal.h"
#include "error.h"
#include "pb_call.h"

#include <momento/token.h>
#include <permissionmessages.pb-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <token.pb-c.h>

#define MAX_GRANTS 1024

typedef PermissionMessages__PermissionsType PermType;
typedef PermissionMessages__PermissionsType__All PermAll;

/* One grant with every sub-message it may point at stored inline, so building the
 * request only links pointers. Allocated once and never moved (the builder keeps an
 * array of pointers), which keeps those internal pointers valid. */
typedef struct grant {
  PermType type;
  PermissionMessages__PermissionsType__CachePermissions cache_perm;
  PermissionMessages__PermissionsType__TopicPermissions topic_perm;
  PermAll all_caches;
  PermAll all_names;
  PermissionMessages__PermissionsType__CacheSelector cache_sel;
  PermissionMessages__PermissionsType__CacheItemSelector item_sel;
  PermissionMessages__PermissionsType__TopicSelector topic_sel;
  char *cache; /* owned copies */
  char *name;
} grant;

struct mim_permissions {
  grant **grants;
  size_t n, cap;
};

MIM_API mim_permissions *mim_permissions_new(void) {
  return calloc(1, sizeof(mim_permissions));
}

static void grant_free(grant *g) {
  if (!g)
    return;
  free(g->cache);
  free(g->name);
  free(g);
}

MIM_API void mim_permissions_free(mim_permissions *perms) {
  if (!perms)
    return;
  for (size_t i = 0; i < perms->n; i++)
    grant_free(perms->grants[i]);
  free(perms->grants);
  free(perms);
}

static mim_status check_grant(const mim_permissions *perms, const char *cache, const char *name,
                              mim_name_kind kind, const char *name_what, bool is_prefix) {
  if (!perms)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "perms is NULL");
  if (cache && !*cache)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "cache is empty (NULL means all caches)");
  if (name && !*name)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is empty (NULL means all)", name_what);
  if (!name && is_prefix)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "is_prefix needs a %s prefix", name_what);
  /* A scope naming what no call could ever use is a mistake worth reporting here. */
  mim_status st = cache ? mim_check_cache_name(cache) : MIM_OK;
  if (st == MIM_OK && name)
    st = mim_check_name_as(kind, name_what, name, NULL);
  if (st != MIM_OK)
    return st;
  if (perms->n >= MAX_GRANTS)
    return mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "more than %d grants", MAX_GRANTS);
  return MIM_OK;
}

/* A new grant with copies of cache and name and the cache oneof filled in, or NULL
 * (out of memory; the detail is recorded). */
static grant *grant_new(const char *cache, const char *name) {
  grant *g = calloc(1, sizeof *g);
  if (!g) {
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory adding a grant");
    return NULL;
  }
  g->cache = cache ? strdup(cache) : NULL;
  g->name = name ? strdup(name) : NULL;
  if ((cache && !g->cache) || (name && !g->name)) {
    grant_free(g);
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory adding a grant");
    return NULL;
  }
  PermType t = PERMISSION_MESSAGES__PERMISSIONS_TYPE__INIT;
  PermAll all = PERMISSION_MESSAGES__PERMISSIONS_TYPE__ALL__INIT;
  PermissionMessages__PermissionsType__CacheSelector cs =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__INIT;
  g->type = t;
  g->all_caches = all;
  g->all_names = all;
  g->cache_sel = cs;
  if (g->cache) {
    g->cache_sel.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME;
    g->cache_sel.cache_name = g->cache;
  }
  return g;
}

static mim_status push_grant(mim_permissions *perms, grant *g) {
  if (perms->n == perms->cap) {
    size_t cap = perms->cap ? perms->cap * 2 : 4;
    grant **ng = realloc(perms->grants, cap * sizeof *ng);
    if (!ng) {
      grant_free(g);
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory adding a grant");
    }
    perms->grants = ng;
    perms->cap = cap;
  }
  perms->grants[perms->n++] = g;
  return MIM_OK;
}

static bool cache_role(mim_cache_role role, PermissionMessages__CacheRole *out) {
  switch (role) {
  case MIM_CACHE_READ_WRITE:
    *out = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite;
    return true;
  case MIM_CACHE_READ_ONLY:
    *out = PERMISSION_MESSAGES__CACHE_ROLE__CacheReadOnly;
    return true;
  case MIM_CACHE_WRITE_ONLY:
    *out = PERMISSION_MESSAGES__CACHE_ROLE__CacheWriteOnly;
    return true;
  }
  return false;
}

static bool topic_role(mim_topic_role role, PermissionMessages__TopicRole *out) {
  switch (role) {
  case MIM_TOPIC_PUBLISH_SUBSCRIBE:
    *out = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite;
    return true;
  case MIM_TOPIC_SUBSCRIBE_ONLY:
    *out = PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadOnly;
    return true;
  case MIM_TOPIC_PUBLISH_ONLY:
    *out = PERMISSION_MESSAGES__TOPIC_ROLE__TopicWriteOnly;
    return true;
  }
  return false;
}

static void link_cache_perm(grant *g, PermissionMessages__CacheRole role, bool is_prefix) {
  PermissionMessages__PermissionsType__CachePermissions cp =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__INIT;
  PermissionMessages__PermissionsType__CacheItemSelector is =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__INIT;
  g->cache_perm = cp;
  g->item_sel = is;
  g->cache_perm.role = role;
  if (g->cache) {
    g->cache_perm.cache_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR;
    g->cache_perm.cache_selector = &g->cache_sel;
  } else {
    g->cache_perm.cache_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ALL_CACHES;
    g->cache_perm.all_caches = &g->all_caches;
  }
  if (g->name) {
    /* key and key_prefix share the union slot; only the case differs. */
    g->item_sel.kind_case =
        is_prefix ? PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY_PREFIX
                  : PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY;
    g->item_sel.key.data = (uint8_t *)g->name;
    g->item_sel.key.len = strlen(g->name);
    g->cache_perm.cache_item_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ITEM_SELECTOR;
    g->cache_perm.item_selector = &g->item_sel;
  } else {
    g->cache_perm.cache_item_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ALL_ITEMS;
    g->cache_perm.all_items = &g->all_names;
  }
  g->type.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS;
  g->type.cache_permissions = &g->cache_perm;
}

static void link_topic_perm(grant *g, PermissionMessages__TopicRole role, bool is_prefix) {
  PermissionMessages__PermissionsType__TopicPermissions tp =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__INIT;
  PermissionMessages__PermissionsType__TopicSelector ts =
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__INIT;
  g->topic_perm = tp;
  g->topic_sel = ts;
  g->topic_perm.role = role;
  if (g->cache) {
    g->topic_perm.cache_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_CACHE_SELECTOR;
    g->topic_perm.cache_selector = &g->cache_sel;
  } else {
    g->topic_perm.cache_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__CACHE_ALL_CACHES;
    g->topic_perm.all_caches = &g->all_caches;
  }
  if (g->name) {
    g->topic_sel.kind_case =
        is_prefix ? PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME_PREFIX
                  : PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME;
    g->topic_sel.topic_name = g->name;
    g->topic_perm.topic_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR;
    g->topic_perm.topic_selector = &g->topic_sel;
  } else {
    g->topic_perm.topic_case =
        PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_ALL_TOPICS;
    g->topic_perm.all_topics = &g->all_names;
  }
  g->type.kind_case = PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS;
  g->type.topic_permissions = &g->topic_perm;
}

MIM_API mim_status mim_permissions_add_cache(mim_permissions *perms, mim_cache_role role,
                                             const char *cache, const char *key, bool is_prefix) {
  mim_clear_error();
  PermissionMessages__CacheRole r = PERMISSION_MESSAGES__CACHE_ROLE__CachePermitNone;
  mim_status st = check_grant(perms, cache, key, MIM_NAME_LIST, "key", is_prefix);
  if (st == MIM_OK && !cache_role(role, &r))
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "unknown cache role %d", (int)role);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  grant *g = grant_new(cache, key);
  if (!g)
    return mim_arg_in(__func__, MIM_ERR_NO_MEMORY);
  link_cache_perm(g, r, is_prefix);
  return mim_arg_in(__func__, push_grant(perms, g));
}

MIM_API mim_status mim_permissions_add_topic(mim_permissions *perms, mim_topic_role role,
                                             const char *cache, const char *topic, bool is_prefix) {
  mim_clear_error();
  PermissionMessages__TopicRole r = PERMISSION_MESSAGES__TOPIC_ROLE__TopicPermitNone;
  mim_status st = check_grant(perms, cache, topic, MIM_NAME_TOPIC, "topic", is_prefix);
  if (st == MIM_OK && !topic_role(role, &r))
    st = mim_fail(MIM_ERR_INVALID_ARGUMENT, "unknown topic role %d", (int)role);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  grant *g = grant_new(cache, topic);
  if (!g)
    return mim_arg_in(__func__, MIM_ERR_NO_MEMORY);
  link_topic_perm(g, r, is_prefix);
  return mim_arg_in(__func__, push_grant(perms, g));
}

/* ---- minted tokens ---- */

static void free_secret_str(char *s) {
  if (s) {
    explicit_bzero(s, strlen(s));
    free(s);
  }
}

MIM_API void mim_disposable_token_free(mim_disposable_token *token) {
  if (!token)
    return;
  free_secret_str(token->credential);
  free_secret_str(token->api_key);
  free(token->endpoint);
  explicit_bzero(token, sizeof *token);
  free(token);
}

/* The response carries the minted key: its bytes are zeroed once decoded. */
static const mim_pb_method generate_method = {
    MIM_HOST_TOKEN, "/token.Token/GenerateDisposableToken",
    &token____generate_disposable_token_response__descriptor, true};

/* A token request and every message it points at, in the caller's storage. */
typedef struct token_msg {
  PermType **types; /* malloc'd; the caller frees it after the call */
  PermissionMessages__ExplicitPermissions ex;
  PermissionMessages__Permissions perms;
  Token__GenerateDisposableTokenRequest__Expires expires;
  Token__GenerateDisposableTokenRequest req;
} token_msg;

/* Links the request in m. The grants and the client's key are only pointed at, so m
 * must not outlive perms or the call. */
static mim_status token_request(const mim_client *client, const mim_permissions *perms,
                                uint32_t valid_for_seconds, const char *token_id, token_msg *m) {
  m->types = calloc(perms->n, sizeof *m->types);
  if (!m->types)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory building permissions");
  for (size_t i = 0; i < perms->n; i++)
    m->types[i] = &perms->grants[i]->type;
  PermissionMessages__ExplicitPermissions ex = PERMISSION_MESSAGES__EXPLICIT_PERMISSIONS__INIT;
  m->ex = ex;
  m->ex.n_permissions = perms->n;
  m->ex.permissions = m->types;
  PermissionMessages__Permissions p = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  m->perms = p;
  m->perms.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT;
  m->perms.explicit_ = &m->ex;
  Token__GenerateDisposableTokenRequest__Expires exp =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  m->expires = exp;
  m->expires.valid_for_seconds = valid_for_seconds;
  Token__GenerateDisposableTokenRequest req = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  m->req = req;
  m->req.expires = &m->expires;
  m->req.permissions = &m->perms;
  /* The official SDKs put the caller's own key in the body (and send no metadata); we
   * send both, so either kind of server accepts the call. */
  m->req.auth_token = (char *)mim_client_auth_token(client); /* only read while packing */
  if (token_id)
    m->req.token_id = (char *)token_id; /* only read while packing */
  return MIM_OK;
}

static mim_status make_token(const mim_client *client,
                             const Token__GenerateDisposableTokenResponse *r,
                             mim_disposable_token **out) {
  const char *endpoint = r->endpoint && *r->endpoint ? r->endpoint : mim_client_endpoint(client);
  if (!r->api_key || !*r->api_key)
    return mim_fail(MIM_ERR_PROTOCOL, "token response has no api_key");
  if (!*endpoint)
    return mim_fail(MIM_ERR_PROTOCOL, "token response has no endpoint and the client has none");
  mim_disposable_token *t = calloc(1, sizeof *t);
  if (!t)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory for a token");
  t->valid_until = r->valid_until;
  t->api_key = strdup(r->api_key);
  t->endpoint = strdup(endpoint);
  mim_status st = t->api_key && t->endpoint
                      ? mim_credentials_encode_v1(t->endpoint, t->api_key, &t->credential)
                      : mim_fail(MIM_ERR_NO_MEMORY, "out of memory for a token");
  if (st == MIM_ERR_INVALID_ARGUMENT)
    st = mim_fail(MIM_ERR_PROTOCOL, "server returned a token that cannot be encoded: %s",
                  mim_last_error_detail());
  if (st != MIM_OK) {
    mim_disposable_token_free(t);
    return st;
  }
  *out = t;
  return MIM_OK;
}

/* Builds the token from the response, zeroes the key the response held and frees it
 * (the call already zeroed the response bytes). */
static mim_status finish(const mim_client *client, ProtobufCMessage *m,
                         mim_disposable_token **out) {
  Token__GenerateDisposableTokenResponse *r = (Token__GenerateDisposableTokenResponse *)m;
  mim_status st = make_token(client, r, out);
  if (r->api_key)
    explicit_bzero(r->api_key, strlen(r->api_key));
  mim_pb_free(m);
  return st;
}

MIM_API mim_status mim_token_generate(mim_client *client, const mim_permissions *perms,
                                      uint32_t valid_for_seconds, const char *token_id,
                                      mim_disposable_token **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  if (!client || !perms)
    return mim_arg_fail(__func__, "%s is NULL", client ? "perms" : "client");
  if (perms->n == 0)
    return mim_arg_fail(__func__, "perms grants nothing");
  if (perms->n > MIM_MAX_TOKEN_PERMISSIONS)
    return mim_arg_fail(__func__,
                        "perms holds %zu grants; Momento allows at most %d permissions per token "
                        "(a hard limit): split them over several tokens",
                        perms->n, MIM_MAX_TOKEN_PERMISSIONS);
  if (valid_for_seconds == 0)
    return mim_arg_fail(__func__, "valid_for_seconds is 0");
  token_msg m;
  mim_status st = token_request(client, perms, valid_for_seconds, token_id, &m);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  ProtobufCMessage *resp;
  st = mim_pb_call(client, &generate_method, NULL, &m.req.base, &resp);
  free(m.types);
  return mim_arg_in(__func__, st == MIM_OK ? finish(client, resp, out) : st);
}

/* ---- the two policies ---- */

/* Checks what the policy's grants will name, so a chat id no session could use fails
 * here, naming the name that does not fit, rather than later on the server. */
static mim_status check_chat(const char *fn, const char *cache, const char *chat_id,
                             bool moderated) {
  mim_clear_error();
  if (!cache || !*cache)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "cache is %s", cache ? "empty" : "NULL");
  if (!chat_id || !*chat_id)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "chat_id is %s", chat_id ? "empty" : "NULL");
  mim_status st = mim_check_cache_name(cache);
  return st == MIM_OK ? mim_check_chat_names(fn, chat_id, moderated) : st;
}

/* Mints a token from a filled builder and frees the builder. */
static mim_status generate_and_free(mim_client *client, mim_permissions *p, mim_status st,
                                    uint32_t valid_for_seconds, const char *token_id,
                                    mim_disposable_token **out) {
  if (st == MIM_OK)
    st = mim_token_generate(client, p, valid_for_seconds, token_id, out);
  mim_permissions_free(p);
  return st;
}

/* Read-write on the chat's read-marker dictionary, in both modes: markers are claims
 * (PROTOCOL section 6), so a member writes it directly, even in a moderated chat. */
static mim_status add_read_markers(mim_permissions *p, const char *cache, const char *chat_id) {
  char *dict = mim_chat_read_dictionary(chat_id);
  if (!dict)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory building permissions");
  mim_status st = mim_permissions_add_cache(p, MIM_CACHE_READ_WRITE, cache, dict, false);
  free(dict);
  return st;
}

MIM_API mim_status mim_token_generate_client_only(mim_client *client, const char *cache,
                                                  const char *chat_id, uint32_t valid_for_seconds,
                                                  const char *token_id,
                                                  mim_disposable_token **out) {
  if (out)
    *out = NULL;
  mim_status st = check_chat("mim_token_generate_client_only", cache, chat_id, false);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  mim_permissions *p = mim_permissions_new();
  if (!p)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory building permissions");
  st = mim_permissions_add_cache(p, MIM_CACHE_READ_WRITE, cache, chat_id, false);
  if (st == MIM_OK)
    st = mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_SUBSCRIBE, cache, chat_id, false);
  if (st == MIM_OK)
    st = add_read_markers(p, cache, chat_id);
  return mim_arg_in(__func__, generate_and_free(client, p, st, valid_for_seconds, token_id, out));
}

MIM_API mim_status mim_token_generate_moderated(mim_client *client, const char *cache,
                                                const char *chat_id, uint32_t valid_for_seconds,
                                                const char *token_id, mim_disposable_token **out) {
  if (out)
    *out = NULL;
  mim_status st = check_chat("mim_token_generate_moderated", cache, chat_id, true);
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  char *input = mim_chat_input_topic(chat_id);
  mim_permissions *p = mim_permissions_new();
  if (!input || !p) {
    free(input);
    mim_permissions_free(p);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory building permissions");
  }
  st = mim_permissions_add_cache(p, MIM_CACHE_READ_ONLY, cache, chat_id, false);
  if (st == MIM_OK)
    st = mim_permissions_add_topic(p, MIM_TOPIC_PUBLISH_ONLY, cache, input, false);
  if (st == MIM_OK)
    st = mim_permissions_add_topic(p, MIM_TOPIC_SUBSCRIBE_ONLY, cache, chat_id, false);
  if (st == MIM_OK)
    st = add_read_markers(p, cache, chat_id);
  free(input);
  return mim_arg_in(__func__, generate_and_free(client, p, st, valid_for_seconds, token_id, out));
}
