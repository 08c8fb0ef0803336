/*
 * The client handle: a credential, a transport (channels + event thread) and defaults.
 * Immutable after mim_client_create, so sharing it between threads needs no locking;
 * the transport and the token provider (which replaces the transport's auth token from
 * its own thread) are thread-safe on their own. The one mutable part is the count of
 * detached jobs (a leave or stop called from a callback), under its own mutex.
 */
#include "client_internal.h"
#include "error.h"
#include "pb_call.h"
#include "stats.h"
#include "struct_size.h"
#include "token_provider.h"

#include <arpa/inet.h>
#include <cacheping.pb-c.h>
#include <controlclient.pb-c.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_DEADLINE_MS 15000
#define DEFAULT_TTL_MS (24ULL * 3600 * 1000)
#define MAX_AUTH_TOKEN ((size_t)7 * 1024)

struct mim_client {
  mim_credentials *creds; /* owns the auth token; zeroed when freed */
  mim_transport *transport;
  mim_token_provider *tokens; /* refreshes the auth token; NULL without a token_url */
  uint64_t token_expires_at;  /* of the first fetched token (epoch s) */
  int64_t deadline_ms;
  uint64_t ttl_ms;
  size_t max_payload; /* largest envelope published (bytes) */
  bool tls;

  bool loop_mode; /* the application's loop drives the transport (options->loop) */

  pthread_mutex_t jobs_mu;
  pthread_cond_t jobs_cv;
  int jobs; /* detached jobs still running: mim_client_free waits for them */
  /* Loop mode: deferred jobs wait here (no thread may be started) and run on the loop
   * thread outside callbacks, where they may drive the loop (see run_loop_jobs). */
  struct loop_job *queued, *queued_tail;
  int entry_depth;   /* loop thread only: nesting of mim_loop_fd_ready/mim_loop_timeout */
  bool running_jobs; /* loop thread only: run_loop_jobs is on the stack */

  mim_stats stats; /* mim_client_stats_get; atomics, no lock */
};

typedef struct loop_job {
  struct loop_job *next;
  void (*fn)(void *);
  void *arg;
} loop_job;

/* The credential inside the first token the token URL hands out. */
static mim_status fetch_credentials(mim_client *c, const char *url, mim_credentials **out) {
  char *cred = NULL;
  mim_status st = mim_token_fetch(url, &cred, &c->token_expires_at);
  if (st == MIM_OK)
    st = mim_credentials_from_string(cred, out);
  if (cred) {
    explicit_bzero(cred, strlen(cred));
    free(cred);
  }
  return st;
}

/* The credential from token_url, else api_key, else credentials, else MOMENTO_API_KEY. */
static mim_status load_credentials(mim_client *c, const mim_client_options *o,
                                   mim_credentials **out) {
  if (o && o->token_url) {
    if (o->api_key || o->credentials)
      return mim_fail(MIM_ERR_INVALID_ARGUMENT, "give token_url or a key, not both");
    return fetch_credentials(c, o->token_url, out);
  }
  if (o && o->api_key)
    return mim_credentials_from_string(o->api_key, out);
  if (o && o->credentials)
    return mim_credentials_copy(o->credentials, out);
  return mim_credentials_from_env(NULL, out);
}

static mim_status apply_overrides(const mim_client_options *o, mim_credentials *c) {
  const char *hosts[3] = {o->cache_host, o->control_host, o->token_host};
  for (int k = 0; k < 3; k++) {
    if (!hosts[k])
      continue;
    mim_status st = mim_credentials_set_host(c, (mim_host_kind)k, hosts[k]);
    if (st != MIM_OK)
      return st;
  }
  return MIM_OK;
}

/* True for "127.x.y.z:port", "localhost:port", "[::1]:port" (what never leaves the
 * machine, so TLS adds nothing for a local server). The host must be exactly such an
 * address: a name like "127.example.com" or "localhost.example.com" is remote. */
static bool is_loopback(const char *host_port) {
  if (!host_port)
    return true; /* an unused plane does not weaken anything */
  const char *end = host_port[0] == '[' ? strchr(host_port, ']') : strchr(host_port, ':');
  size_t n = end ? (size_t)(end - host_port) + (host_port[0] == '[') : strlen(host_port);
  char host[64];
  if (n >= sizeof host)
    return false;
  memcpy(host, host_port, n);
  host[n] = '\0';
  if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
    return true;
  struct in_addr a;
  return inet_pton(AF_INET, host, &a) == 1 && (ntohl(a.s_addr) >> 24) == 127;
}

static bool wants_tls(const mim_client_options *o, const mim_credentials *creds) {
  mim_tls_mode mode = o ? o->tls : MIM_TLS_AUTO;
  if (mode != MIM_TLS_AUTO)
    return mode == MIM_TLS_ON;
  if (o && o->ca_file)
    return true; /* roots were given: the caller expects TLS */
  for (int k = 0; k < 3; k++)
    if (!is_loopback(mim_credentials_host(creds, (mim_host_kind)k)))
      return true;
  return false;
}

/* Any call refused for its token (list, topic, ping, control) asks the provider for a
 * fresh one; the provider merges bursts of such requests. */
static void token_refused(void *user) {
  mim_client_token_rejected(user);
}

static mim_status start_transport(const mim_client_options *o, mim_client *c) {
  /* The reactor copies the hooks: this copy only needs to outlive the create. */
  mim_loop_hooks hooks = {0};
  if (o && o->loop) {
    mim_status st =
        mim_struct_copy_in(&hooks, sizeof hooks, o->loop, MIM_SIZE_THROUGH(mim_loop_hooks, user),
                           "mim_client_create: options->loop", "MIM_LOOP_HOOKS_INIT");
    if (st != MIM_OK)
      return st;
  }
  mim_transport_config cfg;
  memset(&cfg, 0, sizeof cfg);
  for (int k = 0; k < 3; k++)
    cfg.hosts[k] = mim_credentials_host(c->creds, (mim_host_kind)k);
  cfg.auth_token = mim_credentials_auth_token(c->creds);
  c->tls = wants_tls(o, c->creds);
  cfg.plaintext = !c->tls;
  cfg.ca_file = o ? o->ca_file : NULL;
  cfg.on_unauthenticated = token_refused;
  cfg.hook_user = c;
  cfg.loop = o && o->loop ? &hooks : NULL;
  c->loop_mode = cfg.loop != NULL;
  return mim_transport_create(&cfg, &c->transport);
}

static void run_loop_jobs(mim_client *c);

/* Waits for the detached jobs: they use the transport. Each one is bounded (a leave or
 * stop: its flush time, a call deadline and a backoff timer). In loop mode they are
 * queued, not running: run them here, on the loop thread. */
static void wait_jobs(mim_client *c) {
  if (c->loop_mode && c->transport && mim_transport_must_drive(c->transport))
    run_loop_jobs(c);
  pthread_mutex_lock(&c->jobs_mu);
  while (c->jobs > 0)
    pthread_cond_wait(&c->jobs_cv, &c->jobs_mu);
  pthread_mutex_unlock(&c->jobs_mu);
}

static void client_destroy(mim_client *c) {
  wait_jobs(c);
  /* The provider's worker installs tokens into the transport: stop it first. */
  mim_token_provider_stop(c->tokens);
  mim_transport_free(c->transport);
  mim_token_provider_free(c->tokens);
  mim_credentials_free(c->creds);
  pthread_mutex_destroy(&c->jobs_mu);
  pthread_cond_destroy(&c->jobs_cv);
  explicit_bzero(c, sizeof *c);
  free(c);
}

/* gRPC servers refuse request metadata over 8 KiB (their default) by closing the
 * connection, and gRPC shares that connection between every client of the process to
 * the same host: a longer token could never work and would cut other clients' calls. */
static mim_status check_token_size(const mim_credentials *creds) {
  if (strlen(mim_credentials_auth_token(creds)) > MAX_AUTH_TOKEN)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "auth token is longer than %zu bytes",
                    MAX_AUTH_TOKEN);
  return MIM_OK;
}

MIM_API mim_status mim_client_create(const mim_client_options *caller_options, mim_client **out) {
  mim_clear_error();
  if (!out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "out is NULL");
  *out = NULL;
  mim_client_options copy, *options = NULL;
  if (caller_options) {
    mim_status st =
        mim_struct_copy_in(&copy, sizeof copy, caller_options,
                           MIM_SIZE_THROUGH(mim_client_options, max_topic_payload_bytes),
                           "mim_client_create: options", "MIM_CLIENT_OPTIONS_INIT");
    if (st != MIM_OK)
      return st;
    options = &copy;
  }
  if (options && options->default_deadline_ms < 0)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "default_deadline_ms is negative");
  mim_client *c = calloc(1, sizeof *c);
  if (c)
    mim_stats_init(&c->stats);
  if (!c)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory creating client");
  pthread_mutex_init(&c->jobs_mu, NULL);
  pthread_cond_init(&c->jobs_cv, NULL);
  c->deadline_ms = options && options->default_deadline_ms > 0 ? options->default_deadline_ms
                                                               : DEFAULT_DEADLINE_MS;
  c->ttl_ms = options && options->default_ttl_ms ? options->default_ttl_ms : DEFAULT_TTL_MS;
  c->max_payload = options && options->max_topic_payload_bytes ? options->max_topic_payload_bytes
                                                               : MIM_DEFAULT_TOPIC_PAYLOAD;
  mim_status st = load_credentials(c, options, &c->creds);
  if (st == MIM_OK)
    st = check_token_size(c->creds);
  if (st == MIM_OK && options)
    st = apply_overrides(options, c->creds);
  if (st == MIM_OK)
    st = start_transport(options, c);
  if (st == MIM_OK && options && options->token_url)
    st = mim_token_provider_start(options->token_url, options->token_refresh_margin_ms,
                                  c->token_expires_at, c->transport, &c->tokens);
  if (st != MIM_OK) {
    client_destroy(c);
    return st;
  }
  /* Installed last so a failed create leaves the process-wide logger untouched. */
  if (options && options->log_fn)
    mim_set_log_callback(options->log_fn, options->log_level ? options->log_level : MIM_LOG_INFO,
                         options->log_user);
  mim_log(MIM_LOG_DEBUG, "client created (cache host %s)",
          mim_credentials_host(c->creds, MIM_HOST_CACHE));
  *out = c;
  return MIM_OK;
}

MIM_API void mim_client_free(mim_client *client) {
  if (!client)
    return;
  if (mim_client_in_callback(client)) {
    /* Freeing from one of its own callbacks would free what the caller still runs on. */
    mim_log(MIM_LOG_ERROR, "mim_client_free called from a client callback: ignored");
    return;
  }
  if (client->loop_mode && !mim_transport_on_event_thread(client->transport)) {
    /* Only the loop thread can run the loop that the teardown needs. */
    mim_log(MIM_LOG_ERROR, "mim_client_free of a loop-mode client off its loop thread: ignored");
    return;
  }
  client_destroy(client);
}

/* The application's loop entry points. Jobs deferred by callbacks run when the
 * outermost entry returns: then the loop thread is outside callbacks and may drive. */
static void loop_entry_done(mim_client *c) {
  if (--c->entry_depth == 0 && mim_transport_must_drive(c->transport))
    run_loop_jobs(c);
}

MIM_API void mim_loop_fd_ready(mim_client *client, int fd, unsigned events) {
  if (!client)
    return;
  client->entry_depth++;
  mim_transport_loop_fd_ready(client->transport, fd, events);
  loop_entry_done(client);
}

MIM_API void mim_loop_timeout(mim_client *client) {
  if (!client)
    return;
  client->entry_depth++;
  mim_transport_loop_timeout(client->transport);
  loop_entry_done(client);
}

bool mim_client_loop_mode(const mim_client *client) {
  return client->loop_mode;
}

bool mim_client_in_callback(const mim_client *client) {
  return mim_transport_on_event_thread(client->transport) &&
         !mim_transport_must_drive(client->transport);
}

typedef struct locked_pred {
  pthread_mutex_t *mu;
  bool (*done)(void *);
  void *arg;
} locked_pred;

static bool pred_locked(void *p) {
  locked_pred *lp = p;
  pthread_mutex_lock(lp->mu);
  bool done = lp->done(lp->arg);
  pthread_mutex_unlock(lp->mu);
  return done;
}

static int64_t timespec_ms(const struct timespec *ts) {
  return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

/* Drives the loop until done; mu is released meanwhile, as a condition wait does. */
static bool drive_locked(mim_client *c, pthread_mutex_t *mu, bool (*done)(void *), void *arg,
                         const struct timespec *until) {
  locked_pred lp = {.mu = mu, .done = done, .arg = arg};
  pthread_mutex_unlock(mu);
  (void)mim_transport_run_until(c->transport, pred_locked, &lp,
                                until ? timespec_ms(until) : INT64_MAX);
  mim_client_after_drive(c);
  pthread_mutex_lock(mu);
  return done(arg);
}

bool mim_client_wait_locked(mim_client *c, pthread_mutex_t *mu, pthread_cond_t *cv,
                            bool (*done)(void *), void *arg, const struct timespec *until) {
  if (mim_transport_must_drive(c->transport))
    return drive_locked(c, mu, done, arg, until);
  while (!done(arg)) {
    if (!until)
      pthread_cond_wait(cv, mu);
    else if (pthread_cond_timedwait(cv, mu, until) != 0)
      return done(arg);
  }
  return true;
}

mim_transport *mim_client_transport(const mim_client *client) {
  return client->transport;
}

bool mim_client_uses_tls(const mim_client *client) {
  return client->tls;
}

uint64_t mim_client_default_ttl_ms(const mim_client *client) {
  return client->ttl_ms;
}

size_t mim_client_max_topic_payload(const mim_client *client) {
  return client->max_payload;
}

const char *mim_client_auth_token(const mim_client *client) {
  return mim_credentials_auth_token(client->creds);
}

int64_t mim_client_deadline_ms(const mim_client *client) {
  return client->deadline_ms;
}

const char *mim_client_endpoint(const mim_client *client) {
  const char *ep = mim_credentials_endpoint(client->creds);
  return ep ? ep : "";
}

static const mim_pb_method ping_method = {MIM_HOST_CACHE, "/cache_client.Ping/Ping",
                                          &cache_client____ping_response__descriptor, false};

mim_stats *mim_client_counters(mim_client *client) {
  return &client->stats;
}

MIM_API mim_status mim_client_stats_get(mim_client *client, mim_client_stats *out) {
  mim_clear_error();
  if (!client || !out)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "mim_client_stats_get: NULL argument");
  mim_client_stats now;
  mim_stats_read(&client->stats, &now);
  return mim_struct_copy_out(out, &now, sizeof now,
                             MIM_SIZE_THROUGH(mim_client_stats, limit_refusals),
                             "mim_client_stats_get: out", "MIM_CLIENT_STATS_INIT");
}

MIM_API mim_status mim_client_ping(mim_client *client) {
  mim_clear_error();
  if (!client)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  CacheClient__PingRequest req = CACHE_CLIENT____PING_REQUEST__INIT;
  return mim_pb_call(client, &ping_method, NULL, &req.base, NULL);
}

mim_status mim_check_name(const char *what, const char *name) {
  if (!name)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is NULL", what);
  if (!*name)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "%s is empty", what);
  return MIM_OK;
}

static const mim_pb_method create_cache_method = {
    MIM_HOST_CONTROL, "/control_client.ScsControl/CreateCache",
    &control_client____create_cache_response__descriptor, false};
static const mim_pb_method delete_cache_method = {
    MIM_HOST_CONTROL, "/control_client.ScsControl/DeleteCache",
    &control_client____delete_cache_response__descriptor, false};

/* Both control requests are just cache_name = 1, so one encoding serves both methods. */
static mim_status cache_control(mim_client *client, const mim_pb_method *method,
                                const char *cache_name) {
  mim_clear_error();
  if (!client)
    return mim_fail(MIM_ERR_INVALID_ARGUMENT, "client is NULL");
  mim_status st = mim_check_cache_name(cache_name);
  if (st != MIM_OK)
    return st;
  ControlClient__CreateCacheRequest req = CONTROL_CLIENT____CREATE_CACHE_REQUEST__INIT;
  req.cache_name = (char *)cache_name; /* protobuf-c wants non-const; only read */
  return mim_pb_call(client, method, NULL, &req.base, NULL);
}

MIM_API mim_status mim_cache_create(mim_client *client, const char *cache_name) {
  return cache_control(client, &create_cache_method, cache_name);
}

MIM_API mim_status mim_cache_delete(mim_client *client, const char *cache_name) {
  return cache_control(client, &delete_cache_method, cache_name);
}

bool mim_client_token_rejected(mim_client *client) {
  if (!client->tokens)
    return false;
  mim_token_provider_refresh(client->tokens);
  return true;
}

bool mim_client_refreshes_tokens(const mim_client *client) {
  return client->tokens != NULL;
}

unsigned mim_client_token_fetches(const mim_client *client) {
  return client->tokens ? mim_token_provider_fetches(client->tokens) : 0;
}

typedef struct job {
  mim_client *client;
  void (*fn)(void *);
  void *arg;
} job;

static void *job_main(void *p) {
  job j = *(job *)p;
  free(p);
  j.fn(j.arg);
  pthread_mutex_lock(&j.client->jobs_mu);
  j.client->jobs--;
  pthread_cond_broadcast(&j.client->jobs_cv);
  pthread_mutex_unlock(&j.client->jobs_mu); /* last touch: the client may be freed now */
  return NULL;
}

/* Wakes the application's loop, so that its mim_loop_timeout runs the queued jobs. */
static void jobs_wake(void *user) {
  (void)user;
}

static void arm_jobs_wake(mim_client *c) {
  if (mim_transport_timer(c->transport, 0, jobs_wake, c, NULL) != MIM_OK)
    mim_log(MIM_LOG_WARN, "cannot wake the loop for a deferred job: it runs at the next event");
}

/* Loop thread, outside callbacks. The outermost runner takes every job, including those
 * queued by callbacks that run while a job drives the loop. */
static void run_loop_jobs(mim_client *c) {
  if (c->running_jobs)
    return;
  c->running_jobs = true;
  for (;;) {
    pthread_mutex_lock(&c->jobs_mu);
    loop_job *j = c->queued;
    if (j) {
      c->queued = j->next;
      if (!c->queued)
        c->queued_tail = NULL;
    }
    pthread_mutex_unlock(&c->jobs_mu);
    if (!j)
      break;
    j->fn(j->arg);
    free(j);
    pthread_mutex_lock(&c->jobs_mu);
    c->jobs--;
    pthread_cond_broadcast(&c->jobs_cv);
    pthread_mutex_unlock(&c->jobs_mu);
  }
  c->running_jobs = false;
}

void mim_client_after_drive(mim_client *c) {
  if (!c->loop_mode || !mim_transport_must_drive(c->transport) || c->entry_depth > 0 ||
      c->running_jobs)
    return; /* an entry's tail or the runner on the stack takes the new jobs */
  pthread_mutex_lock(&c->jobs_mu);
  bool pending = c->queued != NULL;
  pthread_mutex_unlock(&c->jobs_mu);
  if (pending)
    arm_jobs_wake(c); /* a blocking call drove the loop: run them once it has returned */
}

static mim_status queue_loop_job(mim_client *c, void (*fn)(void *), void *arg) {
  loop_job *j = calloc(1, sizeof *j);
  if (!j)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  j->fn = fn;
  j->arg = arg;
  pthread_mutex_lock(&c->jobs_mu);
  if (c->queued_tail)
    c->queued_tail->next = j;
  else
    c->queued = j;
  c->queued_tail = j;
  c->jobs++;
  pthread_mutex_unlock(&c->jobs_mu);
  if (c->entry_depth == 0)
    arm_jobs_wake(c); /* not inside an entry (a blocking call drives): come back later */
  return MIM_OK;
}

void mim_client_hold_jobs(mim_client *client) {
  pthread_mutex_lock(&client->jobs_mu);
  client->jobs++;
  pthread_mutex_unlock(&client->jobs_mu);
}

void mim_client_release_jobs(mim_client *client) {
  pthread_mutex_lock(&client->jobs_mu);
  client->jobs--;
  pthread_cond_broadcast(&client->jobs_cv);
  pthread_mutex_unlock(&client->jobs_mu); /* last touch: the client may be freed now */
}

mim_status mim_client_run_detached(mim_client *client, void (*fn)(void *), void *arg) {
  if (client->loop_mode)
    return queue_loop_job(client, fn, arg);
  job *j = malloc(sizeof *j);
  if (!j)
    return mim_fail(MIM_ERR_NO_MEMORY, "out of memory");
  *j = (job){.client = client, .fn = fn, .arg = arg};
  pthread_mutex_lock(&client->jobs_mu);
  client->jobs++;
  pthread_mutex_unlock(&client->jobs_mu);
  pthread_attr_t attr;
  pthread_t tid;
  int rc = pthread_attr_init(&attr);
  if (rc == 0) {
    (void)pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, job_main, j);
    pthread_attr_destroy(&attr);
  }
  if (rc == 0)
    return MIM_OK;
  free(j);
  pthread_mutex_lock(&client->jobs_mu);
  client->jobs--;
  pthread_cond_broadcast(&client->jobs_cv);
  pthread_mutex_unlock(&client->jobs_mu);
  return mim_fail(MIM_ERR_RESOURCE_EXHAUSTED, "cannot start a thread (error %d)", rc);
}
