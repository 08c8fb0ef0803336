/* libFuzzer harness: mim-local's token verifier (server/auth.c auth_verify) and the
 * permission checks that read the verified claims.
 *   byte 0 bit 0 = 0: the rest is a token string as it arrives in metadata (random
 *     bytes almost never carry a valid MAC, so this covers the framing and MAC check);
 *   bit 0 = 1: the rest is a payload, signed here with the server's key, so the payload
 *     parser and the permission checks see arbitrary claims; bit 1 sets the expiry
 *     (bytes 1..8 of the payload) to the far future so most payloads verify.
 * A verified token is checked against list/topic calls, minting coverage both ways,
 * and re-minted from its claims, which must verify to the same claims; the same text
 * with a '=' appended must not verify (one spelling per token).
 *
 * MIM_FUZZ_WRITE_SEEDS=DIR writes seeds (payloads of both policies and super-user, in
 * both modes) into DIR and exits. */
#include "auth.h"
#include "base64.h"
#include "perms.h"
#include "util.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static auth_key g_key;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_token_verify: %s\n", what);
  abort();
}

static char *sign(const uint8_t *payload, size_t len);

static void write_seed(const char *dir, const char *name, uint8_t mode, const void *data,
                       size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fwrite(&mode, 1, 1, f);
  fwrite(data, 1, len, f);
  fclose(f);
}

/* Payload: version 1 | u64 expiry | u16 id length | id | Permissions. */
static void write_seeds(const char *dir) {
  static const char *const names[] = {"super-user", "client-only", "moderated"};
  for (int i = 0; i < 3; i++) {
    fuzz_perms p;
    PermissionMessages__Permissions su = PERMISSION_MESSAGES__PERMISSIONS__INIT;
    su.kind_case = PERMISSION_MESSAGES__PERMISSIONS__KIND_SUPER_USER;
    PermissionMessages__Permissions *perms =
        i ? fuzz_policy(&p, "instant-messaging", "c", i == 2) : &su;
    uint8_t buf[1024] = {1, 0, 0, 0, 0, 0x7f, 0, 0, 0, 0, 5, 'a', 'l', 'i', 'c', 'e'};
    size_t n = 16 + permission_messages__permissions__pack(perms, buf + 16);
    char name[64];
    snprintf(name, sizeof name, "payload-%s", names[i]);
    write_seed(dir, name, 3, buf, n);
    char *tok = sign(buf, n);
    snprintf(name, sizeof name, "token-%s", names[i]);
    write_seed(dir, name, 0, tok, strlen(tok));
    free(tok);
  }
  write_seed(dir, "token-garbage", 0, "mim1.AAAA.BBBB", 14);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  srv_log_set_level(LOG_ERROR);
  memset(g_key.secret, 0x33, sizeof g_key.secret);
  g_key.len = 32;
  const char *seeds = getenv("MIM_FUZZ_WRITE_SEEDS");
  if (seeds) {
    write_seeds(seeds);
    exit(0);
  }
  return 0;
}

/* "mim1." + b64url(payload) + "." + b64url(HMAC-SHA256(key, everything before)). */
static char *sign(const uint8_t *payload, size_t len) {
  char *p64 = cmn_b64_encode(payload, len, CMN_B64_URL);
  if (!p64) {
    return NULL;
  }
  size_t cap = strlen(p64) + 64;
  char *tok = malloc(cap);
  uint8_t mac[32];
  unsigned mac_len = 0;
  char *m64 = NULL;
  if (tok) {
    int n = snprintf(tok, cap, "mim1.%s", p64);
    if (HMAC(EVP_sha256(), g_key.secret, (int)g_key.len, (const uint8_t *)tok, (size_t)n, mac,
             &mac_len)) {
      m64 = cmn_b64_encode(mac, sizeof mac, CMN_B64_URL);
    }
    if (m64) {
      snprintf(tok + n, cap - (size_t)n, ".%s", m64);
    }
  }
  free(p64);
  if (!m64) {
    free(tok);
    return NULL;
  }
  free(m64);
  return tok;
}

static void check_claims(const auth_claims *c) {
  if (!c->token_id || (!c->super_user && !c->perms) || (c->super_user && c->perms)) {
    fail("verified claims are inconsistent");
  }
  static const uint8_t keys[][8] = {"c", "chat", ""};
  static const char *const names[] = {"instant-messaging", "c", "c-input", ""};
  for (size_t i = 0; i < 3; i++) {
    for (int v = VERB_READ; v <= VERB_WRITE; v++) {
      auth_allows_cache(c, names[i % 2 ? 1 : 0], keys[i], strlen((const char *)keys[i]),
                        (auth_cache_verb)v);
    }
  }
  for (size_t i = 0; i < 4; i++) {
    auth_allows_topic(c, names[0], names[i], VERB_PUBLISH);
    auth_allows_topic(c, names[i], names[1], VERB_SUBSCRIBE);
  }
  /* Minting: can the claims mint a policy; can a policy mint the claims. */
  fuzz_perms p;
  auth_covers(c, fuzz_policy(&p, "instant-messaging", "c", true));
  if (c->perms) {
    auth_claims root = {.super_user = true};
    if (!auth_covers(&root, c->perms)) {
      fail("super-user cannot cover explicit permissions");
    }
    auth_claims pol = {.perms = fuzz_policy(&p, "instant-messaging", "c", false)};
    auth_covers(&pol, c->perms);
    if (!auth_covers(c, c->perms) &&
        c->perms->kind_case == PERMISSION_MESSAGES__PERMISSIONS__KIND_EXPLICIT) {
      /* Every valid grant covers itself; only malformed grants (no role, selectors
       * without a kind, function grants) may fail. Not an invariant to abort on. */
    }
  }
}

/* Re-mints the claims; the new token must verify to the same claims. Only for claims
 * whose permissions re-serialize to exactly as many bytes as they came in (perms_len):
 * protobuf-c hands out strings cut at their first NUL, and keeps unknown fields it should
 * have refused (field number 0 written with a multi-byte tag, which it then writes back
 * as a one-byte tag that it rejects), so such payloads cannot round-trip (see
 * /tmp/mim-server-bugs.md; input fuzz/corpus/fuzz_token_verify/regress-remint-field-zero). */
static void remint(const auth_claims *c, size_t perms_len) {
  if (c->perms && permission_messages__permissions__get_packed_size(c->perms) != perms_len) {
    return;
  }
  char *tok = auth_mint(&g_key, c->super_user ? NULL : c->perms, c->token_id, c->expires);
  if (!tok) {
    return;
  }
  auth_claims back;
  const char *why = NULL;
  if (!auth_verify(&g_key, tok, strlen(tok), &back, &why)) {
    fprintf(stderr, "why: %s\n", why);
    fail("a re-minted token did not verify");
  }
  if (strcmp(back.token_id, c->token_id) != 0 || back.super_user != c->super_user ||
      back.expires != c->expires) {
    fail("re-minted claims differ");
  }
  auth_claims_clear(&back);
  free(tok);
}

/* A verified token has exactly one accepted spelling: padding makes it another. */
static void check_one_spelling(const char *tok, size_t len) {
  char *padded = malloc(len + 1);
  if (!padded) {
    return;
  }
  memcpy(padded, tok, len);
  padded[len] = '=';
  auth_claims c;
  const char *why = NULL;
  if (auth_verify(&g_key, padded, len + 1, &c, &why)) {
    fail("a verified token still verified with '=' appended");
  }
  free(padded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) {
    return 0;
  }
  uint8_t mode = data[0];
  data++;
  size--;
  char *tok = NULL;
  size_t len = size;
  if (mode & 1) {
    uint8_t *payload = malloc(size ? size : 1);
    if (!payload) {
      return 0;
    }
    memcpy(payload, data, size);
    if ((mode & 2) && size >= 9) {
      memset(payload + 1, 0, 8);
      payload[2] = 0x01; /* 2^48 s: far future */
    }
    tok = sign(payload, size);
    free(payload);
    if (!tok) {
      return 0;
    }
    len = strlen(tok);
  } else {
    /* Exactly size bytes, no NUL after them: the verifier must honour the length. */
    tok = malloc(size ? size : 1);
    if (!tok) {
      return 0;
    }
    memcpy(tok, data, size);
  }
  auth_claims c;
  const char *why = NULL;
  if (auth_verify(&g_key, tok, len, &c, &why)) {
    check_claims(&c);
    check_one_spelling(tok, len);
    /* Mode 1: the payload is known; its permissions follow the 11-byte header and id. */
    size_t id_len = size >= 11 ? ((size_t)data[9] << 8 | data[10]) : 0;
    if ((mode & 1) && c.perms && size >= 11 + id_len) {
      remint(&c, size - 11 - id_len);
    } else if (c.super_user) {
      remint(&c, 0);
    }
    auth_claims_clear(&c);
  } else if (!why || c.token_id || c.perms) {
    fail("a rejected token left claims or no reason");
  }
  free(tok);
  return 0;
}
