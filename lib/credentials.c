/*
 * Momento credentials: parsing v1 keys / disposable tokens (base64 JSON), legacy JWT
 * keys and v2 key + endpoint pairs, deriving the per-plane hosts, and encoding v1.
 *
 * Secrets: the auth token lives in one malloc'd buffer that is zeroed on free. Every
 * temporary buffer that held (part of) a secret is zeroed as well, including the
 * decoded JSON and jansson's copy of the "api_key" string. jansson's private parser
 * buffers cannot be reached, so that part is best effort. No detail or log line ever
 * contains input bytes: details name the problem and, at most, a byte offset.
 */
#include "base64.h"
#include "error.h"

#include <momento/credentials.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest key accepted; real keys are well under 2 KiB. Bounds work on hostile input. */
#define MIM_CRED_MAX_INPUT ((size_t)64 * 1024)
#define MIM_CRED_DEFAULT_ENV "MOMENTO_API_KEY"
#define MIM_CRED_DEFAULT_PORT "443"
#define MIM_HOST_KINDS 3

struct mim_credentials {
  char *endpoint;   /* base endpoint; "" for a legacy JWT */
  char *auth_token; /* secret: zeroed on free */
  char *hosts[MIM_HOST_KINDS];
};

static const char *const plane_prefix[MIM_HOST_KINDS] = {"cache.", "control.", "token."};

/* ---- small string helpers ---- */

static char *dup_n(const char *s, size_t n) {
  char *p = malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static char *dup_s(const char *s) {
  return dup_n(s, strlen(s));
}

/* Frees a buffer that held secret bytes. */
static void free_secret(void *p, size_t n) {
  if (p) {
    OPENSSL_cleanse(p, n);
    free(p);
  }
}

static bool is_ctl_or_space(unsigned char c) {
  return c <= 0x20 || c == 0x7f;
}

/* Offset of the first control character, space, DEL or NUL in s[0..n), or n. */
static size_t first_unclean(const char *s, size_t n) {
  size_t i = 0;
  while (i < n && !is_ctl_or_space((unsigned char)s[i]))
    i++;
  return i;
}

/* Length of s, or MIM_CRED_MAX_INPUT + 1 when it is longer (without reading past it). */
static size_t bounded_len(const char *s) {
  size_t n = 0;
  while (n <= MIM_CRED_MAX_INPUT && s[n] != '\0')
    n++;
  return n;
}

/* Trims ASCII whitespace at both ends (keys pasted from files often end in '\n'). */
static void trim(const char **s, size_t *n) {
  while (*n > 0 && (**s == ' ' || **s == '\t' || **s == '\r' || **s == '\n')) {
    (*s)++;
    (*n)--;
  }
  while (*n > 0) {
    char c = (*s)[*n - 1];
    if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
      break;
    (*n)--;
  }
}

/* ---- base64 ---- */

/* True when in[0..len) is base64 in the named alphabet; padding is optional but, when
 * present, must complete the last quantum. Else records the detail (the status is
 * MIM_ERR_INVALID_ARGUMENT) naming what was bad. */
static bool b64_ok(const char *in, size_t len, cmn_b64_alphabet alpha, const char *what) {
  size_t n = 0, bad = 0;
  cmn_b64_result r = cmn_b64_check(in, len, alpha, CMN_B64_PAD_OPTIONAL, &n, &bad);
  if (r == CMN_B64_BAD_CHAR)
    mim_fail(MIM_ERR_INVALID_ARGUMENT,
             "%s is not valid base64%s (unexpected character at offset %zu)", what,
             alpha == CMN_B64_URL ? "url" : "", bad);
  else if (n == 0)
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is not valid base64: no data", what);
  else if (r == CMN_B64_BAD_LENGTH)
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is not valid base64: length does not fit (truncated?)",
             what);
  return r == CMN_B64_OK && n > 0;
}

/* Decodes base64 (as b64_ok accepts it) into a NUL-terminated malloc'd buffer. The
 * caller zeroes and frees *out (free_secret with *out_len + 1). */
static mim_status b64_decode(const char *in, size_t len, cmn_b64_alphabet alpha, const char *what,
                             unsigned char **out, size_t *out_len) {
  if (!b64_ok(in, len, alpha, what))
    return MIM_ERR_INVALID_ARGUMENT;
  if (cmn_b64_decode(in, len, alpha, CMN_B64_PAD_OPTIONAL, out, out_len, NULL) != CMN_B64_OK)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory decoding %s", what);
  return MIM_OK;
}

/* ---- hosts ---- */

/* True when the endpoint already names a port: "host:port" or "[v6]:port". A bare
 * IPv6 literal ("::1") has several colons and no brackets, so it has no port. */
static bool has_port(const char *ep) {
  const char *colon = strrchr(ep, ':');
  if (!colon || colon[1] == '\0')
    return false;
  for (const char *p = colon + 1; *p; p++) {
    if (*p < '0' || *p > '9')
      return false;
  }
  if (ep[0] == '[')
    return colon > ep && colon[-1] == ']';
  return strchr(ep, ':') == colon;
}

/* "host" -> "host:443" (bracketing a bare IPv6 literal); "host:port" unchanged. */
static char *with_port(const char *prefix, const char *host) {
  if (has_port(host))
    return dup_s(host);
  bool v6 = host[0] != '[' && strchr(host, ':') != strrchr(host, ':');
  size_t n = strlen(prefix) + strlen(host) + sizeof(MIM_CRED_DEFAULT_PORT) + 4;
  char *p = malloc(n);
  if (p) {
    snprintf(p, n, "%s%s%s%s:%s", prefix, v6 ? "[" : "", host, v6 ? "]" : "",
             MIM_CRED_DEFAULT_PORT);
  }
  return p;
}

/* 1 to 5 digits, 1..65535. */
static bool port_ok(const char *p, size_t n) {
  if (n == 0 || n > 5)
    return false;
  unsigned v = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9')
      return false;
    v = v * 10 + (unsigned)(p[i] - '0');
  }
  return v >= 1 && v <= 65535;
}

static bool all_of(const char *s, size_t n, const char *extra, bool hex_only) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
              (!hex_only && ((c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z'))) ||
              strchr(extra, c) != NULL;
    if (!ok || c == '\0')
      return false;
  }
  return true;
}

/* Accepts "name", "name:port", "[v6]", "[v6]:port" and a bare IPv6 literal ("::1");
 * names are letters, digits, '-', '.' and '_'. */
static bool host_syntax_ok(const char *h, size_t n) {
  const char *end = h + n;
  if (h[0] == '[') {
    const char *close = memchr(h, ']', n);
    if (!close || close == h + 1 || !all_of(h + 1, (size_t)(close - h - 1), ":.", true))
      return false;
    if (close + 1 == end)
      return true;
    return close[1] == ':' && port_ok(close + 2, (size_t)(end - close - 2));
  }
  size_t colons = 0;
  const char *last = NULL;
  for (const char *p = h; p < end; p++) {
    if (*p == ':') {
      colons++;
      last = p;
    }
  }
  if (colons >= 2)
    return all_of(h, n, ":.", true);
  size_t name_len = colons ? (size_t)(last - h) : n;
  if (name_len == 0 || !all_of(h, name_len, "-._", false))
    return false;
  return colons == 0 || port_ok(last + 1, (size_t)(end - last - 1));
}

static mim_status check_host(const char *host, size_t n, const char *what) {
  if (n == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is empty", what);
  if (n > 1024)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is too long", what);
  for (size_t i = 0; i < n; i++) {
    /* Host names are ASCII (IDNs travel as punycode). */
    unsigned char c = (unsigned char)host[i];
    if (is_ctl_or_space(c) || c >= 0x7f)
      return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                      "%s contains a space, control, NUL or non-ASCII byte at offset %zu", what, i);
  }
  if (!host_syntax_ok(host, n))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "%s is not a host, host:port, [IPv6] or [IPv6]:port (port 1-65535)", what);
  return MIM_OK;
}

/* ---- construction ---- */

MIM_API void mim_credentials_free(mim_credentials *creds) {
  if (!creds)
    return;
  if (creds->auth_token)
    free_secret(creds->auth_token, strlen(creds->auth_token));
  free(creds->endpoint);
  for (int i = 0; i < MIM_HOST_KINDS; i++)
    free(creds->hosts[i]);
  free(creds);
}

/* Takes copies of endpoint and token; hosts are filled by the caller. NULL means out
 * of memory (the detail is recorded). */
static mim_credentials *creds_new(const char *endpoint, const char *token, size_t token_len) {
  mim_credentials *c = calloc(1, sizeof *c);
  if (c) {
    c->endpoint = dup_s(endpoint);
    c->auth_token = dup_n(token, token_len);
  }
  if (!c || !c->endpoint || !c->auth_token) {
    mim_credentials_free(c);
    mim_fail(MIM_ERR_NO_MEMORY, "out of memory allocating credentials");
    return NULL;
  }
  return c;
}

/* An IP address cannot take a "cache." prefix: "127.0.0.1", "[::1]", "::1". */
static bool is_ip_literal(const char *ep) {
  if (ep[0] == '[' || strchr(ep, ':') != strrchr(ep, ':'))
    return true;
  return strspn(ep, "0123456789.") == strlen(ep);
}

/* Fills the three hosts from a base endpoint: plane prefixes and :443, or the
 * endpoint itself for all three when it names a port or is an IP address. */
static mim_status derive_hosts(mim_credentials *c, const char *endpoint) {
  bool port = has_port(endpoint);
  bool ip = is_ip_literal(endpoint);
  for (int i = 0; i < MIM_HOST_KINDS; i++) {
    c->hosts[i] = port ? dup_s(endpoint) : with_port(ip ? "" : plane_prefix[i], endpoint);
    if (!c->hosts[i])
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory deriving hosts");
  }
  return MIM_OK;
}

static mim_status check_token(const char *token, size_t n, const char *what) {
  if (n == 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is empty", what);
  /* It travels as gRPC metadata, which must be printable ASCII. */
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)token[i];
    if (ch <= 0x20 || ch >= 0x7f)
      return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                      "%s contains a non-printable character at offset %zu", what, i);
  }
  return MIM_OK;
}

/* Builds a credential from a base endpoint and token after validating both. */
static mim_status creds_from_endpoint(const char *endpoint, size_t ep_len, const char *token,
                                      size_t token_len, const char *what_ep, const char *what_token,
                                      mim_credentials **out) {
  mim_status st = check_host(endpoint, ep_len, what_ep);
  if (st == MIM_OK)
    st = check_token(token, token_len, what_token);
  if (st != MIM_OK)
    return st;
  mim_credentials *c = creds_new(endpoint, token, token_len);
  if (!c)
    return MIM_ERR_NO_MEMORY;
  st = derive_hosts(c, endpoint);
  if (st != MIM_OK) {
    mim_credentials_free(c);
    return st;
  }
  *out = c;
  return MIM_OK;
}

/* ---- JSON ---- */

/* Parses decoded bytes as a JSON object. Details carry only the error position:
 * jansson's own message may quote the input. */
static mim_status parse_object(const unsigned char *buf, size_t len, const char *what,
                               json_t **out) {
  json_error_t err;
  json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &err);
  if (!root)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is not valid JSON (error at byte %d)", what,
                    err.position);
  if (!json_is_object(root)) {
    json_decref(root);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is JSON but not an object", what);
  }
  *out = root;
  return MIM_OK;
}

/* Looks up a non-empty string member without NUL bytes; false (the detail is recorded,
 * the status is MIM_ERR_INVALID_ARGUMENT) when there is none. */
static bool get_string(json_t *obj, const char *name, const char *what, const char **val,
                       size_t *len) {
  json_t *v = json_object_get(obj, name);
  if (!v)
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s has no \"%s\" field", what, name);
  else if (!json_is_string(v))
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s field \"%s\" is not a string", what, name);
  else if (json_string_length(v) == 0)
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s field \"%s\" is empty", what, name);
  else if (strlen(json_string_value(v)) != json_string_length(v))
    mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s field \"%s\" contains a NUL byte", what, name);
  else {
    *val = json_string_value(v);
    *len = json_string_length(v);
    return true;
  }
  return false;
}

/* Zeroes jansson's copy of a secret string member before the tree is freed. */
static void scrub_member(json_t *obj, const char *name) {
  json_t *v = json_object_get(obj, name);
  if (json_is_string(v))
    OPENSSL_cleanse((char *)json_string_value(v), json_string_length(v));
}

/* ---- the accepted forms ---- */

static mim_status parse_v1(const char *key, size_t len, mim_credentials **out) {
  unsigned char *dec = NULL;
  size_t dec_len = 0;
  mim_status st = b64_decode(key, len, CMN_B64_STD, "key", &dec, &dec_len);
  if (st != MIM_OK)
    return st;
  json_t *root = NULL;
  st = parse_object(dec, dec_len, "decoded key", &root);
  free_secret(dec, dec_len + 1);
  if (st != MIM_OK)
    return st;
  const char *ep = NULL, *tok = NULL;
  size_t ep_len = 0, tok_len = 0;
  if (get_string(root, "endpoint", "key JSON", &ep, &ep_len) &&
      get_string(root, "api_key", "key JSON", &tok, &tok_len))
    st = creds_from_endpoint(ep, ep_len, tok, tok_len, "key endpoint", "key api_key", out);
  else
    st = MIM_ERR_INVALID_ARGUMENT;
  scrub_member(root, "api_key");
  json_decref(root);
  return st;
}

/* Decodes one base64url JWT segment as a JSON object. */
static mim_status jwt_segment(const char *seg, size_t len, const char *what, json_t **out) {
  unsigned char *dec = NULL;
  size_t dec_len = 0;
  mim_status st = b64_decode(seg, len, CMN_B64_URL, what, &dec, &dec_len);
  if (st != MIM_OK)
    return st;
  st = parse_object(dec, dec_len, what, out);
  free_secret(dec, dec_len + 1);
  return st;
}

/* Fills the hosts of a JWT credential from its cache and control host claims. */
static mim_status jwt_hosts(mim_credentials *cr, const char *c, const char *cp) {
  cr->hosts[MIM_HOST_CACHE] = with_port("", c);
  cr->hosts[MIM_HOST_CONTROL] = with_port("", cp);
  cr->hosts[MIM_HOST_TOKEN] = with_port("", c);
  for (int i = 0; i < MIM_HOST_KINDS; i++) {
    if (!cr->hosts[i])
      return mim_fail(MIM_ERR_NO_MEMORY, "out of memory deriving hosts");
  }
  return MIM_OK;
}

/* Legacy JWT: header.claims.signature. The claims are read without verification (only
 * the server can verify). Hosts: cache = "c", control = "cp", token = "c" (the claims
 * name no token host; the cache host serves it, as the official SDKs assume); each
 * gets :443 unless it names a port. */
static mim_status parse_jwt(const char *key, size_t len, mim_credentials **out) {
  const char *d1 = memchr(key, '.', len);
  const char *d2 = d1 ? memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - key)) : NULL;
  if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - key)))
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "key looks like a JWT but does not have exactly three '.'-separated parts");
  size_t sig_len = len - (size_t)(d2 + 1 - key);
  json_t *header = NULL, *claims = NULL;
  mim_status st = jwt_segment(key, (size_t)(d1 - key), "JWT header", &header);
  json_decref(header);
  if (st == MIM_OK && !b64_ok(d2 + 1, sig_len, CMN_B64_URL, "JWT signature"))
    st = MIM_ERR_INVALID_ARGUMENT;
  if (st == MIM_OK)
    st = jwt_segment(d1 + 1, (size_t)(d2 - d1 - 1), "JWT claims", &claims);
  if (st != MIM_OK)
    return st;
  const char *c = NULL, *cp = NULL;
  size_t c_len = 0, cp_len = 0;
  /* Momento's global (v2) API keys are JWTs too, marked "t": "g", without hosts. */
  if (json_is_string(json_object_get(claims, "t")) &&
      strcmp(json_string_value(json_object_get(claims, "t")), "g") == 0 &&
      !json_object_get(claims, "c")) {
    json_decref(claims);
    return mim_fail(MIM_ERR_INVALID_ARGUMENT,
                    "key is a global (v2) API key, which names no endpoint: use "
                    "mim_credentials_from_key_and_endpoint()");
  }
  st = get_string(claims, "c", "JWT claims", &c, &c_len) &&
               get_string(claims, "cp", "JWT claims", &cp, &cp_len)
           ? MIM_OK
           : MIM_ERR_INVALID_ARGUMENT;
  if (st == MIM_OK)
    st = check_host(c, c_len, "JWT claim \"c\" (cache host)");
  if (st == MIM_OK)
    st = check_host(cp, cp_len, "JWT claim \"cp\" (control host)");
  mim_credentials *cr = NULL;
  if (st == MIM_OK) {
    cr = creds_new("", key, len);
    st = cr ? jwt_hosts(cr, c, cp) : MIM_ERR_NO_MEMORY;
  }
  json_decref(claims);
  if (st != MIM_OK) {
    mim_credentials_free(cr);
    return st;
  }
  *out = cr;
  return MIM_OK;
}

MIM_API mim_status mim_credentials_from_string(const char *key, mim_credentials **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  if (!key)
    return mim_arg_fail(__func__, "key is NULL");
  size_t len = bounded_len(key);
  if (len > MIM_CRED_MAX_INPUT)
    return mim_arg_fail(__func__, "key is longer than %zu bytes", MIM_CRED_MAX_INPUT);
  trim(&key, &len);
  if (len == 0)
    return mim_arg_fail(__func__, "key is empty");
  size_t bad = first_unclean(key, len);
  if (bad < len)
    return mim_arg_fail(__func__, "key contains a space or control character at offset %zu", bad);
  /* '.' never occurs in base64, so a dot means JWT. */
  if (memchr(key, '.', len))
    return mim_arg_in(__func__, parse_jwt(key, len, out));
  return mim_arg_in(__func__, parse_v1(key, len, out));
}

MIM_API mim_status mim_credentials_from_key_and_endpoint(const char *key, const char *endpoint,
                                                         mim_credentials **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  if (!key)
    return mim_arg_fail(__func__, "key is NULL");
  if (!endpoint)
    return mim_arg_fail(__func__, "endpoint is NULL");
  size_t klen = bounded_len(key), elen = bounded_len(endpoint);
  if (klen > MIM_CRED_MAX_INPUT)
    return mim_arg_fail(__func__, "key is longer than %zu bytes", MIM_CRED_MAX_INPUT);
  return mim_arg_in(__func__,
                    creds_from_endpoint(endpoint, elen, key, klen, "endpoint", "key", out));
}

MIM_API mim_status mim_credentials_from_env(const char *var_name, mim_credentials **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  const char *name = var_name ? var_name : MIM_CRED_DEFAULT_ENV;
  if (!*name)
    return mim_arg_fail(__func__, "var_name is empty");
  const char *val = getenv(name);
  if (!val)
    return mim_arg_fail(__func__, "environment variable %.64s is not set", name);
  if (!*val)
    return mim_arg_fail(__func__, "environment variable %.64s is empty", name);
  return mim_arg_in(__func__, mim_credentials_from_string(val, out));
}

MIM_API mim_status mim_credentials_copy(const mim_credentials *creds, mim_credentials **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  if (!creds)
    return mim_arg_fail(__func__, "creds is NULL");
  mim_credentials *c = creds_new(creds->endpoint, creds->auth_token, strlen(creds->auth_token));
  if (!c)
    return mim_arg_in(__func__, MIM_ERR_NO_MEMORY);
  mim_status st = MIM_OK;
  for (int i = 0; st == MIM_OK && i < MIM_HOST_KINDS; i++) {
    c->hosts[i] = dup_s(creds->hosts[i]);
    if (!c->hosts[i])
      st = mim_fail(MIM_ERR_NO_MEMORY, "out of memory copying credentials");
  }
  if (st != MIM_OK) {
    mim_credentials_free(c);
    return mim_arg_in(__func__, st);
  }
  *out = c;
  return MIM_OK;
}

static bool kind_ok(mim_host_kind kind) {
  return (unsigned)kind < MIM_HOST_KINDS;
}

MIM_API const char *mim_credentials_host(const mim_credentials *creds, mim_host_kind kind) {
  if (!creds || !kind_ok(kind))
    return NULL;
  return creds->hosts[kind];
}

MIM_API mim_status mim_credentials_set_host(mim_credentials *creds, mim_host_kind kind,
                                            const char *host_port) {
  mim_clear_error();
  if (!creds)
    return mim_arg_fail(__func__, "creds is NULL");
  if (!kind_ok(kind))
    return mim_arg_fail(__func__, "unknown host kind %d", (int)kind);
  if (!host_port)
    return mim_arg_fail(__func__, "host_port is NULL");
  mim_status st = check_host(host_port, bounded_len(host_port), "host");
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  char *h = with_port("", host_port);
  if (!h)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory setting host");
  free(creds->hosts[kind]);
  creds->hosts[kind] = h;
  return MIM_OK;
}

MIM_API const char *mim_credentials_endpoint(const mim_credentials *creds) {
  return creds ? creds->endpoint : NULL;
}

MIM_API const char *mim_credentials_auth_token(const mim_credentials *creds) {
  return creds ? creds->auth_token : NULL;
}

/* Base64 (standard alphabet, padded) of the JSON text; json is zeroed by the caller.
 * Refuses results the parser would reject as too long, so encoding round-trips. */
static mim_status b64_encode(const char *json, size_t len, char **out) {
  if (cmn_b64_encoded_len(len, CMN_B64_STD) > MIM_CRED_MAX_INPUT)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "credential would be longer than %zu bytes",
                    MIM_CRED_MAX_INPUT);
  *out = cmn_b64_encode(json, len, CMN_B64_STD);
  return *out ? MIM_OK : mim_fail(MIM_ERR_NO_MEMORY, "out of memory encoding credential");
}

MIM_API mim_status mim_credentials_encode_v1(const char *endpoint, const char *auth_token,
                                             char **out) {
  mim_clear_error();
  if (!out)
    return mim_arg_fail(__func__, "out is NULL");
  *out = NULL;
  if (!endpoint || !auth_token)
    return mim_arg_fail(__func__, "%s is NULL", endpoint ? "auth_token" : "endpoint");
  size_t tlen = bounded_len(auth_token);
  if (tlen > MIM_CRED_MAX_INPUT)
    return mim_arg_fail(__func__, "auth_token is too long");
  /* Validate as the parser will, so whatever we encode parses back. */
  mim_status st = check_host(endpoint, bounded_len(endpoint), "endpoint");
  if (st == MIM_OK)
    st = check_token(auth_token, tlen, "auth_token");
  if (st != MIM_OK)
    return mim_arg_in(__func__, st);
  /* json_object_set_new takes ownership of the value even when it fails. */
  json_t *obj = json_object();
  int set = obj ? json_object_set_new(obj, "endpoint", json_string(endpoint)) : -1;
  if (set == 0)
    set = json_object_set_new(obj, "api_key", json_string(auth_token));
  char *text = set == 0 ? json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
  scrub_member(obj, "api_key");
  json_decref(obj);
  if (!text)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory encoding credential");
  size_t tl = strlen(text);
  st = b64_encode(text, tl, out);
  OPENSSL_cleanse(text, tl);
  free(text);
  return mim_arg_in(__func__, st);
}
