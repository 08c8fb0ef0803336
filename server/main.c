/* mim-local: a Momento-compatible development server (lists, control plane, ping,
 * topics, disposable tokens) on the gRPC core server API.
 * See `mim-local --help` for the flags. */
#include "accept.h"
#include "base64.h"
#include "dispatch.h"
#include "housekeeping.h"
#include "persist.h"
#include "recovery.h"
#include "util.h"

#include <errno.h>
#include <getopt.h>
#include <grpc/grpc.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CACHES 64
#define ROOT_KEY_VALID_SECONDS (10ULL * 365 * 24 * 3600)
#define TRIM_INTERVAL_S 2
/* A limit flag not given on the command line: --limits / --rate-limits decide. */
#define UNSET UINT64_MAX

/* Hosted Momento's published limits (server/README.md, "Hosted Momento's limits"). */
enum {
  HARD_TOPIC_PAYLOAD,
  HARD_ELEMENT_SIZE,
  HARD_ITEM_SIZE,
  HARD_TTL_MS,
  HARD_TOKEN_PERMISSIONS,
  N_HARD
};
static const uint64_t g_hosted_hard[N_HARD] = {4096, 131072, 1048576, 86400000, 10};
enum { RATE_CACHE_OPS, RATE_CACHE_BYTES, RATE_TOPIC_OPS, RATE_TOPIC_SUBS, N_RATE };
static const uint64_t g_hosted_rate[N_RATE] = {100, 1048576, 100, 100};

typedef struct options {
  const char *host;
  int port;
  const char *port_file;
  const char *caches[MAX_CACHES];
  int ncaches;
  const char *root_key_file;
  const char *secret_file;
  bool no_auth;
  int heartbeat_ms;
  size_t replay;
  size_t replay_bytes;
  size_t max_queue_bytes;
  size_t max_message_bytes;
  size_t max_list_length;
  size_t max_subscribers;
  size_t max_queue;
  uint64_t default_ttl_ms;
  const char *tls_cert;
  const char *tls_key;
  const char *data_dir;
  persist_fsync fsync_mode;
  uint64_t compact_bytes;
  int max_streams;           /* per connection */
  size_t memory_quota;       /* gRPC core's resource quota, bytes */
  int max_connection_age_ms; /* test hook: GOAWAY after this long (0: never) */
  bool recover;
  bool limits_on;        /* --limits momento (default) | none */
  bool rate_limits_on;   /* --rate-limits momento | none (default) */
  uint64_t hard[N_HARD]; /* per-limit flags; UNSET until given */
  uint64_t rate[N_RATE];
} options;

/* --data-dir: the persistence of the store and topics (NULL: memory only). */
static persist *g_persist;
/* The once-a-second sweep and compaction check (NULL until app_init started it). */
static housekeeping *g_housekeeping;

static void usage(FILE *out) {
  fputs("usage: mim-local [options]\n"
        "  --host ADDR              listen address (default 127.0.0.1)\n"
        "  --port N                 port (default 8080; 0 = a free port)\n"
        "  --port-file PATH         write the bound port there once listening\n"
        "  --cache NAME             create this cache at start (repeatable)\n"
        "  --root-key-file PATH     write a super-user v1 API key there\n"
        "  --auth-secret-file PATH  HMAC secret (read if present, else generated there)\n"
        "  --no-auth                every caller is super-user (any or empty token)\n"
        "  --heartbeat-ms N         heartbeat interval on idle streams (default 5000)\n"
        "  --replay N               messages kept per topic for resume (default 4096)\n"
        "  --replay-bytes N         ... and at most N payload bytes (default 33554432)\n"
        "  --max-message-bytes N    largest topic message / list value (default 1048576)\n"
        "  --max-list-length N      longest list (default 100000)\n"
        "  --max-subscribers N      subscribers per topic (default 10000)\n"
        "  --max-queue N            queued items per subscriber before it overflows\n"
        "                           (default 8192, at least replay + 16)\n"
        "  --max-queue-bytes N      ... or N payload bytes (default 67108864, at least\n"
        "                           replay-bytes + 2 x max-message-bytes)\n"
        "  --default-ttl-ms N       list TTL when a request gives 0 (default 86400000)\n"
        "  --tls-cert PEM --tls-key PEM   serve TLS instead of plaintext\n"
        "  --log-level L            error|warn|info|debug (default info)\n"
        "  --data-dir DIR           keep caches, lists and topic sequence state in DIR\n"
        "                           (log + snapshot) across restarts\n"
        "  --fsync MODE             always|interval|never (default interval: every 100 ms)\n"
        "  --compact-bytes N        compact the log into a snapshot beyond N bytes\n"
        "                           (default 67108864)\n"
        "  --max-streams-per-connection N  concurrent HTTP/2 streams per connection\n"
        "                           (default 2048)\n"
        "  --memory-quota-bytes N   memory gRPC may use for connections and calls\n"
        "                           (default 1073741824)\n"
        "  --recover                start on damaged --data-dir files: copy them to\n"
        "                           DIR/damaged-<time>/, load every intact record\n"
        "  --max-connection-age-ms N  test hook: close each connection gracefully (GOAWAY)\n"
        "                           after N ms, in-flight calls get 1 s more\n"
        "hosted Momento's limits (server/README.md); a per-limit flag wins over --limits /\n"
        "--rate-limits whatever the order; 0 turns that limit off:\n"
        "  --limits momento|none    hard limits at the hosted values (default) or lifted\n"
        "  --max-topic-payload N    topic message bytes (4096; request_size_limit_exceeded)\n"
        "  --max-element-size N     list element, dictionary field or value bytes (131072;\n"
        "                           element_size_limit_exceeded)\n"
        "  --max-item-size N        a list's or dictionary's total bytes (1048576;\n"
        "                           item_size_limit_exceeded)\n"
        "  --max-ttl-ms N           largest ttl_milliseconds (86400000; INVALID_ARGUMENT)\n"
        "  --max-token-permissions N  permissions per minted token (10; INVALID_ARGUMENT)\n"
        "  --rate-limits momento|none  the four rate limits at the hosted values, or off\n"
        "                           (default none)\n"
        "  --cache-ops-per-s N      operations per cache per second (hosted 100;\n"
        "                           operations_rate_limit_exceeded)\n"
        "  --cache-bytes-per-s N    value bytes per cache per second (hosted 1048576;\n"
        "                           throughput_rate_limit_exceeded)\n"
        "  --topic-ops-per-s N      publishes + deliveries per namespace (cache) per second\n"
        "                           (hosted 100; operations_rate_limit_exceeded)\n"
        "  --topic-subscriptions N  concurrent subscriptions per namespace (hosted 100;\n"
        "                           topic_subscriptions_limit_exceeded)\n"
        "signals: SIGTERM/SIGINT stop cleanly; SIGUSR1 ends every subscription stream\n"
        "(UNAVAILABLE) and keeps serving, to test client resume.\n",
        out);
}

static bool parse_num(const char *s, unsigned long long max, unsigned long long *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || !end || *end || s[0] == '-' || v > max) {
    return false;
  }
  *out = v;
  return true;
}

enum {
  OPT_HOST = 256,
  OPT_PORT,
  OPT_PORT_FILE,
  OPT_CACHE,
  OPT_ROOT_KEY,
  OPT_SECRET,
  OPT_NO_AUTH,
  OPT_HEARTBEAT,
  OPT_REPLAY,
  OPT_MAX_MSG,
  OPT_MAX_LIST,
  OPT_MAX_SUBS,
  OPT_MAX_QUEUE,
  OPT_TTL,
  OPT_TLS_CERT,
  OPT_TLS_KEY,
  OPT_LOG,
  OPT_HELP,
  OPT_REPLAY_BYTES,
  OPT_QUEUE_BYTES,
  OPT_DATA_DIR,
  OPT_FSYNC,
  OPT_COMPACT,
  OPT_MAX_STREAMS,
  OPT_MEMORY_QUOTA,
  OPT_RECOVER,
  OPT_MAX_AGE,
  OPT_LIMITS,
  OPT_RATE_LIMITS,
  OPT_HARD_FIRST, /* the N_HARD per-limit flags, in the HARD_* order */
  OPT_HARD_LAST = OPT_HARD_FIRST + N_HARD - 1,
  OPT_RATE_FIRST, /* the N_RATE rate flags, in the RATE_* order */
  OPT_RATE_LAST = OPT_RATE_FIRST + N_RATE - 1
};

static const struct option g_long[] = {
    {"host", required_argument, NULL, OPT_HOST},
    {"port", required_argument, NULL, OPT_PORT},
    {"port-file", required_argument, NULL, OPT_PORT_FILE},
    {"cache", required_argument, NULL, OPT_CACHE},
    {"root-key-file", required_argument, NULL, OPT_ROOT_KEY},
    {"auth-secret-file", required_argument, NULL, OPT_SECRET},
    {"no-auth", no_argument, NULL, OPT_NO_AUTH},
    {"heartbeat-ms", required_argument, NULL, OPT_HEARTBEAT},
    {"replay", required_argument, NULL, OPT_REPLAY},
    {"max-message-bytes", required_argument, NULL, OPT_MAX_MSG},
    {"max-list-length", required_argument, NULL, OPT_MAX_LIST},
    {"max-subscribers", required_argument, NULL, OPT_MAX_SUBS},
    {"max-queue", required_argument, NULL, OPT_MAX_QUEUE},
    {"default-ttl-ms", required_argument, NULL, OPT_TTL},
    {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
    {"tls-key", required_argument, NULL, OPT_TLS_KEY},
    {"log-level", required_argument, NULL, OPT_LOG},
    {"help", no_argument, NULL, OPT_HELP},
    {"replay-bytes", required_argument, NULL, OPT_REPLAY_BYTES},
    {"max-queue-bytes", required_argument, NULL, OPT_QUEUE_BYTES},
    {"data-dir", required_argument, NULL, OPT_DATA_DIR},
    {"fsync", required_argument, NULL, OPT_FSYNC},
    {"compact-bytes", required_argument, NULL, OPT_COMPACT},
    {"max-streams-per-connection", required_argument, NULL, OPT_MAX_STREAMS},
    {"memory-quota-bytes", required_argument, NULL, OPT_MEMORY_QUOTA},
    {"recover", no_argument, NULL, OPT_RECOVER},
    {"max-connection-age-ms", required_argument, NULL, OPT_MAX_AGE},
    {"limits", required_argument, NULL, OPT_LIMITS},
    {"rate-limits", required_argument, NULL, OPT_RATE_LIMITS},
    {"max-topic-payload", required_argument, NULL, OPT_HARD_FIRST + HARD_TOPIC_PAYLOAD},
    {"max-element-size", required_argument, NULL, OPT_HARD_FIRST + HARD_ELEMENT_SIZE},
    {"max-item-size", required_argument, NULL, OPT_HARD_FIRST + HARD_ITEM_SIZE},
    {"max-ttl-ms", required_argument, NULL, OPT_HARD_FIRST + HARD_TTL_MS},
    {"max-token-permissions", required_argument, NULL, OPT_HARD_FIRST + HARD_TOKEN_PERMISSIONS},
    {"cache-ops-per-s", required_argument, NULL, OPT_RATE_FIRST + RATE_CACHE_OPS},
    {"cache-bytes-per-s", required_argument, NULL, OPT_RATE_FIRST + RATE_CACHE_BYTES},
    {"topic-ops-per-s", required_argument, NULL, OPT_RATE_FIRST + RATE_TOPIC_OPS},
    {"topic-subscriptions", required_argument, NULL, OPT_RATE_FIRST + RATE_TOPIC_SUBS},
    {NULL, 0, NULL, 0},
};

/* "momento" or "none" into *on. */
static bool parse_mode(const char *arg, bool *on) {
  if (strcmp(arg, "momento") == 0 || strcmp(arg, "none") == 0) {
    *on = arg[0] == 'm';
    return true;
  }
  return false;
}

/* The per-limit flags (0 = that limit off). */
static bool set_limit(options *o, int opt, const char *arg) {
  unsigned long long v;
  if (!parse_num(arg, 1ULL << 40, &v)) {
    return false;
  }
  if (opt >= OPT_HARD_FIRST && opt <= OPT_HARD_LAST) {
    o->hard[opt - OPT_HARD_FIRST] = v;
    return true;
  }
  if (opt >= OPT_RATE_FIRST && opt <= OPT_RATE_LAST) {
    o->rate[opt - OPT_RATE_FIRST] = v;
    return true;
  }
  return false;
}

/* Numeric flags: which field, and its bounds. */
static bool set_number(options *o, int opt, const char *arg) {
  unsigned long long v;
  switch (opt) {
  case OPT_PORT:
    return parse_num(arg, 65535, &v) && ((o->port = (int)v), true);
  case OPT_HEARTBEAT:
    return parse_num(arg, 3600000, &v) && v > 0 && ((o->heartbeat_ms = (int)v), true);
  case OPT_REPLAY:
    return parse_num(arg, 1000000, &v) && ((o->replay = v), true);
  case OPT_MAX_MSG:
    return parse_num(arg, 64 << 20, &v) && v > 0 && ((o->max_message_bytes = v), true);
  case OPT_MAX_LIST:
    return parse_num(arg, UINT32_MAX, &v) && v > 0 && ((o->max_list_length = v), true);
  case OPT_MAX_SUBS:
    return parse_num(arg, 10000000, &v) && v > 0 && ((o->max_subscribers = v), true);
  case OPT_MAX_QUEUE:
    return parse_num(arg, 10000000, &v) && v > 0 && ((o->max_queue = v), true);
  case OPT_REPLAY_BYTES:
    return parse_num(arg, 1ULL << 40, &v) && v > 0 && ((o->replay_bytes = v), true);
  case OPT_QUEUE_BYTES:
    return parse_num(arg, 1ULL << 40, &v) && v > 0 && ((o->max_queue_bytes = v), true);
  case OPT_COMPACT:
    return parse_num(arg, 1ULL << 40, &v) && v > 0 && ((o->compact_bytes = v), true);
  case OPT_MAX_STREAMS:
    return parse_num(arg, INT32_MAX, &v) && v > 0 && ((o->max_streams = (int)v), true);
  case OPT_MAX_AGE:
    return parse_num(arg, INT32_MAX, &v) && v > 0 && ((o->max_connection_age_ms = (int)v), true);
  case OPT_MEMORY_QUOTA:
    return parse_num(arg, 1ULL << 44, &v) && v >= (16u << 20) && ((o->memory_quota = v), true);
  case OPT_TTL:
    return parse_num(arg, 100ULL * 365 * 24 * 3600 * 1000, &v) && v > 0 &&
           ((o->default_ttl_ms = v), true);
  default:
    return set_limit(o, opt, arg);
  }
}

static bool set_option(options *o, int opt, const char *arg) {
  srv_log_level level;
  switch (opt) {
  case OPT_HOST:
    o->host = arg;
    return true;
  case OPT_PORT_FILE:
    o->port_file = arg;
    return true;
  case OPT_ROOT_KEY:
    o->root_key_file = arg;
    return true;
  case OPT_SECRET:
    o->secret_file = arg;
    return true;
  case OPT_NO_AUTH:
    o->no_auth = true;
    return true;
  case OPT_RECOVER:
    o->recover = true;
    return true;
  case OPT_LIMITS:
    return parse_mode(arg, &o->limits_on);
  case OPT_RATE_LIMITS:
    return parse_mode(arg, &o->rate_limits_on);
  case OPT_DATA_DIR:
    o->data_dir = arg;
    return arg[0] != '\0';
  case OPT_FSYNC:
    return persist_parse_fsync(arg, &o->fsync_mode);
  case OPT_TLS_CERT:
    o->tls_cert = arg;
    return true;
  case OPT_TLS_KEY:
    o->tls_key = arg;
    return true;
  case OPT_CACHE:
    if (o->ncaches == MAX_CACHES) {
      return false;
    }
    o->caches[o->ncaches++] = arg;
    return true;
  case OPT_LOG:
    if (!srv_log_parse_level(arg, &level)) {
      return false;
    }
    srv_log_set_level(level);
    return true;
  default:
    return set_number(o, opt, arg);
  }
}

static const char *option_name(int opt) {
  for (const struct option *o = g_long; o->name; o++) {
    if (o->val == opt) {
      return o->name;
    }
  }
  return "?";
}

/* 0 = run, 1 = exit 0 (help), 2 = usage error. */
static int parse_args(int argc, char **argv, options *o) {
  *o = (options){.host = "127.0.0.1",
                 .port = 8080,
                 .heartbeat_ms = 5000,
                 .replay = 4096,
                 .replay_bytes = 32u << 20,
                 .max_queue_bytes = 64u << 20,
                 .max_message_bytes = 1 << 20,
                 .max_list_length = 100000,
                 .max_subscribers = 10000,
                 .max_queue = 8192,
                 .default_ttl_ms = 86400000ULL,
                 .max_streams = 2048,
                 .memory_quota = 1u << 30,
                 .fsync_mode = PERSIST_FSYNC_INTERVAL,
                 .limits_on = true};
  for (int i = 0; i < N_HARD; i++) {
    o->hard[i] = UNSET;
  }
  for (int i = 0; i < N_RATE; i++) {
    o->rate[i] = UNSET;
  }
  int opt;
  while ((opt = getopt_long(argc, argv, "", g_long, NULL)) != -1) {
    if (opt == OPT_HELP) {
      usage(stdout);
      return 1;
    }
    if (opt == '?' || !set_option(o, opt, optarg)) {
      if (opt != '?') {
        fprintf(stderr, "mim-local: bad value for --%s\n", option_name(opt));
      }
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc || (!o->tls_cert != !o->tls_key)) {
    usage(stderr);
    return 2;
  }
  /* Explicit per-limit flags win; the rest follow their mode. */
  for (int i = 0; i < N_HARD; i++) {
    o->hard[i] = o->hard[i] != UNSET ? o->hard[i] : (o->limits_on ? g_hosted_hard[i] : 0);
  }
  for (int i = 0; i < N_RATE; i++) {
    o->rate[i] = o->rate[i] != UNSET ? o->rate[i] : (o->rate_limits_on ? g_hosted_rate[i] : 0);
  }
  if (o->max_queue < o->replay + 16) {
    o->max_queue = o->replay + 16; /* a full replay must fit in a fresh queue */
  }
  if (o->max_queue_bytes < o->replay_bytes + 2 * o->max_message_bytes) {
    o->max_queue_bytes = o->replay_bytes + 2 * o->max_message_bytes;
  }
  return 0;
}

/* ---- files ---- */

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    return NULL;
  }
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *nb = realloc(buf, cap);
      if (!nb) {
        break;
      }
      buf = nb;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) {
      break;
    }
  }
  fclose(f);
  if (buf) {
    buf[len] = '\0';
  }
  return buf;
}

/* Writes via a temporary file and rename, so readers never see a partial file. */
static bool write_file_atomic(const char *path, const char *text, mode_t mode) {
  char tmp[PATH_MAX];
  if (snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid()) >= (int)sizeof tmp) {
    return false;
  }
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    srv_log(LOG_ERROR, "cannot write %s", path);
    return false;
  }
  chmod(tmp, mode);
  bool ok = fputs(text, f) >= 0;
  ok = (fclose(f) == 0) && ok;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    srv_log(LOG_ERROR, "cannot write %s", path);
    return false;
  }
  return true;
}

static bool write_root_key(const app *a, const char *path) {
  char *tok = auth_mint(&a->key, NULL, "root", (uint64_t)time(NULL) + ROOT_KEY_VALID_SECONDS);
  if (!tok) {
    return false;
  }
  size_t jlen = strlen(tok) + strlen(a->endpoint) + 64;
  char *json = malloc(jlen);
  char *b64 = NULL;
  if (json) {
    snprintf(json, jlen, "{\"endpoint\":\"%s\",\"api_key\":\"%s\"}", a->endpoint, tok);
    b64 = cmn_b64_encode(json, strlen(json), CMN_B64_STD);
  }
  free(tok);
  free(json);
  bool ok = false;
  if (b64) {
    size_t n = strlen(b64);
    char *line = malloc(n + 2);
    if (line) {
      snprintf(line, n + 2, "%s\n", b64);
      ok = write_file_atomic(path, line, 0600);
      free(line);
    }
    free(b64);
  }
  return ok;
}

/* ---- startup and shutdown ---- */

static bool cache_exists(void *arg, const char *cache) {
  return store_cache_exists(arg, cache);
}

static void set_endpoint(app *a, const char *host, int port) {
  /* A wildcard address is not something a client can dial: hand out loopback. */
  if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0) {
    host = "127.0.0.1";
  } else if (strcmp(host, "::") == 0) {
    host = "::1";
  }
  bool v6 = strchr(host, ':') != NULL;
  snprintf(a->endpoint, sizeof a->endpoint, v6 ? "[%s]:%d" : "%s:%d", host, port);
}

static bool create_caches(app *a, const options *o) {
  for (int i = 0; i < o->ncaches; i++) {
    st_result r = store_cache_create(a->store, o->caches[i]);
    if (r != ST_OK && r != ST_EXISTS) {
      return false;
    }
  }
  return true;
}

static bool app_init(app *a, const options *o) {
  memset(a, 0, sizeof *a);
  a->no_auth = o->no_auth;
  a->max_message_bytes = o->max_message_bytes;
  a->limits = (svc_limits){.max_topic_payload = o->hard[HARD_TOPIC_PAYLOAD],
                           .max_element_size = o->hard[HARD_ELEMENT_SIZE],
                           .max_item_size = o->hard[HARD_ITEM_SIZE],
                           .max_ttl_ms = o->hard[HARD_TTL_MS],
                           .max_token_permissions = o->hard[HARD_TOKEN_PERMISSIONS]};
  quota_config qc = {.cache_ops_per_s = o->rate[RATE_CACHE_OPS],
                     .cache_bytes_per_s = o->rate[RATE_CACHE_BYTES],
                     .topic_ops_per_s = o->rate[RATE_TOPIC_OPS],
                     .topic_subscriptions = o->rate[RATE_TOPIC_SUBS]};
  bool failed = false;
  a->quota = quota_new(&qc, &failed);
  if (failed || !auth_key_init(&a->key, o->secret_file)) {
    return false;
  }
  a->store = store_new(o->default_ttl_ms, o->max_list_length);
  if (a->store) {
    store_set_max_item_bytes(a->store, o->hard[HARD_ITEM_SIZE]);
  }
  if (a->store && o->data_dir) {
    g_persist = recovery_open(o->data_dir, o->fsync_mode, o->compact_bytes, o->recover, a->store);
    if (!g_persist) {
      return false;
    }
    store_set_persist(a->store, g_persist);
  }
  pubsub_config pc = {.replay = o->replay,
                      .replay_bytes = o->replay_bytes,
                      .max_queue_bytes = o->max_queue_bytes,
                      .max_queue = o->max_queue,
                      .max_subscribers = o->max_subscribers,
                      .heartbeat_ms = o->heartbeat_ms,
                      .cache_exists = cache_exists,
                      .cache_arg = a->store,
                      .persist = g_persist};
  a->ps = a->store ? pubsub_new(&pc) : NULL;
  g_housekeeping = a->ps ? housekeeping_start(a->store, g_persist) : NULL;
  return g_housekeeping && create_caches(a, o);
}

static void app_free(app *a) {
  if (a->ps) {
    pubsub_persist_topics(a->ps); /* exact numbers: a clean restart leaves no gap */
  }
  if (a->store) {
    store_set_persist(a->store, NULL);
  }
  persist_close(g_persist);
  g_persist = NULL;
  pubsub_free(a->ps);
  store_free(a->store);
  quota_free(a->quota); /* after the streams, whose ends release subscriptions */
  memset(&a->key, 0, sizeof a->key);
}

static srv_rpc *start_rpc(app *a, const options *o, int *port) {
  char *cert = o->tls_cert ? read_file(o->tls_cert) : NULL;
  char *key = o->tls_key ? read_file(o->tls_key) : NULL;
  srv_rpc *rpc = NULL;
  if (o->tls_cert && (!cert || !key)) {
    srv_log(LOG_ERROR, "cannot read the TLS certificate or key");
  } else {
    srv_rpc_config rc = {.host = o->host,
                         .port = o->port,
                         .tls_cert_pem = cert,
                         .tls_key_pem = key,
                         .max_receive_bytes = o->max_message_bytes + 65536,
                         .max_streams_per_connection = o->max_streams,
                         .memory_quota_bytes = o->memory_quota,
                         .max_connection_age_ms = o->max_connection_age_ms,
                         .cq_threads = 2};
    dispatch_configure(&rc, a);
    rpc = srv_rpc_start(&rc, port);
  }
  free(cert);
  if (key) {
    memset(key, 0, strlen(key));
  }
  free(key);
  return rpc;
}

static bool announce(app *a, const options *o, int port) {
  set_endpoint(a, o->host, port);
  if (o->root_key_file && !write_root_key(a, o->root_key_file)) {
    return false;
  }
  if (o->port_file) {
    char buf[32];
    snprintf(buf, sizeof buf, "%d\n", port);
    if (!write_file_atomic(o->port_file, buf, 0644)) {
      return false;
    }
  }
  bool v6 = strchr(o->host, ':') != NULL;
  printf(v6 ? "mim-local listening on [%s]:%d\n" : "mim-local listening on %s:%d\n", o->host, port);
  fflush(stdout);
  srv_log(LOG_INFO, "serving %s%s%s", o->tls_cert ? "TLS" : "plaintext",
          o->no_auth ? ", auth disabled" : "", o->ncaches ? "" : ", no caches yet");
  return true;
}

/* Every connection holds a file descriptor: a soft limit of 1,024 (the usual default)
 * would cap the server far below what the machine allows. Raise it to the hard limit
 * and say what the server runs with. */
static void raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return;
  }
  if (rl.rlim_cur < rl.rlim_max) {
    rlim_t was = rl.rlim_cur;
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      srv_log(LOG_WARN, "cannot raise the file descriptor limit from %llu: %s",
              (unsigned long long)was, strerror(errno));
      getrlimit(RLIMIT_NOFILE, &rl);
    }
  }
  int limit = rl.rlim_cur > (rlim_t)INT32_MAX ? INT32_MAX : (int)rl.rlim_cur;
  srv_log(LOG_INFO, "file descriptor limit %d; new connections are refused with %d left", limit,
          srv_acceptor_reserve(limit));
}

/* Test hook (server/README.md): MIM_LOCAL_SHUTDOWN_PAUSE_MS=N (at most 10000) waits N ms
 * after the subscription streams ended and before the rpc layer stops, so a test can
 * reliably re-subscribe in that window and see it refused. */
static void shutdown_pause_for_tests(void) {
  const char *v = getenv("MIM_LOCAL_SHUTDOWN_PAUSE_MS");
  long ms = v ? strtol(v, NULL, 10) : 0;
  ms = ms > 10000 ? 10000 : ms;
  if (ms > 0) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Waits for SIGINT/SIGTERM. SIGUSR1 (for tests) cuts every subscription stream with
 * UNAVAILABLE and keeps serving, so clients exercise their resume path. Every
 * TRIM_INTERVAL_S it hands free heap memory back to the system: glibc trims only the
 * top of the main arena by itself, so what a burst (a flood of reset streams, a big
 * request) left free in the gRPC threads' arenas would stay resident for good. */
static int wait_for_signal(app *a, const sigset_t *set) {
  const struct timespec every = {.tv_sec = TRIM_INTERVAL_S, .tv_nsec = 0};
  for (;;) {
    int sig = sigtimedwait(set, NULL, &every);
    if (sig < 0) {
      if (errno == EAGAIN) {
        malloc_trim(0);
      } else if (errno != EINTR) {
        return 0;
      }
    } else if (sig == SIGUSR1) {
      srv_log(LOG_INFO, "SIGUSR1: cutting every subscription stream");
      pubsub_end_streams(a->ps, GRPC_STATUS_UNAVAILABLE, "stream cut for test");
    } else if (sig != SIGPIPE) {
      return sig;
    }
  }
}

int main(int argc, char **argv) {
  options o;
  int pr = parse_args(argc, argv, &o);
  if (pr) {
    return pr == 1 ? 0 : 2;
  }
  /* Block the signals before any thread exists, so only sigwait below sees them. */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGPIPE);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  /* A file-size limit (RLIMIT_FSIZE) must not kill the server: with SIGXFSZ ignored a
   * write past it fails with EFBIG, which the log handles like a full disk. */
  signal(SIGXFSZ, SIG_IGN);
  raise_fd_limit();
  grpc_init();
  app a;
  int port = 0, rc = 1;
  srv_rpc *rpc = NULL;
  if (app_init(&a, &o) && (rpc = start_rpc(&a, &o, &port)) && announce(&a, &o, port)) {
    int sig = wait_for_signal(&a, &set);
    srv_log(LOG_INFO, "signal %d: shutting down", sig);
    rc = 0;
  }
  housekeeping_stop(g_housekeeping); /* before anything it works on goes away */
  g_housekeeping = NULL;
  if (a.ps) {
    pubsub_shutdown(a.ps);
    shutdown_pause_for_tests();
  }
  srv_rpc_stop(rpc, 2000);
  app_free(&a);
  grpc_shutdown_blocking(); /* let gRPC finish its own cleanup before exit */
  srv_log(LOG_INFO, "stopped");
  return rc;
}
