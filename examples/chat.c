/*
 * chat: a terminal chat client built on libmomento-im.
 *
 *   chat --chat ROOM --name ALICE [--cache NAME] [--endpoint HOST:PORT [--plaintext]]
 *        [--key-file PATH | --token-url URL] [--moderated] [--history N]
 *
 * On join it prints the last N messages of the room (marked "[history]"), then every live
 * message as "HH:MM:SS name: text", and sends each line typed on stdin. "/quit", end of
 * input (Ctrl-D) or Ctrl-C leave the room cleanly. Connection trouble is reported on one
 * line each ("*** ...") while the library reconnects by itself.
 *
 * Two threads print: the client's event thread (messages, connection events) and the main
 * thread (errors of sends). One mutex keeps every output line whole.
 */
#define _GNU_SOURCE /* asprintf */
#include <momento/im.h>

#include "key_file.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CACHE "instant-messaging"
#define DEFAULT_HISTORY 20

typedef struct options {
  const char *chat;
  const char *name;
  const char *cache;
  const char *endpoint;
  const char *key_file;
  const char *token_url;
  bool plaintext;
  bool moderated;
  long history;
} options;

/* One formatted line held back until the join has delivered the whole history. */
typedef struct pending_line {
  char *text;
  bool from_history;
} pending_line;

typedef struct chat_state {
  pthread_mutex_t print_mu; /* guards stdout and every field below */
  bool joined;              /* false: lines go to `pending` */
  bool reconnecting;        /* a reconnect was reported and not yet its success */
  pending_line *pending;
  size_t n_pending, cap_pending;
  mim_client *client; /* for /stats; set once before input is read */
} chat_state;

/* Ctrl-C may land on any thread (gRPC has several): the handler only writes to this pipe,
 * which the main thread polls next to stdin. */
static int wake_pipe[2] = {-1, -1};

static void on_signal(int sig) {
  (void)sig;
  int saved = errno;
  if (write(wake_pipe[1], "x", 1) < 0) {
    /* nothing to do: the pipe is full, so the main thread wakes anyway */
  }
  errno = saved;
}

/* The name this tool was run as (build/examples/chat, or installed as mim-chat), for its
 * usage line. */
static const char *prog = "chat";

static void usage(FILE *out) {
  fprintf(out,
          "usage: %s --chat ROOM --name NAME [options]\n"
          "\n"
          "  --chat ROOM          chat room to join (required)\n"
          "  --name NAME          your display name (required)\n"
          "  --cache NAME         cache holding the room (default " DEFAULT_CACHE ")\n"
          "  --endpoint HOST:PORT server for every plane (default: from the key)\n"
          "  --plaintext          no TLS (default: TLS unless the endpoint is loopback)\n"
          "  --key-file PATH      file holding the API key or disposable token\n"
          "                       (default: the MOMENTO_API_KEY environment variable)\n"
          "  --token-url URL      get tokens from a token vendor instead (refreshed before they\n"
          "                       expire), e.g. http://127.0.0.1:8081/token?chat=ROOM&user=NAME\n"
          "  --moderated          send through the room's moderator (\"ROOM-input\")\n"
          "  --history N          show the last N messages on join (default %d, 0 = none)\n"
          "  --help               this text\n"
          "\n"
          "Type a line to send it; /stats shows what the client cost; /quit or Ctrl-D leaves.\n",
          prog, DEFAULT_HISTORY);
}

/* Prints one whole line under the print mutex (callers on any thread). */
static void say(chat_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(chat_state *st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  pthread_mutex_lock(&st->print_mu);
  vprintf(fmt, ap);
  putchar('\n');
  fflush(stdout);
  pthread_mutex_unlock(&st->print_mu);
  va_end(ap);
}

/* Control characters from other people must not drive our terminal (escape sequences):
 * C0 bytes, DEL, and the C1 range U+0080..U+009F (UTF-8 C2 80..C2 9F, e.g. CSI) become
 * '?'. */
static void sanitize(char *s) {
  for (unsigned char *p = (unsigned char *)s; *p; p++) {
    if (*p < 0x20 || *p == 0x7f) {
      *p = '?';
    } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
      p[0] = p[1] = '?';
      p++;
    }
  }
}

/* One line for a message, malloc'd (NULL when out of memory). */
static char *format_message(const mim_message *m, bool joined) {
  char when[16] = "--:--:--";
  time_t secs = (time_t)(m->timestamp_ms / 1000);
  struct tm tm;
  if (m->timestamp_ms > 0 && localtime_r(&secs, &tm))
    strftime(when, sizeof when, "%H:%M:%S", &tm);
  /* After the join, history-flagged messages are ones the library fetched from the list
   * after a reconnect (missed while the stream was down, or simply the first after it):
   * they are printed like live ones, their time shows how old they are. */
  const char *mark = m->from_history && !joined ? "[history] " : "";
  char *line = NULL;
  int n;
  if (m->kind != MIM_MESSAGE_CHAT)
    n = asprintf(&line, "%s%s (a value that is not a chat message, %zu bytes)%s%s", mark, when,
                 m->raw_len, *m->text ? ": " : "", m->text);
  else if (*m->publisher_id && strcmp(m->publisher_id, m->from) != 0)
    n = asprintf(&line, "%s%s %s (token %s): %s", mark, when, m->from, m->publisher_id, m->text);
  else
    n = asprintf(&line, "%s%s %s: %s", mark, when, m->from, m->text);
  if (n < 0)
    return NULL;
  sanitize(line);
  return line;
}

static void on_message(mim_session *session, const mim_message *m, void *user) {
  (void)session;
  chat_state *st = user;
  pthread_mutex_lock(&st->print_mu);
  char *line = format_message(m, st->joined);
  if (!line) {
    puts("*** out of memory: a message was not shown");
  } else if (st->joined) {
    puts(line);
    free(line);
  } else {
    if (st->n_pending == st->cap_pending) {
      size_t cap = st->cap_pending ? st->cap_pending * 2 : 64;
      pending_line *p = realloc(st->pending, cap * sizeof *p);
      if (!p) {
        free(line);
        pthread_mutex_unlock(&st->print_mu);
        return;
      }
      st->pending = p;
      st->cap_pending = cap;
    }
    st->pending[st->n_pending++] = (pending_line){line, m->from_history};
  }
  fflush(stdout);
  pthread_mutex_unlock(&st->print_mu);
}

/* A human sentence for the statuses a chat user can run into. */
static const char *explain(mim_status status) {
  switch (status) {
  case MIM_ERR_UNAUTHENTICATED:
    return "your token is invalid or has expired; get a new one";
  case MIM_ERR_PERMISSION_DENIED:
    return "your token does not allow this in this room";
  case MIM_ERR_UNAVAILABLE:
    return "the server cannot be reached";
  case MIM_ERR_DEADLINE_EXCEEDED:
    return "the server did not answer in time";
  case MIM_ERR_NOT_FOUND:
    return "the cache does not exist";
  case MIM_ERR_INVALID_ARGUMENT:
    return "the server or the library refused the request";
  default:
    return mim_strerror(status);
  }
}

static void on_event(mim_session *session, mim_subscription_state state, mim_status status,
                     const char *detail, void *user) {
  (void)session;
  chat_state *st = user;
  const char *d = detail && *detail ? detail : mim_status_name(status);
  if (state == MIM_SUB_RECONNECTING) {
    bool first;
    pthread_mutex_lock(&st->print_mu);
    first = !st->reconnecting;
    st->reconnecting = true;
    pthread_mutex_unlock(&st->print_mu);
    if (first)
      say(st, "*** connection lost (%s: %s); reconnecting...", explain(status), d);
  } else if (state == MIM_SUB_CONNECTED && status != MIM_OK) {
    say(st, "*** after reconnecting, some messages could not be recovered: %s (%s)",
        explain(status), d);
  } else if (state == MIM_SUB_CONNECTED) {
    bool was;
    pthread_mutex_lock(&st->print_mu);
    was = st->reconnecting;
    st->reconnecting = false;
    pthread_mutex_unlock(&st->print_mu);
    if (was)
      say(st, "*** reconnected");
  } else if (state == MIM_SUB_CLOSED && status != MIM_OK && status != MIM_ERR_CANCELLED) {
    pthread_mutex_lock(&st->print_mu);
    bool joined = st->joined; /* before that, the failed join says it all */
    pthread_mutex_unlock(&st->print_mu);
    if (joined)
      say(st, "*** disconnected for good: %s (%s); type /quit to leave", explain(status), d);
  }
}

/* Prints the held-back lines (only the last `history` of the history) and switches to
 * printing directly. */
static void flush_pending(chat_state *st, long history) {
  pthread_mutex_lock(&st->print_mu);
  size_t n_hist = 0;
  for (size_t i = 0; i < st->n_pending; i++)
    n_hist += st->pending[i].from_history;
  size_t skip = n_hist > (size_t)history ? n_hist - (size_t)history : 0;
  if (skip)
    printf("*** %zu earlier message%s not shown\n", skip, skip == 1 ? "" : "s");
  for (size_t i = 0; i < st->n_pending; i++) {
    if (st->pending[i].from_history && skip) {
      skip--;
    } else {
      puts(st->pending[i].text);
    }
    free(st->pending[i].text);
  }
  free(st->pending);
  st->pending = NULL;
  st->n_pending = st->cap_pending = 0;
  st->joined = true;
  fflush(stdout);
  pthread_mutex_unlock(&st->print_mu);
}

static void discard_pending(chat_state *st) {
  for (size_t i = 0; i < st->n_pending; i++)
    free(st->pending[i].text);
  free(st->pending);
  st->pending = NULL;
  st->n_pending = st->cap_pending = 0;
}

/* 0 ok, 1 help printed, 2 usage error (printed). */
static int parse_args(int argc, char **argv, options *o) {
  enum { O_CACHE = 256, O_ENDPOINT, O_PLAIN, O_KEYFILE, O_TOKENURL, O_MOD, O_HIST, O_HELP };
  static const struct option longs[] = {{"chat", required_argument, NULL, 'c'},
                                        {"name", required_argument, NULL, 'n'},
                                        {"cache", required_argument, NULL, O_CACHE},
                                        {"endpoint", required_argument, NULL, O_ENDPOINT},
                                        {"plaintext", no_argument, NULL, O_PLAIN},
                                        {"key-file", required_argument, NULL, O_KEYFILE},
                                        {"token-url", required_argument, NULL, O_TOKENURL},
                                        {"moderated", no_argument, NULL, O_MOD},
                                        {"history", required_argument, NULL, O_HIST},
                                        {"help", no_argument, NULL, O_HELP},
                                        {NULL, 0, NULL, 0}};
  *o = (options){.cache = DEFAULT_CACHE, .history = DEFAULT_HISTORY};
  int c;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    char *end;
    switch (c) {
    case 'c':
      o->chat = optarg;
      break;
    case 'n':
      o->name = optarg;
      break;
    case O_CACHE:
      o->cache = optarg;
      break;
    case O_ENDPOINT:
      o->endpoint = optarg;
      break;
    case O_PLAIN:
      o->plaintext = true;
      break;
    case O_KEYFILE:
      o->key_file = optarg;
      break;
    case O_TOKENURL:
      o->token_url = optarg;
      break;
    case O_MOD:
      o->moderated = true;
      break;
    case O_HIST:
      errno = 0;
      o->history = strtol(optarg, &end, 10);
      if (errno || *end || end == optarg || o->history < 0 || o->history > 100000) {
        fprintf(stderr, "chat: --history wants a number from 0 to 100000\n");
        return 2;
      }
      break;
    case O_HELP:
      usage(stdout);
      return 1;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "chat: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!o->chat || !*o->chat || !o->name || !*o->name) {
    fprintf(stderr, "chat: --chat ROOM and --name NAME are required (see --help)\n");
    return 2;
  }
  if (o->token_url && o->key_file) {
    fprintf(stderr, "chat: give --key-file or --token-url, not both\n");
    return 2;
  }
  if (o->plaintext && !o->endpoint) {
    fprintf(stderr, "chat: --plaintext needs --endpoint HOST:PORT\n");
    return 2;
  }
  return 0;
}

/* Library warnings (failed refetches and the like) go to stderr, whole lines. */
static void on_log(mim_log_level level, const char *message, void *user) {
  chat_state *st = user;
  if (level <= MIM_LOG_WARN)
    say(st, "*** %s", message);
}

static bool has_env_key(void) {
  const char *key = getenv("MOMENTO_API_KEY");
  return key && *key;
}

static mim_client *make_client(const options *o, chat_state *st) {
  char *key = NULL;
  if (o->key_file) {
    errno = 0;
    key = read_key_file(o->key_file);
    if (!key) {
      fprintf(stderr, "chat: cannot read a key from %s: %s\n", o->key_file,
              errno ? strerror(errno) : "empty file");
      return NULL;
    }
  } else if (!o->token_url && !has_env_key()) {
    fprintf(stderr, "chat: no key: give --key-file PATH, --token-url URL or set MOMENTO_API_KEY\n");
    return NULL;
  }
  mim_client_options co;
  mim_client_options_init(&co);
  co.api_key = key; /* NULL: the library reads MOMENTO_API_KEY */
  co.token_url = o->token_url;
  if (o->endpoint)
    co.cache_host = co.control_host = co.token_host = o->endpoint;
  co.tls = o->plaintext ? MIM_TLS_OFF : MIM_TLS_AUTO;
  co.log_fn = on_log;
  co.log_level = MIM_LOG_WARN;
  co.log_user = st;
  mim_client *client = NULL;
  mim_status s = mim_client_create(&co, &client);
  free_key(key);
  if (s != MIM_OK) {
    fprintf(stderr, "chat: %s: %s (%s)\n",
            o->token_url ? "cannot get a token from the token URL" : "cannot create the client",
            mim_status_name(s), mim_last_error_detail());
    return NULL;
  }
  return client;
}

/* What the client cost so far, as hosted Momento counts it (see mim_client_stats). */
static void show_stats(chat_state *st) {
  mim_client_stats cs = MIM_CLIENT_STATS_INIT;
  if (mim_client_stats_get(st->client, &cs) != MIM_OK)
    return;
  say(st,
      "*** %llu calls (%llu failed), %llu cache + %llu topic operations, %llu messages "
      "received, %llu/%llu bytes sent/received, %llu retries, %llu throttled",
      (unsigned long long)cs.calls, (unsigned long long)cs.failed_calls,
      (unsigned long long)cs.cache_operations, (unsigned long long)cs.topic_operations,
      (unsigned long long)cs.messages_received, (unsigned long long)cs.bytes_sent,
      (unsigned long long)cs.bytes_received, (unsigned long long)cs.retries,
      (unsigned long long)cs.throttled);
}

/* Handles one input line; false when it asks to leave. */
static bool handle_line(chat_state *st, mim_session *session, char *line) {
  size_t n = strlen(line);
  if (n > 0 && line[n - 1] == '\r')
    line[--n] = '\0';
  if (n == 0)
    return true;
  if (strcmp(line, "/quit") == 0)
    return false;
  if (strcmp(line, "/stats") == 0) {
    show_stats(st);
    return true;
  }
  if (line[0] == '/' && line[1] != '/') {
    say(st, "*** unknown command %s (/stats, /quit; start a line with // to send a slash)", line);
    return true;
  }
  const char *text = line[0] == '/' ? line + 1 : line;
  mim_status s = mim_send(session, text, NULL);
  if (s != MIM_OK)
    say(st, "*** not sent: %s (%s: %s)", explain(s), mim_status_name(s), mim_last_error_detail());
  return true;
}

/* Reads stdin line by line with read(2), so a signal (through wake_pipe) can end the wait
 * without stdio buffering hiding lines from poll. Returns at /quit, EOF or a signal. */
static void input_loop(chat_state *st, mim_session *session) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf)
    return;
  for (;;) {
    struct pollfd fds[2] = {{.fd = 0, .events = POLLIN}, {.fd = wake_pipe[0], .events = POLLIN}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (fds[1].revents) { /* Ctrl-C or SIGTERM */
      if (isatty(1))
        say(st, "%s", ""); /* end the line the terminal's "^C" echo is on */
      break;
    }
    if (len + 1 >= cap) {
      char *bigger = cap < (1u << 20) ? realloc(buf, cap * 2) : NULL;
      if (!bigger) {
        say(st, "*** line too long, dropped");
        len = 0;
        continue;
      }
      buf = bigger;
      cap *= 2;
    }
    ssize_t got = read(0, buf + len, cap - len - 1);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) { /* EOF (Ctrl-D) or error: a last unterminated line still counts */
      buf[len] = '\0';
      if (len)
        handle_line(st, session, buf);
      break;
    }
    len += (size_t)got;
    buf[len] = '\0';
    char *start = buf, *nl;
    bool go_on = true;
    while (go_on && (nl = memchr(start, '\n', len - (size_t)(start - buf)))) {
      *nl = '\0';
      go_on = handle_line(st, session, start);
      start = nl + 1;
    }
    if (!go_on)
      break;
    len -= (size_t)(start - buf);
    memmove(buf, start, len);
  }
  free(buf);
}

int main(int argc, char **argv) {
  prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc == 1 ? 0 : 2;

  /* Ctrl-C and SIGTERM wake the input loop so we leave the room properly. */
  if (pipe(wake_pipe) != 0) {
    perror("chat: pipe");
    return 1;
  }
  fcntl(wake_pipe[1], F_SETFL, O_NONBLOCK);
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  chat_state st = {.joined = false};
  pthread_mutex_init(&st.print_mu, NULL);
  mim_client *client = make_client(&o, &st);
  if (!client) {
    pthread_mutex_destroy(&st.print_mu);
    return 1;
  }
  st.client = client;
  mim_join_options jo;
  mim_join_options_init(&jo);
  jo.display_name = o.name;
  jo.mode = o.moderated ? MIM_CHAT_MODERATED : MIM_CHAT_CLIENT_ONLY;
  jo.on_event = on_event;
  mim_session *session = NULL;
  mim_status s = mim_join(client, o.cache, o.chat, &jo, on_message, &st, &session);
  if (s != MIM_OK) {
    fprintf(stderr, "chat: cannot join %s: %s (%s: %s)\n", o.chat, explain(s), mim_status_name(s),
            mim_last_error_detail());
    discard_pending(&st); /* no callback runs after a failed join */
    mim_client_free(client);
    pthread_mutex_destroy(&st.print_mu);
    return 1;
  }
  flush_pending(&st, o.history);
  say(&st, "*** joined %s as %s (%s mode); type a line to send it, /quit to leave", o.chat, o.name,
      o.moderated ? "moderated" : "client-only");

  input_loop(&st, session);

  mim_leave(session);
  mim_client_free(client);
  say(&st, "*** left %s", o.chat);
  pthread_mutex_destroy(&st.print_mu);
  close(wake_pipe[0]);
  close(wake_pipe[1]);
  return 0;
}
