/*
 * Tokens from a token vendor over HTTP(S), refreshed before they expire.
 *
 * libcurl's easy API blocks, so fetches run on one worker thread per provider; the event
 * thread only ever flips a flag (mim_token_provider_refresh). The worker sleeps on a
 * monotonic condition variable until the next scheduled refresh or a request.
 */
#include "token_provider.h"

#include "backoff.h"
#include "clock.h"
#include "curl_dl.h"
#include "error.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CONNECT_TIMEOUT_MS 5000L
#define TOTAL_TIMEOUT_MS 10000L
#define MAX_BODY 65536          /* a token response is a few hundred bytes */
#define MIN_REFRESH_WAIT_MS 250 /* even a token about to expire is not fetched in a loop */
#define RECENT_MS 1000          /* a token this fresh is not replaced on a refusal */
#define RETRY_MIN_MS 1000
#define RETRY_MAX_MS 30000

struct mim_token_provider {
  char *url;
  mim_transport *t;
  int64_t margin_ms;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* monotonic clock */
  /* Guarded by mu. */
  bool stop;
  bool fetching;
  int64_t next_ms;    /* monotonic time of the next fetch; INT64_MAX = none planned */
  int64_t last_ok_ms; /* monotonic time of the last successful fetch */
  int failures;       /* consecutive failed fetches */
  /* Lock-free. */
  atomic_bool abort; /* makes a fetch in progress give up (stop) */
  atomic_uint fetches;
};

typedef struct body {
  char *data;
  size_t len;
  bool too_big;
} body;

/* The body lives in one fixed buffer so no stray copy of a token is left by realloc. */
static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user) {
  body *b = user;
  size_t n = size * nmemb;
  if (n > MAX_BODY - b->len) {
    b->too_big = true;
    return 0; /* makes curl fail with CURLE_WRITE_ERROR */
  }
  memcpy(b->data + b->len, ptr, n);
  b->len += n;
  return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
  (void)dltotal;
  (void)dlnow;
  (void)ultotal;
  (void)ulnow;
  const atomic_bool *abort_flag = user;
  return abort_flag && atomic_load(abort_flag) ? 1 : 0;
}

static void setup_handle(const mim_curl_api *curl, CURL *h, const char *url, body *b, char *errbuf,
                         const atomic_bool *abort_flag) {
  curl->easy_setopt(h, CURLOPT_URL, url);
  curl->easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl->easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* we are one thread among many */
  curl->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
  curl->easy_setopt(h, CURLOPT_TIMEOUT_MS, TOTAL_TIMEOUT_MS);
  curl->easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  /* Peer and host verification are libcurl's defaults and deliberately left on. */
#if LIBCURL_VERSION_NUM >= 0x075500
  curl->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl->easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl->easy_setopt(h, CURLOPT_USERAGENT, "libmomento-im");
  curl->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl->easy_setopt(h, CURLOPT_WRITEDATA, b);
  curl->easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl->easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl->easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl->easy_setopt(h, CURLOPT_XFERINFODATA, (void *)abort_flag);
}

/* Zeroes and frees the receive buffer (it held the vendor's answer, token included). */
static void body_free(body *b) {
  if (b->data)
    explicit_bzero(b->data, b->len);
  free(b->data);
  b->data = NULL;
  b->len = 0;
}

/* Zeroes the bytes of a JSON string value before its object is freed. A jansson string
 * keeps its value in a heap buffer of its own (copied or taken over from the parser,
 * never shared or interned), which json_decref frees without zeroing; while we hold the
 * only reference to the parsed document nothing else reads it, so writing through the
 * const pointer is safe. (The parser's own scratch buffers are jansson's business and
 * are not reachable from here.) */
static void wipe_json_string(json_t *s) {
  if (json_is_string(s))
    explicit_bzero((char *)json_string_value(s), json_string_length(s));
}

/* A refusal's "error" field, when the vendor sent one (it names what was wrong). */
static void vendor_error(const body *b, char *out, size_t cap) {
  out[0] = '\0';
  json_t *root = json_loadb(b->data, b->len, 0, NULL);
  const char *msg = json_string_value(json_object_get(root, "error"));
  if (msg)
    snprintf(out, cap, ": %.200s", msg);
  wipe_json_string(json_object_get(root, "token")); /* should a refusal carry one */
  json_decref(root);
}

mim_status mim_token_parse_answer(const char *data, size_t len, char **credential,
                                  uint64_t *expires_at) {
  json_error_t err;
  json_t *root = json_loadb(data, len, 0, &err);
  /* Not err.text: jansson quotes the text near the error, which may be the token. */
  if (!root)
    return mim_fail(MIM_ERR_PROTOCOL, "token URL answered with invalid JSON (error at byte %d)",
                    err.position);
  json_t *tok_json = json_object_get(root, "token");
  const char *tok = json_string_value(tok_json);
  json_t *exp = json_object_get(root, "expires_at");
  mim_status st = MIM_OK;
  if (!tok || !*tok)
    st = mim_fail(MIM_ERR_PROTOCOL, "token URL answer has no \"token\" string");
  else if (!json_is_integer(exp) || json_integer_value(exp) <= 0)
    st = mim_fail(MIM_ERR_PROTOCOL, "token URL answer has no positive \"expires_at\"");
  else if (!(*credential = strdup(tok)))
    st = mim_fail(MIM_ERR_NO_MEMORY, "out of memory copying the token");
  else
    *expires_at = (uint64_t)json_integer_value(exp);
  wipe_json_string(tok_json);
  json_decref(root);
  return st;
}

static mim_status check_response(const mim_curl_api *curl, CURL *h, CURLcode rc, const body *b,
                                 char *errbuf) {
  if (rc != CURLE_OK) {
    size_t n = strlen(errbuf);
    while (n > 0 && (errbuf[n - 1] == ' ' || errbuf[n - 1] == '\n'))
      errbuf[--n] = '\0';
    if (b->too_big)
      return mim_fail(MIM_ERR_PROTOCOL, "token URL answer is larger than %d bytes", MAX_BODY);
    return mim_fail(MIM_ERR_UNAVAILABLE, "token URL: %s%s%s", curl->easy_strerror(rc),
                    errbuf[0] ? ": " : "", errbuf);
  }
  long code = 0;
  curl->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
  if (code != 200) {
    char why[220];
    vendor_error(b, why, sizeof why);
    return mim_fail(MIM_ERR_UNAVAILABLE, "token URL answered HTTP %ld%s", code, why);
  }
  return MIM_OK;
}

static mim_status fetch(const char *url, const atomic_bool *abort_flag, char **credential,
                        uint64_t *expires_at) {
  if (!url || !*url)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "token URL is %s", url ? "empty" : "NULL");
  const mim_curl_api *curl = NULL;
  mim_status loaded = mim_curl_load(&curl);
  if (loaded != MIM_OK)
    return loaded;
  body b = {.data = malloc(MAX_BODY)};
  CURL *h = curl->easy_init();
  if (!b.data || !h) {
    body_free(&b);
    if (h)
      curl->easy_cleanup(h);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory fetching a token");
  }
  char errbuf[CURL_ERROR_SIZE] = "";
  setup_handle(curl, h, url, &b, errbuf, abort_flag);
  CURLcode rc = curl->easy_perform(h);
  mim_status st = check_response(curl, h, rc, &b, errbuf);
  if (st == MIM_OK)
    st = mim_token_parse_answer(b.data, b.len, credential, expires_at);
  curl->easy_cleanup(h);
  body_free(&b);
  return st;
}

mim_status mim_token_fetch(const char *url, char **credential, uint64_t *expires_at) {
  *credential = NULL;
  *expires_at = 0;
  return fetch(url, NULL, credential, expires_at);
}

/* ---- the refresher ---- */

/* When the token expiring at expires_at should be replaced (monotonic ms). */
static int64_t next_refresh(const mim_token_provider *p, uint64_t expires_at) {
  if (p->margin_ms < 0)
    return INT64_MAX;
  int64_t life = (int64_t)expires_at * 1000 - cmn_wall_ms();
  int64_t wait = p->margin_ms > 0 ? life - p->margin_ms : life / 5 * 4;
  if (wait < MIN_REFRESH_WAIT_MS)
    wait = MIN_REFRESH_WAIT_MS;
  return cmn_mono_ms() + wait;
}

/* One fetch, installed into the transport. Runs unlocked on the worker. */
static mim_status refresh_once(mim_token_provider *p, uint64_t *expires_at) {
  char *cred = NULL;
  mim_status st = fetch(p->url, &p->abort, &cred, expires_at);
  mim_credentials *c = NULL;
  if (st == MIM_OK)
    st = mim_credentials_from_string(cred, &c);
  if (st == MIM_OK)
    st = mim_transport_set_auth_token(p->t, mim_credentials_auth_token(c));
  mim_credentials_free(c);
  if (cred) {
    explicit_bzero(cred, strlen(cred));
    free(cred);
  }
  return st;
}

static void wait_until(mim_token_provider *p, int64_t when_ms) {
  if (when_ms == INT64_MAX) {
    pthread_cond_wait(&p->cv, &p->mu);
    return;
  }
  struct timespec ts = cmn_deadline_after_ms(when_ms - cmn_mono_ms());
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

static void after_fetch(mim_token_provider *p, mim_status st, uint64_t expires_at) {
  if (st == MIM_OK) {
    p->failures = 0;
    p->last_ok_ms = cmn_mono_ms();
    p->next_ms = next_refresh(p, expires_at);
    atomic_fetch_add(&p->fetches, 1);
    mim_log(MIM_LOG_INFO, "token: installed a fresh token (expires in %lld s)",
            (long long)((int64_t)expires_at - cmn_wall_ms() / 1000));
    return;
  }
  /* No jitter: one provider per client retries one vendor, nothing to spread out. */
  int64_t delay = cmn_backoff_ceiling_ms(RETRY_MIN_MS, RETRY_MAX_MS, (unsigned)p->failures);
  p->failures++;
  p->next_ms = cmn_mono_ms() + delay;
  mim_log(MIM_LOG_WARN, "token: refresh failed (%s: %s); retrying in %lld ms", mim_status_name(st),
          mim_last_error_detail(), (long long)delay);
}

static void *worker_main(void *arg) {
  mim_token_provider *p = arg;
  pthread_mutex_lock(&p->mu);
  while (!p->stop) {
    if (cmn_mono_ms() < p->next_ms) {
      wait_until(p, p->next_ms);
      continue;
    }
    p->fetching = true;
    pthread_mutex_unlock(&p->mu);
    uint64_t expires_at = 0;
    mim_status st = refresh_once(p, &expires_at);
    pthread_mutex_lock(&p->mu);
    p->fetching = false;
    if (!p->stop)
      after_fetch(p, st, expires_at);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static bool init_sync(mim_token_provider *p) {
  bool ok = cmn_cond_init_monotonic(&p->cv) == 0;
  if (ok && pthread_mutex_init(&p->mu, NULL) != 0) {
    pthread_cond_destroy(&p->cv);
    ok = false;
  }
  return ok;
}

mim_status mim_token_provider_start(const char *url, int64_t margin_ms, uint64_t expires_at,
                                    mim_transport *t, mim_token_provider **out) {
  *out = NULL;
  mim_token_provider *p = calloc(1, sizeof *p);
  if (!p || !(p->url = strdup(url))) {
    free(p);
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory starting the token provider");
  }
  p->t = t;
  p->margin_ms = margin_ms;
  p->last_ok_ms = cmn_mono_ms();
  p->next_ms = next_refresh(p, expires_at);
  atomic_init(&p->abort, false);
  atomic_init(&p->fetches, 1); /* the caller's initial fetch */
  if (!init_sync(p)) {
    free(p->url);
    free(p);
    return mim_fail(MIM_ERR_INTERNAL, "token provider: cannot create its lock");
  }
  if (pthread_create(&p->thread, NULL, worker_main, p) != 0) {
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->url);
    free(p);
    return mim_fail(MIM_ERR_INTERNAL, "token provider: cannot start its thread");
  }
  *out = p;
  return MIM_OK;
}

void mim_token_provider_refresh(mim_token_provider *p) {
  pthread_mutex_lock(&p->mu);
  int64_t now = cmn_mono_ms();
  /* After failures the retry backoff stands: refusals must not hammer a broken vendor. */
  if (!p->stop && !p->fetching && p->failures == 0 && now - p->last_ok_ms >= RECENT_MS &&
      p->next_ms > now) {
    p->next_ms = now;
    pthread_cond_signal(&p->cv);
  }
  pthread_mutex_unlock(&p->mu);
}

unsigned mim_token_provider_fetches(mim_token_provider *p) {
  return atomic_load(&p->fetches);
}

void mim_token_provider_stop(mim_token_provider *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  bool running = !p->stop;
  p->stop = true;
  atomic_store(&p->abort, true);
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  if (running)
    pthread_join(p->thread, NULL);
}

void mim_token_provider_free(mim_token_provider *p) {
  if (!p)
    return;
  mim_token_provider_stop(p);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  explicit_bzero(p->url, strlen(p->url)); /* a URL may carry a user's credentials */
  free(p->url);
  free(p);
}
