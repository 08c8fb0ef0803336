/* libFuzzer harness: mim-local's request handling. Each input is one decoded-message →
 * handler step through dispatch_call (the same entry the gRPC layer calls), with an
 * in-memory store and topics, a fake call (fuzz/fake_rpc.c) and a real token:
 *   byte 0: method (index into g_methods)
 *   byte 1: bits 0-1 token (0 super-user, 1 client-only for chat "c", 2 moderated for
 *           "c", 3 none); bits 2-3 "cache" metadata (0 instant-messaging, 1 other,
 *           2 a cache that does not exist, 3 the next byte N then N raw bytes)
 *   rest:   the serialized request message.
 * The state (caches, lists, topics) is rebuilt for every input so a crash reproduces
 * from its input alone.
 * Checked: no sanitizer finding, every unary call finished exactly once with a
 * well-formed response, a subscription stream ends when its client goes away.
 *
 * MIM_FUZZ_WRITE_SEEDS=DIR writes a seed corpus (one valid request per method) into
 * DIR and exits. */
#include "auth.h"
#include "dispatch.h"
#include "fake_rpc.h"
#include "perms.h"
#include "svc.h"
#include "token.pb-c.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "instant-messaging"
#define OTHER "other"

static const char *const g_methods[] = {
    "/cache_client.Scs/ListPushBack",
    "/cache_client.Scs/ListPushFront",
    "/cache_client.Scs/ListConcatenateBack",
    "/cache_client.Scs/ListConcatenateFront",
    "/cache_client.Scs/ListFetch",
    "/cache_client.Scs/ListLength",
    "/cache_client.Scs/ListRetain",
    "/cache_client.Scs/ListRemove",
    "/cache_client.Scs/ListErase",
    "/cache_client.Scs/ListPopFront",
    "/cache_client.Scs/ListPopBack",
    "/cache_client.Scs/Delete",
    "/cache_client.Scs/ItemGetTtl",
    "/cache_client.pubsub.Pubsub/Publish",
    "/cache_client.pubsub.Pubsub/Subscribe",
    "/token.Token/GenerateDisposableToken",
    "/control_client.ScsControl/CreateCache",
    "/control_client.ScsControl/DeleteCache",
    "/control_client.ScsControl/ListCaches",
    "/cache_client.Ping/Ping",
    "/cache_client.Scs/NoSuchMethod",
    "/no.Such/Method",
};
#define N_METHODS (sizeof g_methods / sizeof g_methods[0])
#define PUBLISH_METHOD 13
#define SUBSCRIBE_METHOD 14

static auth_key g_key;
static char *g_tokens[3]; /* super-user, client-only, moderated */

static char *mint_policy(const char *id, int policy) {
  fuzz_perms p;
  uint64_t until = (uint64_t)time(NULL) + 365u * 86400u;
  return auth_mint(&g_key, policy ? fuzz_policy(&p, CACHE, "c", policy == 2) : NULL, id, until);
}

/* ---- seeds ---- */

static void write_seed(const char *dir, size_t method, uint8_t flags, const uint8_t *msg,
                       size_t len) {
  static unsigned count; /* some methods have several seeds */
  char path[512];
  snprintf(path, sizeof path, "%s/seed-%02zu-%02x-%02u", dir, method, flags, count++);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  uint8_t hdr[2] = {(uint8_t)method, flags};
  fwrite(hdr, 1, 2, f);
  fwrite(msg, 1, len, f);
  fclose(f);
}

static void write_seeds(const char *dir) {
  /* Hand-encoded requests: field 1 is the list name "c" in every Scs request. */
#define S(lit) lit, sizeof(lit) - 1
  static const struct {
    size_t method;
    const char *bytes;
    size_t len;
  } raw[] = {
      {0, S("\x0a\x01"
            "c\x12\x02hi\x18\xe8\x07\x20\x01")},
      {1, S("\x0a\x01"
            "c\x12\x02hi\x28\x03")},
      {2, S("\x0a\x01"
            "c\x12\x01x\x12\x01y\x28\x02")},
      {3, S("\x0a\x01"
            "c\x12\x01x\x12\x01y")},
      {4, S("\x0a\x01"
            "c\x18\x02\x28\x09")},
      {5, S("\x0a\x01"
            "c")},
      {6, S("\x0a\x01"
            "c\x18\x01\x22\x00")},
      {7, S("\x0a\x01"
            "c\x12\x01x")},
      {8, S("\x0a\x01"
            "c\x12\x04\x0a\x02\x08\x01")},
      {8, S("\x0a\x01"
            "c\x1a\x00")},
      {9, S("\x0a\x01"
            "c")},
      {10, S("\x0a\x01"
             "c")},
      {11, S("\x0a\x01"
             "c")},
      {12, S("\x0a\x01"
             "c")},
      {13, S("\x0a\x11" CACHE "\x12\x01"
             "c\x1a\x04\x0a\x02hi")},
      {13, S("\x0a\x11" CACHE "\x12\x07"
             "c-input\x1a\x04\x12\x02\x00\xff")},
      {14, S("\x0a\x11" CACHE "\x12\x01"
             "c\x18\x05\x20\x07")},
      {16, S("\x0a\x03new")},
      {17, "\x0a\x05" OTHER, 7},
      {18, S("")},
      {19, S("")},
  };
  for (size_t i = 0; i < sizeof raw / sizeof raw[0]; i++) {
    for (uint8_t tok = 0; tok < 3; tok += 2) { /* super-user and moderated */
      write_seed(dir, raw[i].method, tok, (const uint8_t *)raw[i].bytes, raw[i].len);
    }
  }
  /* A minting request for the moderated policy. */
  fuzz_perms p;
  Token__GenerateDisposableTokenRequest r = TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__INIT;
  Token__GenerateDisposableTokenRequest__Expires e =
      TOKEN____GENERATE_DISPOSABLE_TOKEN_REQUEST__EXPIRES__INIT;
  e.valid_for_seconds = 60;
  r.expires = &e;
  r.permissions = fuzz_policy(&p, CACHE, "c", true);
  r.token_id = "bob";
  uint8_t buf[1024];
  size_t n = token____generate_disposable_token_request__pack(&r, buf);
  for (uint8_t tok = 0; tok < 3; tok++) {
    write_seed(dir, 15, tok, buf, n);
  }
#undef S
}

/* ---- the harness ---- */

static void app_start(void);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  srv_log_set_level(LOG_ERROR);
  memset(&g_key, 0x5a, sizeof g_key.secret);
  g_key.len = 32;
  for (int i = 0; i < 3; i++) {
    g_tokens[i] = mint_policy(i ? "alice" : "root", i);
    if (!g_tokens[i]) {
      abort();
    }
  }
  const char *seeds = getenv("MIM_FUZZ_WRITE_SEEDS");
  if (seeds) {
    write_seeds(seeds);
    exit(0);
  }
  app_start();
  return 0;
}

/* One pubsub for the whole run (its heartbeat thread is costly to start per input, and
 * memory grows with every thread a sanitized process creates); a fresh store per input,
 * and every topic dropped after it, so each input starts from the same state. */
static app g_app;

static bool exists_cb(void *arg, const char *cache) {
  (void)arg;
  return store_cache_exists(g_app.store, cache);
}

static void app_start(void) {
  g_app.key = g_key;
  snprintf(g_app.endpoint, sizeof g_app.endpoint, "127.0.0.1:1");
  g_app.max_message_bytes = 4096;
  pubsub_config pc = {.replay = 8,
                      .replay_bytes = 16384,
                      .max_queue = 64,
                      .max_queue_bytes = 65536,
                      .max_subscribers = 4,
                      .heartbeat_ms = 3600000,
                      .cache_exists = exists_cb};
  g_app.ps = pubsub_new(&pc);
  if (!g_app.ps) {
    abort();
  }
}

/* Small limits so a fuzz input cannot make the state large. */
static app *app_begin(void) {
  g_app.store = store_new(60000, 64);
  if (!g_app.store || store_cache_create(g_app.store, CACHE) != ST_OK ||
      store_cache_create(g_app.store, OTHER) != ST_OK) {
    abort();
  }
  return &g_app;
}

static void app_end(void) {
  size_t n = 0;
  char **names = store_cache_names(g_app.store, &n);
  for (size_t i = 0; i < n; i++) {
    pubsub_drop_cache(g_app.ps, names[i]);
    free(names[i]);
  }
  free(names);
  store_free(g_app.store);
  g_app.store = NULL;
}

/* Runs one call on a; returns its outcome after the client went away. */
static void run_call(app *a, size_t method, const char *token, const char *cache, size_t cache_len,
                     const uint8_t *msg, size_t len) {
  srv_call *call = fake_call_new(token, cache, cache_len);
  dispatch_call(a, call, g_methods[method], msg, len);
  fake_call_info r = fake_call_result(call);
  if (!r.streaming && r.finished != 1) {
    fprintf(stderr, "%s: unary call finished %d times\n", g_methods[method], r.finished);
    abort();
  }
  if (r.streaming && method != SUBSCRIBE_METHOD) {
    fprintf(stderr, "%s: became a stream\n", g_methods[method]);
    abort();
  }
  fake_call_close(call);
  srv_call_unref(call);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) {
    return 0;
  }
  size_t method = data[0] % N_METHODS;
  int tok = data[1] & 3, cache_sel = (data[1] >> 2) & 3;
  const uint8_t *msg = data + 2;
  size_t len = size - 2;
  static const char *const caches[] = {CACHE, OTHER, "missing"};
  const char *cache = NULL;
  size_t cache_len = 0;
  if (cache_sel < 3) {
    cache = caches[cache_sel];
    cache_len = strlen(cache);
  } else if (len > 0) {
    cache_len = msg[0] < len - 1 ? msg[0] : len - 1;
    cache = (const char *)msg + 1;
    msg += 1 + cache_len;
    len -= 1 + cache_len;
  }
  app *a = app_begin();
  /* A push first, so list handlers also meet an existing list. */
  run_call(a, 0, g_tokens[0], CACHE, strlen(CACHE),
           (const uint8_t *)"\x0a\x01"
                            "c\x12\x01m",
           6);
  /* A publish meets a live subscriber on "c", so the fan-out runs too. */
  srv_call *sub = NULL;
  if (method == PUBLISH_METHOD) {
    static const uint8_t req[] = "\x0a\x11" CACHE "\x12\x01"
                                 "c";
    sub = fake_call_new(g_tokens[0], NULL, 0);
    dispatch_call(a, sub, g_methods[SUBSCRIBE_METHOD], req, sizeof req - 1);
  }
  run_call(a, method, tok < 3 ? g_tokens[tok] : NULL, cache, cache_len, msg, len);
  if (sub) {
    fake_call_close(sub);
    srv_call_unref(sub);
  }
  app_end();
  return 0;
}
