/*
 * token-vendor: a small HTTP service that holds a privileged key and hands chat clients
 * disposable tokens scoped to one chat.
 *
 *   token-vendor --key-file ROOT.key [--endpoint HOST:PORT] [--plaintext]
 *                [--listen 127.0.0.1:8081 | --port N] [--port-file F]
 *                [--cache NAME] [--valid-for SECONDS]
 *
 *   GET /token?chat=C&user=U&mode=client|moderated
 *     200 {"token": "<v1 credential>", "expires_at": <epoch s>, "chat": C, "user": U,
 *          "mode": M}
 *   GET /token?user=U&dm=V&mode=client|moderated    (U's direct chat with V)
 *     200 the same with "chat": mim_direct_chat_id(U, V) and "dm": V
 *     400 {"error": "..."} for a missing or malformed chat (or dm), user or mode, or
 *         both chat and dm
 *     404 for any other path, 405 for any other method
 *     502 {"error": "...", "status": "MIM_ERR_..."} when minting failed
 *
 * The token id is the user name, so receivers see it as the publisher id. The key never
 * leaves this process and is never logged.
 *
 * FOR DEVELOPMENT ONLY: it has no authentication, any caller gets a token for any chat
 * under any name. It listens on loopback unless told otherwise; put your own
 * authentication in front of it before exposing it (it says so at every start).
 */
#include <momento/client.h>
#include <momento/im.h>
#include <momento/token.h>

#include "key_file.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define MAX_ID_LEN 64

typedef struct vendor {
  mim_client *client;
  const char *cache;
  uint32_t valid_for;
} vendor;

typedef struct args {
  const char *listen_host;
  int port;
  const char *port_file;
  const char *endpoint;
  const char *key_file;
  const char *cache;
  long valid_for;
  bool plaintext;
} args;

/* No authentication: whoever can reach the port gets a token for any chat and any name.
 * Said at every start and in --help, so nobody mistakes it for a production service. */
#define DEV_ONLY_WARNING                                                                           \
  "WARNING: this token vendor is for development only: it has NO authentication.\n"                \
  "Any caller that reaches its port gets a token for any chat under any name. Put your\n"          \
  "own authentication in front of it (or write your own vendor) before anyone else can\n"          \
  "reach it.\n"

/* The name this tool was run as (build/examples/token-vendor, or installed as mim-token-vendor),
 * for its usage line. */
static const char *prog = "token-vendor";

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s --key-file ROOT.key [options]\n"
          "\n"
          "Hands chat clients disposable tokens scoped to one chat, minted with the\n"
          "privileged key (which never leaves this process):\n"
          "  GET /token?chat=ROOM&user=NAME&mode=client|moderated\n"
          "  -> {\"token\": \"...\", \"expires_at\": ..., \"chat\": ..., \"user\": ..., \"mode\": "
          "...}\n"
          "and tokens for the direct chat of two users (docs/PROTOCOL.md, section 7):\n"
          "  GET /token?user=NAME&dm=OTHER&mode=client|moderated\n"
          "  -> the same, \"chat\" being the direct chat's id, plus \"dm\": OTHER\n"
          "A real vendor must authenticate NAME before minting; this one does not.\n"
          "\n"
          "  --key-file PATH      privileged key (required)\n"
          "  --endpoint HOST:PORT server for every plane (default: from the key)\n"
          "  --plaintext          no TLS (default: TLS unless the endpoint is loopback)\n"
          "  --listen HOST:PORT   where to serve HTTP (default 127.0.0.1:8081)\n"
          "  --port N             port to listen on (0 = a free one)\n"
          "  --port-file PATH     write the bound port there once listening\n"
          "  --cache NAME         cache holding the rooms (default instant-messaging)\n"
          "  --valid-for SECONDS  lifetime of each token (default 3600, at most 30 days)\n"
          "  --help               this text\n"
          "\n"
          "Example, with mim-local on its default port 8080:\n"
          "  mim-local --root-key-file /tmp/root.key --cache instant-messaging &\n"
          "  %s --key-file /tmp/root.key --endpoint 127.0.0.1:8080 &\n"
          "  curl 'http://127.0.0.1:8081/token?chat=lobby&user=alice&mode=client'\n"
          "\n" DEV_ONLY_WARNING,
          prog, prog);
}

/* chat ids and user names: 1..64 characters of [A-Za-z0-9_.-]. */
static bool valid_id(const char *s) {
  if (!s)
    return false;
  size_t n = strlen(s);
  if (n == 0 || n > MAX_ID_LEN)
    return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

/* Sends a JSON body (takes ownership of body) with the given HTTP status. */
static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned int code, json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (!text)
    return MHD_NO;
  size_t len = strlen(text);
  struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
  if (!resp) {
    free(text);
    return MHD_NO;
  }
  MHD_add_response_header(resp, "Content-Type", "application/json");
  MHD_add_response_header(resp, "Cache-Control", "no-store");
  enum MHD_Result r = MHD_queue_response(conn, code, resp);
  MHD_destroy_response(resp);
  return r;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, unsigned int code,
                                  const char *message) {
  return send_json(conn, code, json_pack("{s:s}", "error", message));
}

/* One token: for chat, or (dm not NULL) for user's direct chat with dm, whose id chat
 * then holds. */
static enum MHD_Result mint(const vendor *v, struct MHD_Connection *conn, const char *chat,
                            const char *user, const char *mode, const char *dm) {
  mim_disposable_token *tok = NULL;
  mim_status st;
  mim_chat_mode m = strcmp(mode, "client") == 0 ? MIM_CHAT_CLIENT_ONLY : MIM_CHAT_MODERATED;
  if (dm)
    st = mim_token_generate_direct(v->client, v->cache, user, dm, m, v->valid_for, &tok);
  else if (m == MIM_CHAT_CLIENT_ONLY)
    st = mim_token_generate_client_only(v->client, v->cache, chat, v->valid_for, user, &tok);
  else
    st = mim_token_generate_moderated(v->client, v->cache, chat, v->valid_for, user, &tok);
  if (st != MIM_OK) {
    /* The status name only: details could echo server-side information. */
    fprintf(stderr, "token-vendor: minting for chat %s failed: %s\n", chat, mim_status_name(st));
    return send_json(
        conn, MHD_HTTP_BAD_GATEWAY,
        json_pack("{s:s,s:s}", "error", "could not mint a token", "status", mim_status_name(st)));
  }
  json_t *body = json_pack("{s:s,s:I,s:s,s:s,s:s}", "token", tok->credential, "expires_at",
                           (json_int_t)tok->valid_until, "chat", chat, "user", user, "mode", mode);
  mim_disposable_token_free(tok);
  if (body && dm)
    json_object_set_new(body, "dm", json_string(dm));
  return send_json(conn, MHD_HTTP_OK, body);
}

/* Both checks every request makes. */
static const char *bad_user_or_mode(const char *user, const char *mode) {
  if (!valid_id(user))
    return "user must be 1-64 characters of A-Za-z0-9_.-";
  if (!mode || (strcmp(mode, "client") != 0 && strcmp(mode, "moderated") != 0))
    return "mode must be client or moderated";
  return NULL;
}

/* The direct chat's token: the same names are allowed for dm as for user. */
static enum MHD_Result handle_dm(const vendor *v, struct MHD_Connection *conn, const char *user,
                                 const char *mode, const char *dm) {
  if (!valid_id(dm))
    return send_error(conn, MHD_HTTP_BAD_REQUEST, "dm must be 1-64 characters of A-Za-z0-9_.-");
  const char *bad = bad_user_or_mode(user, mode);
  if (bad)
    return send_error(conn, MHD_HTTP_BAD_REQUEST, bad);
  char chat[MIM_DIRECT_CHAT_ID_SIZE];
  if (mim_direct_chat_id(user, dm, chat) != MIM_OK) /* cannot fail for valid ids */
    return send_error(conn, MHD_HTTP_BAD_REQUEST, "no direct chat for these users");
  return mint(v, conn, chat, user, mode, dm);
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls) {
  (void)version;
  (void)upload_data;
  (void)upload_data_size;
  (void)req_cls;
  const vendor *v = cls;
  if (strcmp(url, "/token") != 0)
    return send_error(conn, MHD_HTTP_NOT_FOUND, "not found");
  if (strcmp(method, "GET") != 0)
    return send_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET is allowed");
  const char *chat = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "chat");
  const char *user = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "user");
  const char *mode = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "mode");
  const char *dm = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "dm");
  if (chat && dm)
    return send_error(conn, MHD_HTTP_BAD_REQUEST, "give chat or dm, not both");
  if (dm)
    return handle_dm(v, conn, user, mode, dm);
  if (!valid_id(chat))
    return send_error(conn, MHD_HTTP_BAD_REQUEST, "chat must be 1-64 characters of A-Za-z0-9_.-");
  const char *bad = bad_user_or_mode(user, mode);
  if (bad)
    return send_error(conn, MHD_HTTP_BAD_REQUEST, bad);
  return mint(v, conn, chat, user, mode, NULL);
}

static bool parse_port(const char *s, int *out) {
  char *end;
  errno = 0;
  long p = strtol(s, &end, 10);
  if (errno || end == s || *end || p < 0 || p > 65535)
    return false;
  *out = (int)p;
  return true;
}

/* "HOST:PORT" with an IPv4 host. */
static bool parse_listen(char *spec, args *a) {
  char *colon = strrchr(spec, ':');
  if (!colon)
    return false;
  *colon = '\0';
  a->listen_host = spec;
  return parse_port(colon + 1, &a->port);
}

/* 0 ok, 1 --help, 2 a usage error. */
static int parse_args(int argc, char **argv, args *a) {
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    if (strcmp(opt, "--help") == 0)
      return 1;
    if (strcmp(opt, "--plaintext") == 0) {
      a->plaintext = true;
      continue;
    }
    if (i + 1 >= argc)
      return 2;
    char *val = argv[++i];
    if (strcmp(opt, "--listen") == 0) {
      if (!parse_listen(val, a))
        return 2;
    } else if (strcmp(opt, "--port") == 0) {
      if (!parse_port(val, &a->port))
        return 2;
    } else if (strcmp(opt, "--port-file") == 0) {
      a->port_file = val;
    } else if (strcmp(opt, "--endpoint") == 0) {
      a->endpoint = val;
    } else if (strcmp(opt, "--key-file") == 0) {
      a->key_file = val;
    } else if (strcmp(opt, "--cache") == 0) {
      a->cache = val;
    } else if (strcmp(opt, "--valid-for") == 0) {
      char *end;
      a->valid_for = strtol(val, &end, 10);
      if (*end || a->valid_for <= 0 || a->valid_for > 86400L * 30)
        return 2;
    } else {
      return 2;
    }
  }
  return a->key_file ? 0 : 2;
}

static mim_client *make_client(const args *a) {
  char *key = read_key_file(a->key_file);
  if (!key) {
    fprintf(stderr, "token-vendor: cannot read key file %s\n", a->key_file);
    return NULL;
  }
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = o.control_host = o.token_host = a->endpoint;
  o.tls = a->plaintext ? MIM_TLS_OFF : MIM_TLS_AUTO;
  mim_client *c = NULL;
  mim_status st = mim_client_create(&o, &c);
  explicit_bzero(key, strlen(key));
  free_key(key);
  if (st != MIM_OK)
    fprintf(stderr, "token-vendor: client: %s: %s\n", mim_status_name(st), mim_last_error_detail());
  return c;
}

/* Written to a temporary name and renamed, so a reader never sees a partial port. */
static bool write_port_file(const char *path, int port) {
  char tmp[4096];
  if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
    return false;
  FILE *f = fopen(tmp, "w");
  if (!f)
    return false;
  bool ok = fprintf(f, "%d\n", port) > 0;
  ok = fclose(f) == 0 && ok;
  return ok && rename(tmp, path) == 0;
}

static struct MHD_Daemon *start_http(const args *a, vendor *v, int *port) {
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)a->port);
  if (inet_pton(AF_INET, a->listen_host, &addr.sin_addr) != 1) {
    fprintf(stderr, "token-vendor: bad listen address %s\n", a->listen_host);
    return NULL;
  }
  struct MHD_Daemon *d = MHD_start_daemon(
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG,
      (uint16_t)a->port, NULL, NULL, handle, v, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)30, MHD_OPTION_END);
  if (!d) {
    fprintf(stderr, "token-vendor: cannot listen on %s:%d\n", a->listen_host, a->port);
    return NULL;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
  *port = info ? info->port : a->port;
  return d;
}

/* Blocks until SIGINT or SIGTERM (blocked in every thread, taken here with sigwait). */
static void wait_for_signal(const sigset_t *set) {
  int sig = 0;
  while (sigwait(set, &sig) != 0)
    ;
}

int main(int argc, char **argv) {
  prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  args a = {
      .listen_host = "127.0.0.1", .port = 8081, .cache = "instant-messaging", .valid_for = 3600};
  int parsed = parse_args(argc, argv, &a);
  if (parsed) {
    usage(parsed == 1 ? stdout : stderr);
    return parsed == 1 ? 0 : 2;
  }
  fputs(DEV_ONLY_WARNING, stderr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* before any thread starts: all inherit it */
  vendor v = {.cache = a.cache, .valid_for = (uint32_t)a.valid_for};
  v.client = make_client(&a);
  if (!v.client)
    return 1;
  int port = 0;
  struct MHD_Daemon *d = start_http(&a, &v, &port);
  int rc = 1;
  if (d && (!a.port_file || write_port_file(a.port_file, port))) {
    printf("token-vendor listening on %s:%d\n", a.listen_host, port);
    fflush(stdout);
    wait_for_signal(&set);
    rc = 0;
  } else if (d) {
    fprintf(stderr, "token-vendor: cannot write %s\n", a.port_file);
  }
  if (d)
    MHD_stop_daemon(d);
  mim_client_free(v.client);
  return rc;
}
