/* mim-local: token minting/verification and the permission rules of the spec. */
#include "auth.h"

#include "base64.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef PermissionMessages__Permissions Perms;
typedef PermissionMessages__PermissionsType Grant;
typedef PermissionMessages__PermissionsType__CachePermissions CacheGrant;
typedef PermissionMessages__PermissionsType__TopicPermissions TopicGrant;

#define TOKEN_PREFIX "mim1."
#define PAYLOAD_VERSION 1
#define MAC_LEN 32
/* Verified-token cache: direct-mapped slots; tokens longer than this are not cached. */
#define VCACHE_SLOTS 256
#define VCACHE_MAX_TOKEN 2048

/* ---- secret ---- */

static bool parse_hex(const char *s, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i += 2) {
    unsigned v;
    if (sscanf(s + i, "%2x", &v) != 1) {
      return false;
    }
    out[i / 2] = (uint8_t)v;
  }
  return true;
}

static bool load_secret(auth_key *key, const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    return false;
  }
  char buf[200];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) {
    n--;
  }
  buf[n] = '\0';
  if (n == 64 && parse_hex(buf, 64, key->secret)) {
    key->len = 32;
  } else if (n >= 16) {
    key->len = n > sizeof key->secret ? sizeof key->secret : n;
    memcpy(key->secret, buf, key->len);
  } else {
    srv_log(LOG_ERROR, "auth secret file %s is too short (need 16+ bytes)", path);
    return false;
  }
  return true;
}

static bool save_secret(const auth_key *key, const char *path) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    srv_log(LOG_ERROR, "cannot create auth secret file %s: %s", path, strerror(errno));
    return false;
  }
  /* Two hex digits per byte, then a newline; the length is tracked, so no NUL is needed. */
  char hex[2 * sizeof key->secret + 2];
  size_t n = 0;
  for (size_t i = 0; i < key->len; i++) {
    n += (size_t)snprintf(hex + n, sizeof hex - n, "%02x", key->secret[i]);
  }
  hex[n++] = '\n';
  bool ok = write(fd, hex, n) == (ssize_t)n;
  ok = close(fd) == 0 && ok;
  explicit_bzero(hex, sizeof hex);
  if (!ok) {
    /* A partial file would be read at the next start as a short (weaker) raw secret. */
    srv_log(LOG_ERROR, "cannot write auth secret file %s", path);
    unlink(path);
  }
  return ok;
}

bool auth_key_init(auth_key *key, const char *path) {
  static atomic_uint_fast64_t next_id = 1;
  memset(key, 0, sizeof *key);
  key->id = atomic_fetch_add(&next_id, 1);
  if (path && access(path, F_OK) == 0) {
    return load_secret(key, path);
  }
  key->len = 32;
  if (!srv_random(key->secret, key->len)) {
    srv_log(LOG_ERROR, "no randomness for the auth secret");
    return false;
  }
  return path ? save_secret(key, path) : true;
}

/* ---- tokens ---- */

static bool mac(const auth_key *key, const char *data, size_t len, uint8_t out[MAC_LEN]) {
  unsigned int out_len = 0;
  return HMAC(EVP_sha256(), key->secret, (int)key->len, (const uint8_t *)data, len, out,
              &out_len) != NULL &&
         out_len == MAC_LEN;
}

static uint8_t *build_payload(const Perms *perms, const char *id, uint64_t expires, size_t *len) {
  Perms su = PERMISSION_MESSAGES__PERMISSIONS__INIT;
  su.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
  su.super_user = PERMISSION_MESSAGES__SUPER_USER_PERMISSIONS__SuperUser;
  if (!perms) {
    perms = &su;
  }
  size_t id_len = strlen(id);
  if (id_len > 0xffff) {
    return NULL;
  }
  size_t plen = permission_messages__permissions__get_packed_size(perms);
  *len = 1 + 8 + 2 + id_len + plen;
  uint8_t *p = malloc(*len);
  if (!p) {
    return NULL;
  }
  p[0] = PAYLOAD_VERSION;
  for (int i = 0; i < 8; i++) {
    p[1 + i] = (uint8_t)(expires >> (56 - 8 * i));
  }
  p[9] = (uint8_t)(id_len >> 8);
  p[10] = (uint8_t)id_len;
  /* A length-prefixed binary field (p[9..10]), not a C string: no NUL belongs here. */
  memcpy(p + 11, id, id_len); // NOLINT(bugprone-not-null-terminated-result)
  permission_messages__permissions__pack(perms, p + 11 + id_len);
  return p;
}

char *auth_mint(const auth_key *key, const Perms *perms, const char *token_id, uint64_t expires) {
  size_t plen;
  uint8_t *payload = build_payload(perms, token_id ? token_id : "", expires, &plen);
  char *p64 = payload ? cmn_b64_encode(payload, plen, CMN_B64_URL) : NULL;
  free(payload);
  if (!p64) {
    return NULL;
  }
  size_t signed_len = strlen(TOKEN_PREFIX) + strlen(p64);
  size_t cap = signed_len + 1 + (size_t)(MAC_LEN + 2) / 3 * 4 + 1;
  char *tok = malloc(cap);
  uint8_t m[MAC_LEN];
  char *m64 = NULL;
  if (tok) {
    snprintf(tok, signed_len + 1, "%s%s", TOKEN_PREFIX, p64);
    if (mac(key, tok, signed_len, m)) {
      m64 = cmn_b64_encode(m, MAC_LEN, CMN_B64_URL);
    }
  }
  free(p64);
  if (!m64) {
    free(tok);
    return NULL;
  }
  snprintf(tok + signed_len, cap - signed_len, ".%s", m64);
  free(m64);
  return tok;
}

/* Token parts decode only in the spelling auth_mint writes (url alphabet, no '=', zero
 * spare bits): a token has exactly one accepted string, so nothing keyed on the string
 * (the verified-token cache, a client's or proxy's token cache or log) can be fooled by
 * a second spelling. NULL when not canonical base64. */
static uint8_t *b64_decode_canonical(const char *text, size_t len, size_t *out_len) {
  uint8_t *out = NULL;
  cmn_b64_decode(text, len, CMN_B64_URL, CMN_B64_PAD_CANONICAL, &out, out_len, NULL);
  return out;
}

/* Checks the MAC of "mim1.<payload>.<mac>"; returns the decoded payload or NULL. */
static uint8_t *check_mac(const auth_key *key, const char *tok, size_t len, size_t *plen) {
  size_t pre = strlen(TOKEN_PREFIX);
  if (len <= pre || memcmp(tok, TOKEN_PREFIX, pre) != 0) {
    return NULL;
  }
  const char *dot = memchr(tok + pre, '.', len - pre);
  if (!dot) {
    return NULL;
  }
  size_t signed_len = (size_t)(dot - tok);
  size_t mlen = 0;
  uint8_t *given = b64_decode_canonical(dot + 1, len - signed_len - 1, &mlen);
  uint8_t want[MAC_LEN];
  bool ok = given && mlen == MAC_LEN && mac(key, tok, signed_len, want) &&
            CRYPTO_memcmp(given, want, MAC_LEN) == 0;
  free(given);
  return ok ? b64_decode_canonical(tok + pre, signed_len - pre, plen) : NULL;
}

/*
 * The cache of verified tokens. Every call carries the same token for its lifetime, and
 * recomputing its HMAC was 5.6 % of mim-local's CPU (perf, bench_mim --only tput). A slot
 * holds a token whose MAC was verified under key id, and its decoded payload. A hit
 * needs the whole token to be equal, compared with CRYPTO_memcmp: the slot index comes
 * from the caller's own bytes, so timing reveals nothing about a cached token. Expiry
 * and permissions live in the payload and are parsed on every call as before. Tokens
 * are secrets: a replaced slot is wiped.
 */
typedef struct vslot {
  uint64_t key_id; /* 0 = empty */
  char *token;
  size_t len;
  uint8_t *payload;
  size_t plen;
} vslot;

static vslot vcache[VCACHE_SLOTS];
static pthread_mutex_t vcache_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t vcache_index(const char *tok, size_t len) {
  uint64_t h = 1469598103934665603ULL; /* FNV-1a */
  for (size_t i = 0; i < len; i++) {
    h = (h ^ (uint8_t)tok[i]) * 1099511628211ULL;
  }
  return (size_t)(h % VCACHE_SLOTS);
}

static void vslot_wipe(vslot *v) {
  if (v->token) {
    explicit_bzero(v->token, v->len);
    free(v->token);
  }
  free(v->payload);
  memset(v, 0, sizeof *v);
}

/* A copy of the payload of a cached token equal to tok, or NULL. */
static uint8_t *vcache_get(const auth_key *key, const char *tok, size_t len, size_t *plen) {
  vslot *v = &vcache[vcache_index(tok, len)];
  uint8_t *copy = NULL;
  pthread_mutex_lock(&vcache_mu);
  if (v->key_id == key->id && v->len == len && CRYPTO_memcmp(v->token, tok, len) == 0) {
    copy = malloc(v->plen ? v->plen : 1);
    if (copy) {
      memcpy(copy, v->payload, v->plen);
      *plen = v->plen;
    }
  }
  pthread_mutex_unlock(&vcache_mu);
  return copy;
}

/* Remembers a token whose MAC was just verified (best effort: skipped without memory). */
static void vcache_put(const auth_key *key, const char *tok, size_t len, const uint8_t *payload,
                       size_t plen) {
  if (len > VCACHE_MAX_TOKEN || key->id == 0) {
    return;
  }
  char *t = malloc(len);
  uint8_t *p = malloc(plen ? plen : 1);
  if (!t || !p) {
    free(t);
    free(p);
    return;
  }
  memcpy(t, tok, len);
  memcpy(p, payload, plen);
  vslot *v = &vcache[vcache_index(tok, len)];
  pthread_mutex_lock(&vcache_mu);
  vslot_wipe(v);
  *v = (vslot){key->id, t, len, p, plen};
  pthread_mutex_unlock(&vcache_mu);
}

static bool parse_payload(const uint8_t *p, size_t len, auth_claims *out) {
  if (len < 11 || p[0] != PAYLOAD_VERSION) {
    return false;
  }
  uint64_t exp = 0;
  for (int i = 0; i < 8; i++) {
    exp = (exp << 8) | p[1 + i];
  }
  size_t id_len = ((size_t)p[9] << 8) | p[10];
  if (11 + id_len > len) {
    return false;
  }
  Perms *perms = permission_messages__permissions__unpack(NULL, len - 11 - id_len, p + 11 + id_len);
  if (!perms) {
    return false;
  }
  /* The id field is not NUL-terminated (the next byte is the permissions): copy exactly
   * id_len bytes rather than let strndup look for a terminator. */
  out->token_id = malloc(id_len + 1);
  if (out->token_id) {
    memcpy(out->token_id, p + 11, id_len);
    out->token_id[id_len] = '\0';
  }
  out->expires = exp;
  out->super_user = perms->kind_case == PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
  if (out->super_user) {
    permission_messages__permissions__free_unpacked(perms, NULL);
  } else {
    out->perms = perms;
  }
  return out->token_id != NULL;
}

bool auth_verify(const auth_key *key, const char *token, size_t len, auth_claims *out,
                 const char **why) {
  memset(out, 0, sizeof *out);
  if (!token || len == 0) {
    *why = "missing auth token";
    return false;
  }
  size_t plen = 0;
  uint8_t *payload = vcache_get(key, token, len, &plen);
  if (!payload) {
    payload = check_mac(key, token, len, &plen);
    if (payload) {
      vcache_put(key, token, len, payload, plen);
    }
  }
  if (!payload) {
    *why = "invalid auth token (malformed or bad signature)";
    return false;
  }
  bool ok = parse_payload(payload, plen, out);
  free(payload);
  if (!ok) {
    auth_claims_clear(out);
    *why = "invalid auth token (bad payload)";
    return false;
  }
  if (out->expires <= (uint64_t)time(NULL)) {
    auth_claims_clear(out);
    *why = "auth token has expired";
    return false;
  }
  return true;
}

void auth_claims_clear(auth_claims *c) {
  free(c->token_id);
  if (c->perms) {
    permission_messages__permissions__free_unpacked(c->perms, NULL);
  }
  memset(c, 0, sizeof *c);
}

/* ---- permission checks ---- */

static bool cache_sel_matches(int cache_case,
                              const PermissionMessages__PermissionsType__CacheSelector *sel,
                              const char *cache) {
  if (cache_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ALL_CACHES) {
    return true;
  }
  return cache_case ==
             PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR &&
         sel->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME &&
         strcmp(sel->cache_name, cache) == 0;
}

static bool has_prefix(const uint8_t *s, size_t n, const uint8_t *p, size_t pn) {
  return pn <= n && (pn == 0 || memcmp(s, p, pn) == 0);
}

/* A grant without an item (or topic) selector covers the whole cache, as API-key
 * grants do in Momento; the official JS SDK also drops item selectors when a scope
 * mixes cache and topic grants. */
static bool item_matches(const CacheGrant *g, const uint8_t *key, size_t klen) {
  if (g->cache_item_case !=
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ITEM_SELECTOR) {
    return true;
  }
  const PermissionMessages__PermissionsType__CacheItemSelector *s = g->item_selector;
  if (s->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY) {
    return s->key.len == klen && (klen == 0 || memcmp(s->key.data, key, klen) == 0);
  }
  if (s->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY_PREFIX) {
    return has_prefix(key, klen, s->key_prefix.data, s->key_prefix.len);
  }
  return false;
}

static bool topic_matches(const TopicGrant *g, const char *topic) {
  if (g->topic_case !=
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR) {
    return true; /* all_topics, or no selector: the whole cache */
  }
  const PermissionMessages__PermissionsType__TopicSelector *s = g->topic_selector;
  if (s->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME) {
    return strcmp(s->topic_name, topic) == 0;
  }
  if (s->kind_case ==
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME_PREFIX) {
    return has_prefix((const uint8_t *)topic, strlen(topic), (const uint8_t *)s->topic_name_prefix,
                      strlen(s->topic_name_prefix));
  }
  return false;
}

static bool cache_role_allows(PermissionMessages__CacheRole role, auth_cache_verb verb) {
  switch (role) {
  case PERMISSION_MESSAGES__CACHE_ROLE__CacheReadWrite:
    return true;
  case PERMISSION_MESSAGES__CACHE_ROLE__CacheReadOnly:
    return verb == VERB_READ;
  case PERMISSION_MESSAGES__CACHE_ROLE__CacheWriteOnly:
    return verb == VERB_WRITE;
  default:
    return false;
  }
}

static bool topic_role_allows(PermissionMessages__TopicRole role, auth_topic_verb verb) {
  switch (role) {
  case PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadWrite:
    return true;
  case PERMISSION_MESSAGES__TOPIC_ROLE__TopicReadOnly:
    return verb == VERB_SUBSCRIBE;
  case PERMISSION_MESSAGES__TOPIC_ROLE__TopicWriteOnly:
    return verb == VERB_PUBLISH;
  default:
    return false;
  }
}

static size_t grant_count(const auth_claims *c) {
  if (!c->perms || c->perms->kind_case != PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT ||
      !c->perms->explicit_) {
    return 0;
  }
  return c->perms->explicit_->n_permissions;
}

bool auth_allows_cache(const auth_claims *c, const char *cache, const uint8_t *key, size_t key_len,
                       auth_cache_verb verb) {
  if (c->super_user) {
    return true;
  }
  for (size_t i = 0; i < grant_count(c); i++) {
    const Grant *g = c->perms->explicit_->permissions[i];
    if (g->kind_case != PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS) {
      continue;
    }
    const CacheGrant *cg = g->cache_permissions;
    if (cache_role_allows(cg->role, verb) &&
        cache_sel_matches((int)cg->cache_case, cg->cache_selector, cache) &&
        item_matches(cg, key, key_len)) {
      return true;
    }
  }
  return false;
}

bool auth_allows_topic(const auth_claims *c, const char *cache, const char *topic,
                       auth_topic_verb verb) {
  if (c->super_user) {
    return true;
  }
  for (size_t i = 0; i < grant_count(c); i++) {
    const Grant *g = c->perms->explicit_->permissions[i];
    if (g->kind_case != PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS) {
      continue;
    }
    const TopicGrant *tg = g->topic_permissions;
    /* The two cache oneofs share numbering, so the cache-case constants apply. */
    if (topic_role_allows(tg->role, verb) &&
        cache_sel_matches((int)tg->cache_case, tg->cache_selector, cache) &&
        topic_matches(tg, topic)) {
      return true;
    }
  }
  return false;
}

/* ---- minting coverage: is requested grant r within caller grant g? ---- */

static bool role_covers(int g, int r) {
  /* ReadWrite (1) covers everything; otherwise only the same role. PermitNone grants
   * nothing, so any grant covers it. */
  return g == 1 || g == r || r == 0;
}

static bool cache_sel_covers(int gcase,
                             const PermissionMessages__PermissionsType__CacheSelector *gs,
                             int rcase,
                             const PermissionMessages__PermissionsType__CacheSelector *rs) {
  if (gcase == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ALL_CACHES) {
    return true;
  }
  return rcase == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_CACHE_SELECTOR &&
         rs->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_SELECTOR__KIND_CACHE_NAME &&
         cache_sel_matches(gcase, gs, rs->cache_name);
}

/* Generic selector coverage: g_all / r_all flags, exact names and prefixes. */
typedef struct sel {
  bool all, valid;
  bool is_prefix;
  const uint8_t *s;
  size_t n;
} sel;

static bool sel_covers(sel g, sel r) {
  if (!g.valid || !r.valid) {
    return false;
  }
  if (g.all) {
    return true;
  }
  if (r.all) {
    return false;
  }
  if (!g.is_prefix) {
    return !r.is_prefix && r.n == g.n && (g.n == 0 || memcmp(r.s, g.s, g.n) == 0);
  }
  return has_prefix(r.s, r.n, g.s, g.n);
}

static sel item_sel(const CacheGrant *g) {
  sel s = {.all = true, .valid = true}; /* no selector = the whole cache */
  if (g->cache_item_case ==
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_PERMISSIONS__CACHE_ITEM_ITEM_SELECTOR) {
    const PermissionMessages__PermissionsType__CacheItemSelector *is = g->item_selector;
    s.all = false;
    s.valid =
        is->kind_case != PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND__NOT_SET;
    s.is_prefix = is->kind_case ==
                  PERMISSION_MESSAGES__PERMISSIONS_TYPE__CACHE_ITEM_SELECTOR__KIND_KEY_PREFIX;
    s.s = s.is_prefix ? is->key_prefix.data : is->key.data;
    s.n = s.is_prefix ? is->key_prefix.len : is->key.len;
  }
  return s;
}

static sel topic_sel(const TopicGrant *g) {
  sel s = {.all = true, .valid = true}; /* no selector = every topic of the cache */
  if (g->topic_case ==
      PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_PERMISSIONS__TOPIC_TOPIC_SELECTOR) {
    const PermissionMessages__PermissionsType__TopicSelector *ts = g->topic_selector;
    s.all = false;
    s.valid = ts->kind_case != PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND__NOT_SET;
    s.is_prefix = ts->kind_case ==
                  PERMISSION_MESSAGES__PERMISSIONS_TYPE__TOPIC_SELECTOR__KIND_TOPIC_NAME_PREFIX;
    s.s = (const uint8_t *)(s.is_prefix ? ts->topic_name_prefix : ts->topic_name);
    s.n = s.valid ? strlen((const char *)s.s) : 0;
  }
  return s;
}

static bool grant_covers(const Grant *g, const Grant *r) {
  if (g->kind_case != r->kind_case) {
    return false;
  }
  if (r->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_CACHE_PERMISSIONS) {
    const CacheGrant *gc = g->cache_permissions, *rc = r->cache_permissions;
    return role_covers((int)gc->role, (int)rc->role) &&
           cache_sel_covers((int)gc->cache_case, gc->cache_selector, (int)rc->cache_case,
                            rc->cache_selector) &&
           sel_covers(item_sel(gc), item_sel(rc));
  }
  if (r->kind_case == PERMISSION_MESSAGES__PERMISSIONS_TYPE__KIND_TOPIC_PERMISSIONS) {
    const TopicGrant *gt = g->topic_permissions, *rt = r->topic_permissions;
    return role_covers((int)gt->role, (int)rt->role) &&
           cache_sel_covers((int)gt->cache_case, gt->cache_selector, (int)rt->cache_case,
                            rt->cache_selector) &&
           sel_covers(topic_sel(gt), topic_sel(rt));
  }
  return false; /* function permissions are not supported for explicit callers */
}

bool auth_covers(const auth_claims *caller, const Perms *req) {
  if (caller->super_user) {
    return true;
  }
  if (req->kind_case != PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT || !req->explicit_) {
    return false; /* an explicit caller cannot mint super-user */
  }
  for (size_t i = 0; i < req->explicit_->n_permissions; i++) {
    bool covered = false;
    for (size_t k = 0; k < grant_count(caller) && !covered; k++) {
      covered =
          grant_covers(caller->perms->explicit_->permissions[k], req->explicit_->permissions[i]);
    }
    if (!covered) {
      return false;
    }
  }
  return true;
}
