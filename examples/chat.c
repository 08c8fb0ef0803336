/*
 * chat: a terminal chat client built on libmomento-im.
 *
 *   chat --chat ROOM --name ALICE [--cache NAME] [--endpoint HOST:PORT [--plaintext]]
 *        [--key-file PATH | --token-url URL] [--moderated] [--history N] [--plain]
 *
 * On join it shows the last N messages of the room (marked "[history]"), then every live
 * message as "HH:MM:SS name: text" (messages of another day as "MM-DD HH:MM name: text"),
 * and sends each line typed. Each message carries a number (#N) by which /reply N TEXT,
 * /edit N TEXT, /delete N and /react N KEY name it; edits, deletions and reactions
 * (on_update) change its line in place. /who lists who is here (presence is on), the
 * typing line shows who is typing, and the unread count since the last visit is shown
 * on joining (read markers, written at most once a second as messages are shown).
 * /help lists the commands; /dm USER moves to the direct chat with USER
 * (mim_direct_chat_id); /quit, Ctrl-D or Ctrl-C leave the room cleanly.
 * Connection trouble is reported on one line each ("*** ...") while the library
 * reconnects by itself.
 *
 * Two faces. When stdin and stdout are terminals: a full-screen ncurses UI with the
 * messages above (scrollback with PgUp/PgDn, a colour per sender), a status line, and an
 * input line at the bottom that incoming messages never touch. Otherwise (pipes, scripts,
 * the demo) or with --plain: one plain line per message on stdout, lines read from stdin.
 *
 * Threads: library callbacks run on the client's event thread and must neither block
 * nor touch the terminal (ncurses is not thread-safe). They turn what happened into an
 * event, queue it and write a byte to a pipe; the main thread polls that pipe together
 * with stdin and does all the output.
 */
#define _GNU_SOURCE /* asprintf */
#define NCURSES_WIDECHAR 1
#include <momento/im.h>

#include "key_file.h"

#include <ctype.h>
#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
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
#include <wchar.h>
#include <wctype.h>

#define DEFAULT_CACHE "instant-messaging"
#define DEFAULT_HISTORY 20
#define SCROLLBACK_LINES 5000   /* lines kept for PgUp; the oldest 10% go when full */
#define INPUT_MAX 4096          /* characters on the input line */
#define MAX_WRAP_ROWS 256       /* rows one message may take on screen */
#define SHOWN_TEXT_BYTES 60     /* of a failed message's text in its "not sent" line */
#define RECALL_LINES 100        /* typed lines Up/Down bring back */
#define SHOWN_MESSAGES 1024     /* messages /reply, /edit... can name by number */
#define SNIPPET_BYTES 40        /* of a message's text beside a reply to it */
#define NAME_BYTES 32           /* of a sender's name in the table and the typing line */
#define MY_KEYS_BYTES 128       /* our reaction keys on one message */
#define MAX_TYPING 4            /* names on the typing line */
#define MARK_READ_EVERY_MS 1000 /* read markers are written at most this often */

typedef struct options {
  const char *chat;
  const char *name;
  const char *cache;
  const char *endpoint;
  const char *key_file;
  const char *token_url;
  bool plaintext;
  bool moderated;
  bool plain;
  long history;
} options;

typedef enum conn_state { CONN_CONNECTED, CONN_RECONNECTING, CONN_CLOSED } conn_state;

typedef enum event_kind {
  EV_LINE,        /* a line to show */
  EV_SEND_RESULT, /* the final outcome of a queued send */
  EV_CONN,        /* the subscription's state changed (for the status line) */
  EV_UPDATE,      /* a shown message changed (edit, deletion, reactions) */
  EV_PRESENCE     /* someone joined, left, started or stopped typing */
} event_kind;

/* What a callback hands to the main thread. Owned by the queue, then by the taker. */
typedef struct event {
  event_kind kind;
  char *text;        /* EV_LINE: the line; EV_SEND_RESULT: the message id */
  char *detail;      /* EV_SEND_RESULT: the library's detail */
  mim_status status; /* EV_SEND_RESULT */
  size_t who_off;    /* EV_LINE: the sender's name within text, coloured on screen */
  size_t who_len;    /* 0: a line of our own ("*** ...") */
  unsigned colour;   /* 1..N_COLOURS from the sender's name */
  bool history;      /* EV_LINE: history shown on join (subject to --history) */
  bool from_log;     /* EV_LINE: a library warning */
  conn_state conn;   /* EV_CONN */
  /* EV_LINE of a message and EV_UPDATE: the main thread numbers it ("#N ", after the
   * mark) and shows what it replies to (before the body). */
  char msg_id[MIM_MESSAGE_ID_SIZE * 2]; /* "" for lines that are no message */
  char reply_to[MIM_MESSAGE_ID_SIZE * 2];
  char snippet[SNIPPET_BYTES + 1]; /* the start of its text, for replies to it */
  char from[NAME_BYTES + 1];
  char my_keys[MY_KEYS_BYTES]; /* our reactions on it, each followed by '\n' */
  size_t mark_len, body_off;   /* "[history] " and where the text starts */
  int what;                    /* EV_UPDATE: mim_update_kind; EV_PRESENCE: the change */
  struct event *next;
} event;

/* One line of the scrollback. */
typedef struct ui_line {
  char *text;
  size_t who_off, who_len;
  unsigned colour;
  unsigned num; /* the message's number, 0 for other lines */
} ui_line;

/* A shown message, by the number beside it: what the commands need to name it. */
typedef struct shown_msg {
  unsigned num; /* 0: a free slot */
  char id[MIM_MESSAGE_ID_SIZE * 2];
  char from[NAME_BYTES + 1];
  char snippet[SNIPPET_BYTES + 1];
  char my_keys[MY_KEYS_BYTES];
} shown_msg;

/* A message mim_send accepted, until its outcome is known: failures show its text. */
typedef struct inflight {
  char id[MIM_MESSAGE_ID_SIZE];
  char *text;
  bool command; /* an /edit, /delete or /react line: shown on failure, never retried */
} inflight;

typedef struct chat_state {
  /* Shared with the callbacks: guarded by mu. */
  pthread_mutex_t mu;
  event *head, *tail;
  bool joined;       /* false: history messages are marked, held for the --history cut */
  bool reconnecting; /* a reconnect was reported and not yet its success */
  int event_pipe[2]; /* a byte per queued event wakes the main thread */

  /* Main thread only. */
  options *o; /* /dm changes its chat (and token_url) */
  mim_client *client;
  mim_session *session;
  bool curses; /* the full-screen UI is on */
  bool left;   /* mim_leave returned: no /retry any more */
  conn_state conn;
  ui_line *lines;
  size_t n_lines;
  size_t scroll; /* lines scrolled back from the newest (0: following new ones) */
  size_t unread; /* lines that arrived while scrolled back */
  wchar_t input[INPUT_MAX + 1];
  size_t in_len, in_cur;
  wchar_t *recall[RECALL_LINES]; /* lines typed, oldest first */
  size_t n_recall, recall_pos;   /* recall_pos == n_recall: a new line */
  inflight *sent;
  size_t n_sent, cap_sent;
  char **failed; /* texts of failed sends, oldest first, for /retry */
  size_t n_failed, cap_failed;
  int saved_stderr; /* stderr while the screen is ours (it goes to /dev/null then) */
  char dm_chat[MIM_DIRECT_CHAT_ID_SIZE]; /* after /dm: the direct chat's id (o->chat) */
  char *dm_url;                          /* after /dm with a token URL: o->token_url */
  char me[129];                          /* our user id: reactions by it are ours */
  shown_msg shown[SHOWN_MESSAGES];       /* slot num % SHOWN_MESSAGES */
  unsigned next_num;
  char typing[MAX_TYPING][NAME_BYTES + 1]; /* who is typing ("" free) */
  size_t unread_msgs;                      /* messages not marked read (status line) */
  char newest_id[MIM_MESSAGE_ID_SIZE * 2]; /* the newest message shown */
  bool mark_due;                           /* newest_id is not marked read yet */
  bool marks_off;                          /* marking failed: no more tries */
  struct timespec last_mark;
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

/* The other tools' names go with ours: "mim-" when installed, none in build/examples. */
static const char *tool_prefix(void) {
  return strncmp(prog, "mim-", 4) == 0 ? "mim-" : "";
}

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
          "                       expire); quote it, the shell would cut it at '&'\n"
          "  --moderated          send through the room's moderator (\"ROOM-input\"); the token\n"
          "                       must be a moderated one (mode=moderated)\n"
          "  --history N          show the last N messages on join (default %d, 0 = none)\n"
          "  --plain              plain lines even on a terminal (the default when stdin or\n"
          "                       stdout is not a terminal)\n"
          "  --help               this text\n"
          "\n"
          "In the room: type a line and Enter sends it; /help lists the commands (/stats,\n"
          "/retry, /reply N TEXT, /edit N TEXT, /delete N, /react N KEY, /who, /dm USER,\n"
          "/quit), where N is the number shown beside a message (#N); PgUp/PgDn scroll\n"
          "back. Edits, deletions and reactions change a message's line in place; who is\n"
          "typing shows above the status line, the unread count in it. /dm USER\n"
          "moves you to your direct chat with USER: with --token-url the vendor is asked for\n"
          "its token (dm=USER in place of chat=), with a key the key must allow that chat.\n"
          "\n"
          "Example, everything on this machine (the token vendor is for development only,\n"
          "see its --help):\n"
          "  mim-local --root-key-file /tmp/root.key --cache instant-messaging &\n"
          "  %stoken-vendor --key-file /tmp/root.key --endpoint 127.0.0.1:8080 &\n"
          "  %s --chat lobby --name alice --endpoint 127.0.0.1:8080 \\\n"
          "       --token-url 'http://127.0.0.1:8081/token?chat=lobby&user=alice&mode=client'\n",
          prog, DEFAULT_HISTORY, tool_prefix(), prog);
}

/* ---- events: from the callbacks to the main thread ---- */

static void queue_push(chat_state *st, event *ev) {
  pthread_mutex_lock(&st->mu);
  if (st->tail)
    st->tail->next = ev;
  else
    st->head = ev;
  st->tail = ev;
  pthread_mutex_unlock(&st->mu);
  if (write(st->event_pipe[1], "e", 1) < 0) {
    /* the pipe is full: the main thread has a wake-up pending anyway */
  }
}

/* Takes every queued event (oldest first) and empties the wake-up pipe. */
static event *queue_take(chat_state *st) {
  char sink[256];
  while (read(st->event_pipe[0], sink, sizeof sink) > 0)
    ;
  pthread_mutex_lock(&st->mu);
  event *all = st->head;
  st->head = st->tail = NULL;
  pthread_mutex_unlock(&st->mu);
  return all;
}

static void event_free(event *ev) {
  free(ev->text);
  free(ev->detail);
  free(ev);
}

/* Queues a line of our own ("*** ..."); from any thread. Out of memory: dropped. */
static void notice(chat_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void notice(chat_state *st, const char *fmt, ...) {
  event *ev = calloc(1, sizeof *ev);
  va_list ap;
  va_start(ap, fmt);
  int n = ev ? vasprintf(&ev->text, fmt, ap) : -1;
  va_end(ap);
  if (n < 0) {
    free(ev);
    return;
  }
  ev->kind = EV_LINE;
  queue_push(st, ev);
}

static void conn_changed(chat_state *st, conn_state conn) {
  event *ev = calloc(1, sizeof *ev);
  if (!ev)
    return;
  ev->kind = EV_CONN;
  ev->conn = conn;
  queue_push(st, ev);
}

/* ---- formatting ---- */

/* Control characters from other people must not drive our terminal (escape sequences):
 * C0 bytes, DEL, and the C1 range U+0080..U+009F (UTF-8 C2 80..C2 9F, e.g. CSI) become
 * '?'. Lengths stay the same. */
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

/* A message's time: "HH:MM:SS" today, "MM-DD HH:MM" another day of this year, else
 * "YYYY-MM-DD HH:MM" (local time), so old history cannot pass for today's. */
static void format_when(int64_t timestamp_ms, time_t now, char *out, size_t size) {
  time_t secs = (time_t)(timestamp_ms / 1000);
  struct tm tm, today;
  snprintf(out, size, "--:--:--");
  if (timestamp_ms <= 0 || !localtime_r(&secs, &tm) || !localtime_r(&now, &today))
    return;
  const char *fmt = "%Y-%m-%d %H:%M";
  if (tm.tm_year == today.tm_year)
    fmt = tm.tm_yday == today.tm_yday ? "%H:%M:%S" : "%m-%d %H:%M";
  strftime(out, size, fmt, &tm);
}

#define N_COLOURS 6

/* A stable colour per sender name (FNV-1a), so a person keeps theirs across sessions. */
static unsigned colour_of(const char *name) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)name; *p; p++)
    h = (h ^ *p) * 16777619u;
  return 1 + h % N_COLOURS;
}

/* Copies at most size-1 bytes of src, whole UTF-8 characters, control bytes sanitized. */
static void copy_cut(char *dst, size_t size, const char *src) {
  size_t n = strlen(src), cut = n < size - 1 ? n : size - 1;
  while (cut < n && cut > 0 && ((unsigned char)src[cut] & 0xc0) == 0x80)
    cut--;
  memcpy(dst, src, cut);
  dst[cut] = '\0';
  sanitize(dst);
}

/* The reactions after a message's text: " [+1 alice, bob] [wow carol]"; our own keys go
 * to my_keys (each followed by a newline) so /react knows what to toggle. */
static char *reactions_text(const mim_message *m, const char *me, char *my_keys, size_t size) {
  char *out = NULL;
  size_t len = 0, mine = 0;
  my_keys[0] = '\0';
  if (!m->n_reactions)
    return NULL; /* most messages: no allocation */
  FILE *f = open_memstream(&out, &len);
  if (!f)
    return NULL;
  for (size_t i = 0; i < m->n_reactions; i++) {
    const mim_reaction *r = &m->reactions[i];
    fprintf(f, " [%s", r->key);
    for (size_t u = 0; u < r->count; u++) {
      fprintf(f, "%s%s", u ? ", " : " ", r->users[u]);
      size_t k = strlen(r->key);
      if (strcmp(r->users[u], me) == 0 && mine + k + 2 <= size) {
        memcpy(my_keys + mine, r->key, k);
        mine += k;
        my_keys[mine++] = '\n';
        my_keys[mine] = '\0';
      }
    }
    fputc(']', f);
  }
  return fclose(f) == 0 ? out : (free(out), NULL);
}

/* The line of a chat message, without its number: "[history] WHEN FROM: TEXT" and its
 * state (edited, deleted, reactions). */
static int message_text(event *ev, const mim_message *m, const char *mark, const char *when,
                        const char *me) {
  char *reactions = reactions_text(m, me, ev->my_keys, sizeof ev->my_keys);
  const char *text = m->deleted ? "(deleted)" : m->text;
  const char *edited = m->edited && !m->deleted ? " (edited)" : "";
  int n;
  if (*m->publisher_id && strcmp(m->publisher_id, m->from) != 0)
    n = asprintf(&ev->text, "%s%s %s (token %s): %s%s%s", mark, when, m->from, m->publisher_id,
                 text, edited, reactions ? reactions : "");
  else
    n = asprintf(&ev->text, "%s%s %s: %s%s%s", mark, when, m->from, text, edited,
                 reactions ? reactions : "");
  if (n >= 0)
    ev->body_off = (size_t)n - strlen(text) - strlen(edited) - (reactions ? strlen(reactions) : 0);
  free(reactions);
  return n;
}

/* One event for a message (NULL when out of memory). */
static event *message_event(const mim_message *m, bool joined, const char *me) {
  char when[32];
  format_when(m->timestamp_ms, time(NULL), when, sizeof when);
  /* After the join, history-flagged messages are ones the library fetched from the list
   * after a reconnect (missed while the stream was down): they are shown like live ones,
   * their time shows how old they are. */
  bool history = m->from_history && !joined;
  const char *mark = history ? "[history] " : "";
  event *ev = calloc(1, sizeof *ev);
  if (!ev)
    return NULL;
  int n;
  if (m->kind != MIM_MESSAGE_CHAT)
    n = asprintf(&ev->text, "%s%s (a value that is not a chat message, %zu bytes)%s%s", mark, when,
                 m->raw_len, *m->text ? ": " : "", m->text);
  else
    n = message_text(ev, m, mark, when, me);
  if (n < 0) {
    free(ev);
    return NULL;
  }
  sanitize(ev->text);
  ev->kind = EV_LINE;
  ev->history = history;
  if (m->kind == MIM_MESSAGE_CHAT) {
    ev->who_off = strlen(mark) + strlen(when) + 1;
    ev->who_len = strlen(m->from);
    ev->colour = colour_of(m->from);
    ev->mark_len = strlen(mark);
    copy_cut(ev->msg_id, sizeof ev->msg_id, m->id);
    copy_cut(ev->reply_to, sizeof ev->reply_to, m->reply_to);
    copy_cut(ev->snippet, sizeof ev->snippet, m->deleted ? "(deleted)" : m->text);
    copy_cut(ev->from, sizeof ev->from, m->from);
  }
  return ev;
}

/* ---- library callbacks (event thread): queue, never print ---- */

static void on_message(mim_session *session, const mim_message *m, void *user) {
  (void)session;
  chat_state *st = user;
  pthread_mutex_lock(&st->mu);
  bool joined = st->joined;
  pthread_mutex_unlock(&st->mu);
  if (m->mine && *m->sender_id) /* only this thread reads st->me after the join */
    snprintf(st->me, sizeof st->me, "%s", m->sender_id);
  event *ev = message_event(m, joined, st->me);
  if (ev)
    queue_push(st, ev);
  else
    notice(st, "*** out of memory: a message was not shown");
}

/* An edit, deletion or reaction: the message's new line, shown in place of the old. */
static void on_update(mim_session *session, const mim_message *m, mim_update_kind what,
                      void *user) {
  (void)session;
  chat_state *st = user;
  event *ev = message_event(m, true, st->me);
  if (!ev)
    return;
  ev->kind = EV_UPDATE;
  ev->what = (int)what;
  queue_push(st, ev);
}

static void on_presence(mim_session *session, mim_presence_change change, const mim_member *member,
                        void *user) {
  (void)session;
  event *ev = calloc(1, sizeof *ev);
  if (!ev)
    return;
  ev->kind = EV_PRESENCE;
  ev->what = (int)change;
  copy_cut(ev->from, sizeof ev->from,
           *member->display_name ? member->display_name : member->user_id);
  queue_push(user, ev);
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

/* Sets the reconnecting flag; returns its previous value. */
static bool swap_reconnecting(chat_state *st, bool now) {
  pthread_mutex_lock(&st->mu);
  bool was = st->reconnecting;
  st->reconnecting = now;
  pthread_mutex_unlock(&st->mu);
  return was;
}

static void on_event(mim_session *session, mim_subscription_state state, mim_status status,
                     const char *detail, void *user) {
  (void)session;
  chat_state *st = user;
  const char *d = detail && *detail ? detail : mim_status_name(status);
  if (state == MIM_SUB_RECONNECTING) {
    if (!swap_reconnecting(st, true)) {
      conn_changed(st, CONN_RECONNECTING);
      notice(st, "*** connection lost (%s: %s); reconnecting...", explain(status), d);
    }
  } else if (state == MIM_SUB_CONNECTED && status != MIM_OK) {
    notice(st, "*** after reconnecting, some messages could not be recovered: %s (%s)",
           explain(status), d);
  } else if (state == MIM_SUB_CONNECTED) {
    if (swap_reconnecting(st, false)) {
      conn_changed(st, CONN_CONNECTED);
      notice(st, "*** reconnected");
    }
  } else if (state == MIM_SUB_CLOSED && status != MIM_OK && status != MIM_ERR_CANCELLED) {
    pthread_mutex_lock(&st->mu);
    bool joined = st->joined; /* before that, the failed join says it all */
    pthread_mutex_unlock(&st->mu);
    conn_changed(st, CONN_CLOSED);
    if (joined)
      notice(st, "*** disconnected for good: %s (%s); type /quit to leave", explain(status), d);
  }
}

static void on_send_result(mim_session *session, const char *message_id, mim_status status,
                           const char *detail, void *user) {
  (void)session;
  chat_state *st = user;
  event *ev = calloc(1, sizeof *ev);
  if (!ev || !(ev->text = strdup(message_id))) {
    free(ev);
    notice(st, "*** out of memory: the outcome of a message is unknown");
    return;
  }
  ev->kind = EV_SEND_RESULT;
  ev->status = status;
  ev->detail = strdup(detail ? detail : "");
  queue_push(st, ev);
}

/* Library warnings (failed refetches and the like), one line each. */
static void on_log(mim_log_level level, const char *message, void *user) {
  if (level > MIM_LOG_WARN)
    return;
  event *ev = calloc(1, sizeof *ev);
  if (!ev || asprintf(&ev->text, "*** %s", message) < 0) {
    free(ev);
    return;
  }
  ev->kind = EV_LINE;
  ev->from_log = true;
  queue_push(user, ev);
}

/* ---- the screen (main thread only) ---- */

/* Decodes the character at s[i]: its length in bytes, its columns in *width and whether
 * it is a space. Bytes that are not UTF-8 count as one column each. */
static size_t next_char(const char *s, size_t len, size_t i, mbstate_t *mbs, int *width,
                        bool *space) {
  wchar_t wc;
  size_t n = mbrtowc(&wc, s + i, len - i, mbs);
  if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
    memset(mbs, 0, sizeof *mbs);
    *width = 1;
    *space = false;
    return 1;
  }
  *width = wcwidth(wc) < 0 ? 1 : wcwidth(wc);
  *space = wc == L' ';
  return n;
}

/* Byte offsets where each screen row of s starts when wrapped at cols columns, after the
 * row's last space when it has one (words stay whole); returns the number of rows (at
 * least 1, at most max). */
static size_t wrap_rows(const char *s, int cols, size_t *starts, size_t max) {
  size_t rows = 1, len = strlen(s), i = 0, after_space = 0;
  int used = 0, used_to_space = 0;
  mbstate_t mbs;
  memset(&mbs, 0, sizeof mbs);
  starts[0] = 0;
  while (i < len) {
    int w;
    bool space;
    size_t n = next_char(s, len, i, &mbs, &w, &space);
    if (used + w > cols && used > 0) {
      if (rows == max)
        break;
      bool at_space = after_space > starts[rows - 1];
      starts[rows++] = at_space ? after_space : i;
      used = at_space ? used - used_to_space : 0;
    }
    used += w;
    i += n;
    if (space) {
      after_space = i;
      used_to_space = used;
    }
  }
  starts[rows] = i;
  return rows;
}

/* Writes bytes [a, b) of a line, the sender's name in its colour. */
static void draw_span(const ui_line *l, size_t a, size_t b) {
  size_t wa = l->who_off, wb = l->who_off + l->who_len;
  if (!l->who_len) { /* our own lines stand out */
    attron(A_BOLD);
    addnstr(l->text + a, (int)(b - a));
    attroff(A_BOLD);
    return;
  }
  size_t cut1 = wa < a ? a : (wa > b ? b : wa), cut2 = wb < cut1 ? cut1 : (wb > b ? b : wb);
  addnstr(l->text + a, (int)(cut1 - a));
  attr_t colour = has_colors() ? COLOR_PAIR((short)l->colour) : A_NORMAL;
  attron(colour | A_BOLD);
  addnstr(l->text + cut1, (int)(cut2 - cut1));
  attroff(colour | A_BOLD);
  addnstr(l->text + cut2, (int)(b - cut2));
}

/* The message area: rows 0..height-1, newest line (minus the scroll) at the bottom. */
static void draw_messages(const chat_state *st, int height, int cols) {
  static size_t starts[MAX_WRAP_ROWS + 1];
  int bottom = height - 1;
  if (st->n_lines == 0)
    return;
  for (size_t k = st->n_lines - st->scroll; k-- > 0 && bottom >= 0;) {
    const ui_line *l = &st->lines[k];
    size_t rows = wrap_rows(l->text, cols, starts, MAX_WRAP_ROWS);
    int top = bottom - (int)rows + 1;
    for (size_t r = 0; r < rows; r++) {
      if (top + (int)r < 0)
        continue;
      move(top + (int)r, 0);
      draw_span(l, starts[r], starts[r + 1]);
    }
    bottom = top - 1;
  }
}

static void draw_status(const chat_state *st, int row, int cols) {
  static const char *names[] = {"connected", "reconnecting...", "closed"};
  char left[512], right[128] = "/help ";
  int n = snprintf(left, sizeof left, " %s as %s | %s", st->o->chat, st->o->name, names[st->conn]);
  if (st->unread_msgs && n > 0 && (size_t)n < sizeof left)
    snprintf(left + n, sizeof left - (size_t)n, " | %zu unread", st->unread_msgs);
  if (st->scroll)
    snprintf(right, sizeof right, "scrolled back; %zu unread (PgDn) ", st->unread);
  attron(A_REVERSE);
  mvhline(row, 0, ' ', cols);
  mvaddnstr(row, 0, left, cols);
  int rw = (int)strlen(right);
  if ((int)strlen(left) + rw < cols)
    mvaddstr(row, cols - rw, right);
  attroff(A_REVERSE);
}

static int wide_width(const wchar_t *s, size_t n) {
  int w = wcswidth(s, n);
  return w < 0 ? (int)n : w;
}

/* The input line: prompt, then as much of the text as fits with the cursor visible. */
static void draw_input(const chat_state *st, int row, int cols) {
  char prompt[96];
  snprintf(prompt, sizeof prompt, "%.64s> ", st->o->name);
  int pw = (int)strlen(prompt);
  if (pw > cols / 2)
    pw = 0;
  int room = cols - pw - 1;
  size_t first = 0;
  while (first < st->in_cur && wide_width(st->input + first, st->in_cur - first) > room)
    first++;
  size_t last = first;
  while (last < st->in_len && wide_width(st->input + first, last + 1 - first) <= room)
    last++;
  move(row, 0);
  clrtoeol();
  addnstr(prompt, pw);
  addnwstr(st->input + first, (int)(last - first));
  move(row, pw + wide_width(st->input + first, st->in_cur - first));
}

/* "bob is typing...", "bob and carol are typing...": into out; false when nobody is. */
static bool typing_text(const chat_state *st, char *out, size_t size) {
  size_t n = 0, len = 0;
  out[0] = '\0';
  for (size_t i = 0; i < MAX_TYPING; i++) {
    if (!st->typing[i][0])
      continue;
    int w = snprintf(out + len, size - len, "%s%s", n ? ", " : " ", st->typing[i]);
    len = w > 0 && (size_t)w < size - len ? len + (size_t)w : len;
    n++;
  }
  if (n)
    snprintf(out + len, size - len, " %s typing\u2026", n == 1 ? "is" : "are");
  return n > 0;
}

static void draw(chat_state *st) {
  int rows, cols;
  getmaxyx(stdscr, rows, cols);
  erase();
  char typing[256];
  bool someone = typing_text(st, typing, sizeof typing);
  if (rows >= 4 && cols >= 10 && someone) { /* the typing line goes above the status */
    draw_messages(st, rows - 3, cols);
    mvaddnstr(rows - 3, 0, typing, cols);
    draw_status(st, rows - 2, cols);
  } else if (rows >= 3 && cols >= 10) {
    draw_messages(st, rows - 2, cols);
    draw_status(st, rows - 2, cols);
  }
  draw_input(st, rows - 1, cols);
  refresh();
}

static void ui_start(chat_state *st) {
  fflush(stderr);
  st->saved_stderr = dup(2);
  int devnull = open("/dev/null", O_WRONLY);
  if (devnull >= 0) { /* a stray library or gRPC message would scribble over the screen */
    dup2(devnull, 2);
    close(devnull);
  }
  initscr();
  cbreak();
  noecho();
  nonl();
  keypad(stdscr, TRUE);
  nodelay(stdscr, TRUE);
  set_escdelay(25);
  if (has_colors()) {
    static const short palette[N_COLOURS] = {COLOR_RED,  COLOR_GREEN,   COLOR_YELLOW,
                                             COLOR_BLUE, COLOR_MAGENTA, COLOR_CYAN};
    start_color();
    use_default_colors();
    for (short i = 0; i < N_COLOURS; i++)
      init_pair((short)(i + 1), palette[i], -1);
  }
  st->curses = true;
}

static void ui_stop(chat_state *st) {
  if (!st->curses)
    return;
  endwin();
  st->curses = false;
  if (st->saved_stderr >= 0) {
    dup2(st->saved_stderr, 2);
    close(st->saved_stderr);
    st->saved_stderr = -1;
  }
}

/* Adds a line to the scrollback (or prints it in plain mode). Takes ownership of text. */
static void show(chat_state *st, char *text, size_t who_off, size_t who_len, unsigned colour,
                 unsigned num) {
  if (!st->curses) {
    puts(text);
    fflush(stdout);
    free(text);
    return;
  }
  if (!st->lines && !(st->lines = calloc(SCROLLBACK_LINES, sizeof *st->lines))) {
    free(text);
    return;
  }
  if (st->n_lines == SCROLLBACK_LINES) {
    size_t drop = SCROLLBACK_LINES / 10;
    for (size_t i = 0; i < drop; i++)
      free(st->lines[i].text);
    memmove(st->lines, st->lines + drop, (st->n_lines - drop) * sizeof *st->lines);
    st->n_lines -= drop;
    st->scroll = st->scroll > st->n_lines - 1 ? st->n_lines - 1 : st->scroll;
  }
  st->lines[st->n_lines++] = (ui_line){text, who_off, who_len, colour, num};
  if (st->scroll) { /* keep the view still while the person reads back */
    st->scroll++;
    st->unread++;
  }
}

/* A line of our own, shown at once (main thread). */
static void say(chat_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(chat_state *st, const char *fmt, ...) {
  char *text = NULL;
  va_list ap;
  va_start(ap, fmt);
  int n = vasprintf(&text, fmt, ap);
  va_end(ap);
  if (n >= 0)
    show(st, text, 0, 0, 0, 0);
}

static void scroll_by(chat_state *st, long delta) {
  long max = st->n_lines ? (long)st->n_lines - 1 : 0;
  long s = (long)st->scroll + delta;
  st->scroll = (size_t)(s < 0 ? 0 : s > max ? max : s);
  if (!st->scroll)
    st->unread = 0;
}

/* ---- sending, failures and /retry (main thread) ---- */

static void remember_failed(chat_state *st, char *text) {
  if (st->n_failed == st->cap_failed) {
    size_t cap = st->cap_failed ? st->cap_failed * 2 : 8;
    char **p = realloc(st->failed, cap * sizeof *p);
    if (!p) {
      free(text);
      return;
    }
    st->failed = p;
    st->cap_failed = cap;
  }
  st->failed[st->n_failed++] = text;
}

/* Reports a failed send by its text (cut short, whole characters) and keeps it for /retry.
 * Takes ownership of text. */
static void send_failed(chat_state *st, char *text, mim_status s, const char *detail) {
  size_t n = strlen(text);
  size_t cut = n > SHOWN_TEXT_BYTES ? SHOWN_TEXT_BYTES : n;
  while (cut < n && ((unsigned char)text[cut] & 0xc0) == 0x80)
    cut--;
  char *shown = strndup(text, cut);
  if (shown)
    sanitize(shown);
  say(st, "*** not sent: \"%s\"%s (%s: %s: %s)%s", shown ? shown : "?", cut < n ? "..." : "",
      explain(s), mim_status_name(s), detail && *detail ? detail : "no detail",
      st->left ? "" : "; /retry sends it again");
  free(shown);
  remember_failed(st, text);
}

static void track_sent(chat_state *st, const char *id, char *text, bool command) {
  if (st->n_sent == st->cap_sent) {
    size_t cap = st->cap_sent ? st->cap_sent * 2 : 16;
    inflight *p = realloc(st->sent, cap * sizeof *p);
    if (!p) {
      free(text);
      return;
    }
    st->sent = p;
    st->cap_sent = cap;
  }
  inflight *f = &st->sent[st->n_sent++];
  snprintf(f->id, sizeof f->id, "%s", id);
  f->text = text;
  f->command = command;
}

/* A command's event was refused or failed: said with its line; /retry is for messages. */
static void command_failed(chat_state *st, char *line, mim_status s, const char *detail) {
  sanitize(line);
  say(st, "*** %s: failed (%s: %s: %s)", line, explain(s), mim_status_name(s),
      detail && *detail ? detail : "no detail");
  free(line);
}

/* Sends text (taking ownership); a refusal is shown with the text. */
static void send_text(chat_state *st, char *text) {
  char id[MIM_MESSAGE_ID_SIZE];
  mim_status s = mim_send(st->session, text, id);
  if (s == MIM_OK)
    track_sent(st, id, text, false);
  else
    send_failed(st, text, s, mim_last_error_detail());
}

/* The outcome of a message mim_send queued: forget it, or show what failed. */
static void send_result(chat_state *st, const event *ev) {
  for (size_t i = 0; i < st->n_sent; i++) {
    if (strcmp(st->sent[i].id, ev->text) != 0)
      continue;
    char *text = st->sent[i].text;
    bool command = st->sent[i].command;
    st->sent[i] = st->sent[--st->n_sent];
    if (ev->status == MIM_OK)
      free(text);
    else if (command)
      command_failed(st, text, ev->status, ev->detail);
    else
      send_failed(st, text, ev->status, ev->detail);
    return;
  }
}

static void retry_failed(chat_state *st) {
  if (!st->n_failed) {
    say(st, "*** nothing to retry: no message failed");
    return;
  }
  char **texts = st->failed;
  size_t n = st->n_failed;
  st->failed = NULL;
  st->n_failed = st->cap_failed = 0;
  say(st, "*** sending %zu failed message%s again", n, n == 1 ? "" : "s");
  for (size_t i = 0; i < n; i++)
    send_text(st, texts[i]);
  free(texts);
}

/* ---- numbered messages, updates in place, presence (main thread) ---- */

static shown_msg *shown_by_num(chat_state *st, unsigned num) {
  shown_msg *m = &st->shown[num % SHOWN_MESSAGES];
  return num && m->num == num ? m : NULL;
}

static shown_msg *shown_by_id(chat_state *st, const char *id) {
  for (size_t i = 0; i < SHOWN_MESSAGES; i++)
    if (st->shown[i].num && strcmp(st->shown[i].id, id) == 0)
      return &st->shown[i];
  return NULL;
}

static void remember_shown(shown_msg *m, const event *ev) {
  snprintf(m->snippet, sizeof m->snippet, "%s", ev->snippet);
  snprintf(m->my_keys, sizeof m->my_keys, "%s", ev->my_keys);
}

/* The message's line: "#N " after the mark, "[re #K from: snippet] " before the text.
 * Takes ev->text. Sets *who_off to where the sender's name now is. */
static char *numbered_text(chat_state *st, event *ev, unsigned num, size_t *who_off) {
  char num_s[16], *re = NULL, *out = NULL;
  int nl = snprintf(num_s, sizeof num_s, "#%u ", num);
  if (*ev->reply_to) {
    const shown_msg *to = shown_by_id(st, ev->reply_to);
    if (!to)
      re = strdup("[re an earlier message] ");
    else if (asprintf(&re, "[re #%u %s: %s] ", to->num, to->from, to->snippet) < 0)
      re = NULL; /* asprintf leaves it undefined */
  }
  const char *t = ev->text;
  if (asprintf(&out, "%.*s%s%.*s%s%s", (int)ev->mark_len, t, num_s,
               (int)(ev->body_off - ev->mark_len), t + ev->mark_len, re ? re : "",
               t + ev->body_off) < 0)
    out = NULL;
  free(re);
  *who_off = ev->who_off + (size_t)nl;
  return out;
}

/* A new message: numbered, remembered for the commands, shown. */
static void show_message(chat_state *st, event *ev) {
  unsigned num = ++st->next_num ? st->next_num : ++st->next_num; /* 0 means none */
  shown_msg *m = &st->shown[num % SHOWN_MESSAGES];
  *m = (shown_msg){.num = num};
  snprintf(m->id, sizeof m->id, "%s", ev->msg_id);
  snprintf(m->from, sizeof m->from, "%s", ev->from);
  remember_shown(m, ev);
  size_t who_off;
  char *text = numbered_text(st, ev, num, &who_off);
  if (text)
    show(st, text, who_off, ev->who_len, ev->colour, num);
  snprintf(st->newest_id, sizeof st->newest_id, "%s", ev->msg_id);
  st->mark_due = true;
}

/* A shown message changed: its line is replaced on screen; plain mode prints it again
 * after what happened. */
static void show_update(chat_state *st, event *ev) {
  static const char *what[] = {"edited", "deleted", "reactions"};
  shown_msg *m = shown_by_id(st, ev->msg_id);
  if (!m)
    return; /* out of the table: long scrolled away */
  remember_shown(m, ev);
  size_t who_off;
  char *text = numbered_text(st, ev, m->num, &who_off);
  if (!text)
    return;
  if (!st->curses) {
    say(st, "*** %s: %s", what[ev->what], text);
    free(text);
    return;
  }
  for (size_t k = st->n_lines; k-- > 0;) {
    if (st->lines[k].num == m->num) {
      free(st->lines[k].text);
      st->lines[k] = (ui_line){text, who_off, ev->who_len, ev->colour, m->num};
      return;
    }
  }
  free(text);
}

/* Adds (true) or removes name on the typing line. */
static void set_typing(chat_state *st, const char *name, bool typing) {
  char(*free_slot)[NAME_BYTES + 1] = NULL;
  for (size_t i = 0; i < MAX_TYPING; i++) {
    if (strcmp(st->typing[i], name) == 0) {
      if (!typing)
        st->typing[i][0] = '\0';
      return;
    }
    if (!free_slot && !st->typing[i][0])
      free_slot = &st->typing[i];
  }
  if (typing && free_slot)
    snprintf(*free_slot, sizeof *free_slot, "%s", name);
}

static void presence_changed(chat_state *st, const event *ev) {
  switch ((mim_presence_change)ev->what) {
  case MIM_PRESENCE_JOINED:
    say(st, "*** %s is here", ev->from);
    break;
  case MIM_PRESENCE_LEFT:
    set_typing(st, ev->from, false);
    say(st, "*** %s left", ev->from);
    break;
  case MIM_PRESENCE_TYPING:
    set_typing(st, ev->from, true);
    break;
  case MIM_PRESENCE_STOPPED_TYPING:
    set_typing(st, ev->from, false);
    break;
  }
}

/* ---- unread count and read markers (main thread: the calls block) ---- */

static int64_t ms_since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)(now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

/* After a join: how many messages came since this user last read here. */
static void show_unread(chat_state *st) {
  size_t n = 0;
  bool exact = false;
  mim_status s = mim_unread_count(st->session, &n, &exact);
  st->marks_off = s != MIM_OK;
  if (s != MIM_OK)
    say(st, "*** no read markers here: %s (%s)", explain(s), mim_last_error_detail());
  else if (n)
    say(st, "*** %s%zu unread message%s since you last read here", exact ? "" : "at least ", n,
        n == 1 ? "" : "s");
  st->unread_msgs = n;
}

/* Marks the newest shown message read, at most once per MARK_READ_EVERY_MS (a message
 * burst costs one write) and only while the newest messages are in view; force: now
 * (leaving). Returns the ms until a mark is due, -1 when none is. */
static int mark_read_due(chat_state *st, bool force) {
  if (!st->mark_due || st->marks_off || !st->session || (st->scroll && !force))
    return -1;
  int64_t wait = MARK_READ_EVERY_MS - ms_since(&st->last_mark);
  if (wait > 0 && !force)
    return (int)wait;
  st->mark_due = false;
  clock_gettime(CLOCK_MONOTONIC, &st->last_mark);
  mim_status s = mim_mark_read(st->session, st->newest_id);
  if (s != MIM_OK) {
    st->marks_off = true;
    say(st, "*** cannot mark messages read: %s (%s)", explain(s), mim_last_error_detail());
  } else if (mim_unread_count(st->session, &st->unread_msgs, NULL) != MIM_OK) {
    st->unread_msgs = 0;
  }
  return -1;
}

/* ---- commands ---- */

static mim_client *make_client(const options *o, chat_state *st);
static mim_status join_chat(chat_state *st, mim_client *client, const char *chat,
                            mim_session **out);
static void show_joined(chat_state *st, long history);
static void drain_events(chat_state *st);

/* ---- /dm USER: the direct chat (docs/PROTOCOL.md, section 7) ---- */

/* The value of query parameter name in url, as written there (the vendor's names need no
 * decoding); false when url has none. */
static bool url_param(const char *url, const char *name, char *out, size_t size) {
  size_t n = strlen(name);
  for (const char *p = strchr(url, '?'); p; p = strchr(p, '&')) {
    p++;
    if (strncmp(p, name, n) == 0 && p[n] == '=') {
      size_t len = strcspn(p + n + 1, "&#");
      snprintf(out, size, "%.*s", (int)len, p + n + 1);
      return true;
    }
  }
  return false;
}

/* url with its chat= and dm= parameters dropped and dm=OTHER (percent-encoded) added: the
 * token vendor's request for our direct chat with other. malloc'd, NULL when out of
 * memory. */
static char *direct_url(const char *url, const char *other) {
  size_t cap = strlen(url) + 3 * strlen(other) + 8;
  char *out = malloc(cap);
  if (!out)
    return NULL;
  const char *q = strchr(url, '?');
  size_t len = q ? (size_t)(q - url) : strlen(url);
  memcpy(out, url, len);
  char sep = '?';
  for (const char *p = q; p && p[1]; p = strchr(p + 1, '&')) {
    size_t n = strcspn(p + 1, "&");
    if (strncmp(p + 1, "chat=", 5) != 0 && strncmp(p + 1, "dm=", 3) != 0 && n > 0) {
      out[len++] = sep;
      memcpy(out + len, p + 1, n);
      len += n;
      sep = '&';
    }
  }
  len += (size_t)sprintf(out + len, "%cdm=", sep);
  for (const unsigned char *c = (const unsigned char *)other; *c; c++)
    len += (size_t)(strchr("-_.~", *c) || (*c < 128 && isalnum(*c))
                        ? sprintf(out + len, "%c", *c)
                        : sprintf(out + len, "%%%02X", *c));
  out[len] = '\0';
  return out;
}

/* The client the direct chat needs: the same one with a key, a new one fetching the
 * direct chat's token with a token URL (*url set to its URL). NULL after saying why. */
static mim_client *direct_client(chat_state *st, const char *other, char **url) {
  *url = NULL;
  if (!st->o->token_url)
    return st->client;
  options o = *st->o;
  o.token_url = *url = direct_url(st->o->token_url, other);
  mim_client *c = o.token_url ? make_client(&o, st) : NULL;
  if (!c) {
    say(st, "*** cannot get a token for the direct chat with %s from the token URL", other);
    free(*url);
    *url = NULL;
  }
  return c;
}

/* Leaves the room for the direct chat with other; back in the room if that fails. False
 * when neither can be joined (the chat ends). */
static bool open_direct(chat_state *st, const char *other) {
  char me[128 + 1], chat[MIM_DIRECT_CHAT_ID_SIZE];
  if (!st->o->token_url || !url_param(st->o->token_url, "user", me, sizeof me))
    snprintf(me, sizeof me, "%s", st->o->name); /* our user id is the token's id */
  if (mim_direct_chat_id(me, other, chat) != MIM_OK) {
    say(st, "*** /dm: %s", mim_last_error_detail());
    return true;
  }
  char *url = NULL;
  mim_client *client = direct_client(st, other, &url);
  if (!client)
    return true;
  mark_read_due(st, true);
  mim_leave(st->session);
  st->session = NULL; /* freed: main's leave must not see it if no join succeeds */
  drain_events(st);
  memset(st->typing, 0, sizeof st->typing); /* the numbers stay: they name old lines */
  st->mark_due = false;
  mim_client *old = st->client;
  const char *back = st->o->chat;
  mim_status s = join_chat(st, client, chat, &st->session);
  if (s == MIM_OK) {
    snprintf(st->dm_chat, sizeof st->dm_chat, "%s", chat);
    st->o->chat = st->dm_chat;
    if (client != old) {
      mim_client_free(old);
      st->client = client;
      free(st->dm_url);
      st->o->token_url = st->dm_url = url;
    }
  } else {
    say(st, "*** cannot open the direct chat with %s: %s (%s)", other, explain(s),
        mim_last_error_detail());
    if (client != old) {
      mim_client_free(client);
      free(url);
    }
    s = join_chat(st, old, back, &st->session);
  }
  if (s != MIM_OK)
    return false;
  show_joined(st, st->o->history);
  say(st, "*** joined %s as %s%s%s", st->o->chat, st->o->name,
      back == st->o->chat ? " again" : ": direct chat with ", back == st->o->chat ? "" : other);
  show_unread(st);
  return true;
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

/* ---- /reply, /edit, /delete, /react, /who (docs/PROTOCOL.md 3-5) ---- */

/* The message a command names ("3" or "#3", then a space or the end): its entry, *rest
 * past the number and spaces. NULL after saying why. */
static const shown_msg *named_message(chat_state *st, const char *cmd, const char *arg,
                                      const char **rest) {
  const char *p = arg + (*arg == '#');
  char *end;
  errno = 0;
  unsigned long num = isdigit((unsigned char)*p) ? strtoul(p, &end, 10) : 0;
  if (!num || errno || num > UINT_MAX || (*end && *end != ' ')) {
    say(st, "*** %s wants the number shown beside a message (#N), e.g. %s 3", cmd, cmd);
    return NULL;
  }
  const shown_msg *m = shown_by_num(st, (unsigned)num);
  if (!m) {
    say(st, "*** %s: no message #%lu on this screen", cmd, num);
    return NULL;
  }
  while (*end == ' ')
    end++;
  *rest = end;
  return m;
}

/* The outcome of an event call: queued (its result comes like a message's, line shown on
 * failure), or refused now. */
static void event_sent(chat_state *st, mim_status s, const char *id, const char *line) {
  if (s == MIM_ERR_PERMISSION_DENIED) { /* the library knows whose message it is */
    say(st, "*** %s: only its author can edit or delete a message", line);
    return;
  }
  char *copy = strdup(line);
  if (s == MIM_OK && copy)
    track_sent(st, id, copy, true);
  else if (s != MIM_OK && copy)
    command_failed(st, copy, s, mim_last_error_detail());
}

static void reply_to(chat_state *st, const char *arg) {
  const char *text;
  const shown_msg *m = named_message(st, "/reply", arg, &text);
  if (!m)
    return;
  if (!*text) {
    say(st, "*** /reply N TEXT: the text is missing");
    return;
  }
  mim_send_options so = MIM_SEND_OPTIONS_INIT;
  so.reply_to = m->id;
  char id[MIM_MESSAGE_ID_SIZE];
  char *copy = strdup(text);
  if (!copy)
    return;
  mim_status s = mim_send_with_options(st->session, copy, &so, id);
  if (s == MIM_OK)
    track_sent(st, id, copy, false);
  else
    send_failed(st, copy, s, mim_last_error_detail());
}

static void edit_message(chat_state *st, const char *arg, const char *line) {
  const char *text;
  const shown_msg *m = named_message(st, "/edit", arg, &text);
  if (!m)
    return;
  if (!*text) {
    say(st, "*** /edit N TEXT: the new text is missing (/delete N deletes)");
    return;
  }
  char id[MIM_MESSAGE_ID_SIZE];
  event_sent(st, mim_edit(st->session, m->id, text, id), id, line);
}

static void delete_message(chat_state *st, const char *arg, const char *line) {
  const char *rest;
  const shown_msg *m = named_message(st, "/delete", arg, &rest);
  if (!m)
    return;
  char id[MIM_MESSAGE_ID_SIZE];
  event_sent(st, mim_delete(st->session, m->id, id), id, line);
}

/* Adds our reaction KEY, or takes it back when it is there. */
static void react(chat_state *st, const char *arg, const char *line) {
  const char *key;
  const shown_msg *m = named_message(st, "/react", arg, &key);
  if (!m)
    return;
  if (!*key || strchr(key, ' ')) {
    say(st, "*** /react N KEY: one key, e.g. /react 3 +1");
    return;
  }
  bool on = true;
  size_t k = strlen(key);
  for (const char *p = m->my_keys; *p; p = strchr(p, '\n') + 1)
    if (strncmp(p, key, k) == 0 && p[k] == '\n')
      on = false;
  char id[MIM_MESSAGE_ID_SIZE];
  event_sent(st, mim_react(st->session, m->id, key, on, id), id, line);
}

static void show_members(chat_state *st) {
  mim_member_list *list = NULL;
  mim_status s = mim_members(st->session, &list);
  if (s != MIM_OK) {
    say(st, "*** /who: %s (%s)", mim_status_name(s), mim_last_error_detail());
    return;
  }
  char *names = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&names, &len);
  for (size_t i = 0; f && i < list->count; i++) {
    const mim_member *m = &list->members[i];
    fprintf(f, "%s%s", i ? ", " : "", *m->display_name ? m->display_name : m->user_id);
    if (*m->display_name && strcmp(m->display_name, m->user_id) != 0)
      fprintf(f, " (%s)", m->user_id);
    if (m->typing)
      fputs(" (typing)", f);
  }
  if (f && fclose(f) == 0 && names)
    sanitize(names);
  say(st, "*** here besides you: %s", list->count && names ? names : "nobody");
  free(names);
  mim_member_list_free(list);
}

static void show_help(chat_state *st) {
  say(st, "*** commands:");
  say(st, "***   /help           this list");
  say(st, "***   /stats          what the client cost so far (calls, operations, bytes)");
  say(st, "***   /retry          send again the messages shown as \"not sent\"");
  say(st, "***   /reply N TEXT   reply to message #N (the number beside it)");
  say(st, "***   /edit N TEXT    replace the text of your message #N");
  say(st, "***   /delete N       delete your message #N");
  say(st, "***   /react N KEY    add your reaction KEY (e.g. +1) to #N, or take it back");
  say(st, "***   /who            who else is here (and typing)");
  say(st, "***   /dm USER        leave this room for your direct chat with USER");
  say(st, "***   /quit           leave the room (also Ctrl-D on an empty line, or Ctrl-C)");
  say(st, "***   //text          send a line that starts with a slash");
  if (st->curses)
    say(st, "***   keys: PgUp/PgDn scroll, Up/Down bring back what you typed, Home/End/Left/"
            "Right edit, Ctrl-U clears the line, Ctrl-L redraws");
}

/* Handles one typed line (taking ownership); false when it asks to leave. */
static bool handle_line(chat_state *st, char *line) {
  size_t n = strlen(line);
  if (n > 0 && line[n - 1] == '\r')
    line[--n] = '\0';
  bool go_on = true;
  if (n == 0)
    ;
  else if (strcmp(line, "/quit") == 0)
    go_on = false;
  else if (strcmp(line, "/stats") == 0)
    show_stats(st);
  else if (strcmp(line, "/help") == 0)
    show_help(st);
  else if (strcmp(line, "/retry") == 0)
    retry_failed(st);
  else if (strncmp(line, "/dm ", 4) == 0)
    go_on = open_direct(st, line + 4);
  else if (strncmp(line, "/reply ", 7) == 0)
    reply_to(st, line + 7);
  else if (strncmp(line, "/edit ", 6) == 0)
    edit_message(st, line + 6, line);
  else if (strncmp(line, "/delete ", 8) == 0)
    delete_message(st, line + 8, line);
  else if (strncmp(line, "/react ", 7) == 0)
    react(st, line + 7, line);
  else if (strcmp(line, "/who") == 0)
    show_members(st);
  else if (line[0] == '/' && line[1] != '/')
    say(st, "*** unknown command %s (/help lists them; start a line with // to send a slash)",
        line);
  else {
    if (line[0] == '/')
      memmove(line, line + 1, n);
    send_text(st, line);
    return true;
  }
  free(line);
  return go_on;
}

/* ---- events and input (main thread) ---- */

/* A library warning about a message we track: its outcome will show it by its text,
 * which is what the person knows it by (the warning has only its id). */
static bool about_tracked_send(const chat_state *st, const char *warning) {
  for (size_t i = 0; i < st->n_sent; i++)
    if (strstr(warning, st->sent[i].id))
      return true;
  return false;
}

static void handle_event(chat_state *st, event *ev) {
  switch (ev->kind) {
  case EV_LINE:
    if (*ev->msg_id) {
      show_message(st, ev);
    } else if (!(ev->from_log && about_tracked_send(st, ev->text))) {
      show(st, ev->text, ev->who_off, ev->who_len, ev->colour, 0);
      ev->text = NULL;
    }
    break;
  case EV_SEND_RESULT:
    send_result(st, ev);
    break;
  case EV_CONN:
    st->conn = ev->conn;
    break;
  case EV_UPDATE:
    show_update(st, ev);
    break;
  case EV_PRESENCE:
    presence_changed(st, ev);
    break;
  }
  event_free(ev);
}

static void drain_events(chat_state *st) {
  for (event *ev = queue_take(st), *next; ev; ev = next) {
    next = ev->next;
    handle_event(st, ev);
  }
}

/* Once the join returned: shows what it delivered, only the last `history` of the
 * history, and from now on shows history-flagged messages without the mark. */
static void show_joined(chat_state *st, long history) {
  pthread_mutex_lock(&st->mu);
  st->joined = true;
  pthread_mutex_unlock(&st->mu);
  event *all = queue_take(st);
  size_t n_hist = 0;
  for (event *ev = all; ev; ev = ev->next)
    n_hist += ev->kind == EV_LINE && ev->history;
  size_t skip = n_hist > (size_t)history ? n_hist - (size_t)history : 0;
  if (skip)
    say(st, "*** %zu earlier message%s not shown", skip, skip == 1 ? "" : "s");
  for (event *ev = all, *next; ev; ev = next) {
    next = ev->next;
    if (ev->kind == EV_LINE && ev->history && skip) {
      skip--;
      event_free(ev);
    } else {
      handle_event(st, ev);
    }
  }
}

static void delete_at_cursor(chat_state *st) {
  if (st->in_cur < st->in_len) {
    wmemmove(st->input + st->in_cur, st->input + st->in_cur + 1, st->in_len - st->in_cur);
    st->in_len--;
  }
}

static void backspace(chat_state *st) {
  if (st->in_cur > 0) {
    st->in_cur--;
    delete_at_cursor(st);
  }
}

/* Keeps a typed line for Up (the oldest goes when full). */
static void remember_typed(chat_state *st) {
  wchar_t *copy = st->in_len ? wcsdup(st->input) : NULL;
  if (copy && st->n_recall == RECALL_LINES) {
    free(st->recall[0]);
    memmove(st->recall, st->recall + 1, (RECALL_LINES - 1) * sizeof *st->recall);
    st->n_recall--;
  }
  if (copy)
    st->recall[st->n_recall++] = copy;
  st->recall_pos = st->n_recall;
}

/* Up (-1) and Down (+1) through the typed lines; past the newest: an empty line. */
static void recall_step(chat_state *st, int step) {
  if ((step < 0 && st->recall_pos == 0) || (step > 0 && st->recall_pos >= st->n_recall))
    return;
  st->recall_pos = step < 0 ? st->recall_pos - 1 : st->recall_pos + 1;
  const wchar_t *line = st->recall_pos < st->n_recall ? st->recall[st->recall_pos] : L"";
  st->in_len = st->in_cur = wcslen(line);
  wmemcpy(st->input, line, st->in_len);
}

/* Keys ncurses decoded (arrows, PgUp, ...). */
static void on_function_key(chat_state *st, wint_t c) {
  long page = LINES > 4 ? LINES - 3 : 1;
  switch (c) {
  case KEY_PPAGE:
    scroll_by(st, page);
    break;
  case KEY_NPAGE:
    scroll_by(st, -page);
    break;
  case KEY_UP:
    recall_step(st, -1);
    break;
  case KEY_DOWN:
    recall_step(st, 1);
    break;
  case KEY_LEFT:
    st->in_cur -= st->in_cur > 0;
    break;
  case KEY_RIGHT:
    st->in_cur += st->in_cur < st->in_len;
    break;
  case KEY_HOME:
    st->in_cur = 0;
    break;
  case KEY_END:
    st->in_cur = st->in_len;
    break;
  case KEY_BACKSPACE:
    backspace(st);
    break;
  case KEY_DC:
    delete_at_cursor(st);
    break;
  default:
    break; /* KEY_RESIZE and the rest: the redraw after each key does it */
  }
}

/* Enter: the line goes to handle_line as UTF-8. False when it asks to leave. */
static bool submit(chat_state *st) {
  st->input[st->in_len] = L'\0';
  remember_typed(st);
  size_t cap = st->in_len * MB_CUR_MAX + 1;
  char *line = malloc(cap);
  if (line && wcstombs(line, st->input, cap) == (size_t)-1)
    line[0] = '\0';
  st->in_len = st->in_cur = 0;
  mim_set_typing(st->session, false);
  scroll_by(st, -(long)st->n_lines); /* what you send, you want to see arrive */
  return !line || handle_line(st, line);
}

static void insert_char(chat_state *st, wint_t c) {
  if (iswprint(c) && st->in_len < INPUT_MAX) {
    mim_set_typing(st->session, true); /* the library sends one every few seconds at most */
    wmemmove(st->input + st->in_cur + 1, st->input + st->in_cur, st->in_len - st->in_cur);
    st->input[st->in_cur++] = (wchar_t)c;
    st->in_len++;
  }
}

/* The full-screen input line: one key. Returns false when it asks to leave. */
static bool on_key(chat_state *st, int kind, wint_t c) {
  if (kind == KEY_CODE_YES && c == KEY_ENTER)
    return submit(st);
  if (kind == KEY_CODE_YES) {
    on_function_key(st, c);
    return true;
  }
  switch (c) {
  case L'\r':
  case L'\n':
    return submit(st);
  case 4: /* Ctrl-D: leaves on an empty line, like end of input */
    return st->in_len > 0;
  case 1: /* Ctrl-A */
    st->in_cur = 0;
    break;
  case 5: /* Ctrl-E */
    st->in_cur = st->in_len;
    break;
  case 21: /* Ctrl-U */
    st->in_len = st->in_cur = 0;
    mim_set_typing(st->session, false);
    break;
  case 12: /* Ctrl-L */
    clearok(curscr, TRUE);
    break;
  case 8:
  case 127:
    backspace(st);
    break;
  default:
    insert_char(st, c);
  }
  return true;
}

/* Takes every key ncurses has (it may buffer several per read). */
static bool read_keys(chat_state *st) {
  wint_t c;
  int kind;
  while ((kind = get_wch(&c)) != ERR) {
    if (!on_key(st, kind, c))
      return false;
  }
  return true;
}

/* Plain mode: reads stdin with read(2), so a signal (through wake_pipe) can end the wait
 * without stdio buffering hiding lines from poll. False at /quit or end of input. */
static bool read_lines(chat_state *st, char **buf, size_t *len, size_t *cap) {
  if (*len + 1 >= *cap) {
    char *bigger = *cap < (1u << 20) ? realloc(*buf, *cap * 2) : NULL;
    if (!bigger) {
      say(st, "*** line too long, dropped");
      *len = 0;
      return true;
    }
    *buf = bigger;
    *cap *= 2;
  }
  ssize_t got = read(0, *buf + *len, *cap - *len - 1);
  if (got < 0 && errno == EINTR)
    return true;
  if (got <= 0) { /* EOF (Ctrl-D) or error: a last unterminated line still counts */
    (*buf)[*len] = '\0';
    if (*len)
      handle_line(st, strdup(*buf));
    return false;
  }
  *len += (size_t)got;
  (*buf)[*len] = '\0';
  char *start = *buf, *nl;
  bool go_on = true;
  while (go_on && (nl = memchr(start, '\n', *len - (size_t)(start - *buf)))) {
    *nl = '\0';
    char *line = strdup(start);
    go_on = line && handle_line(st, line);
    start = nl + 1;
  }
  *len -= (size_t)(start - *buf);
  memmove(*buf, start, *len);
  return go_on;
}

/* Until /quit, end of input or a signal: input, events from the library, redraws. */
static void main_loop(chat_state *st) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  bool go_on = buf != NULL;
  while (go_on) {
    if (st->curses)
      draw(st);
    struct pollfd fds[3] = {{.fd = 0, .events = POLLIN},
                            {.fd = wake_pipe[0], .events = POLLIN},
                            {.fd = st->event_pipe[0], .events = POLLIN}};
    if (poll(fds, 3, mark_read_due(st, false)) < 0) {
      if (errno == EINTR && st->curses) /* SIGWINCH: ncurses queues KEY_RESIZE */
        go_on = read_keys(st);
      continue;
    }
    if (fds[1].revents) { /* Ctrl-C or SIGTERM */
      if (!st->curses && isatty(1))
        say(st, "%s", ""); /* end the line the terminal's "^C" echo is on */
      break;
    }
    if (fds[2].revents)
      drain_events(st);
    if (fds[0].revents)
      go_on = st->curses ? read_keys(st) : read_lines(st, &buf, &len, &cap);
    /* The terminal went away (ncurses reads no end of input): leave rather than spin. */
    if (st->curses && (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)))
      go_on = false;
  }
  free(buf);
}
/* 0 ok, 1 help printed, 2 usage error (printed). */
static int parse_args(int argc, char **argv, options *o) {
  enum {
    O_CACHE = 256,
    O_ENDPOINT,
    O_PLAIN,
    O_KEYFILE,
    O_TOKENURL,
    O_MOD,
    O_HIST,
    O_HELP,
    O_PLAINUI
  };
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
                                        {"plain", no_argument, NULL, O_PLAINUI},
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
    case O_PLAINUI:
      o->plain = true;
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
  mim_client_options co = MIM_CLIENT_OPTIONS_INIT;
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

static void free_state(chat_state *st) {
  for (size_t i = 0; i < st->n_recall; i++)
    free(st->recall[i]);
  for (size_t i = 0; i < st->n_lines; i++)
    free(st->lines[i].text);
  free(st->lines);
  for (size_t i = 0; i < st->n_sent; i++)
    free(st->sent[i].text);
  free(st->sent);
  for (size_t i = 0; i < st->n_failed; i++)
    free(st->failed[i]);
  free(st->failed);
  free(st->dm_url);
  for (event *ev = queue_take(st), *next; ev; ev = next) {
    next = ev->next;
    event_free(ev);
  }
  pthread_mutex_destroy(&st->mu);
  for (int i = 0; i < 2; i++) {
    close(st->event_pipe[i]);
    close(wake_pipe[i]);
  }
}

/* Non-blocking pipes: the signal handler and the callbacks must never wait on them. */
static bool make_pipes(chat_state *st) {
  if (pipe(wake_pipe) != 0 || pipe(st->event_pipe) != 0) {
    perror("chat: pipe");
    return false;
  }
  for (int i = 0; i < 2; i++) {
    fcntl(wake_pipe[i], F_SETFL, O_NONBLOCK);
    fcntl(st->event_pipe[i], F_SETFL, O_NONBLOCK);
  }
  return true;
}

/* Joins chat with client; its history is held for show_joined. */
static mim_status join_chat(chat_state *st, mim_client *client, const char *chat,
                            mim_session **out) {
  const options *o = st->o;
  pthread_mutex_lock(&st->mu);
  st->joined = false;
  pthread_mutex_unlock(&st->mu);
  mim_join_options jo = MIM_JOIN_OPTIONS_INIT;
  jo.display_name = o->name;
  jo.mode = o->moderated ? MIM_CHAT_MODERATED : MIM_CHAT_CLIENT_ONLY;
  jo.on_event = on_event;
  jo.on_send_result = on_send_result;
  jo.on_update = on_update;
  jo.on_presence = on_presence; /* also announces us and keeps us in others' /who */
  return mim_join(client, o->cache, chat, &jo, on_message, st, out);
}

static mim_status join(chat_state *st) {
  const options *o = st->o;
  mim_status s = join_chat(st, st->client, o->chat, &st->session);
  if (s != MIM_OK)
    fprintf(stderr, "chat: cannot join %s: %s (%s: %s)\n", o->chat, explain(s), mim_status_name(s),
            mim_last_error_detail());
  return s;
}

/* Messages are UTF-8 whatever the locale: without a UTF-8 character type (LANG unset,
 * "C"), ncurses would neither read typed accents nor show other people's. */
static void use_utf8(void) {
  setlocale(LC_ALL, "");
  if (strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
    setlocale(LC_CTYPE, "C.UTF-8");
}

int main(int argc, char **argv) {
  prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  use_utf8();
  options o;
  int rc = parse_args(argc, argv, &o);
  if (rc)
    return rc == 1 ? 0 : 2;

  chat_state st = {.o = &o, .saved_stderr = -1, .event_pipe = {-1, -1}};
  pthread_mutex_init(&st.mu, NULL);
  if (!make_pipes(&st)) {
    free_state(&st);
    return 1;
  }
  /* Ctrl-C and SIGTERM wake the main loop so we leave the room properly. Installed
   * before initscr, which then leaves them alone. */
  struct sigaction sa = {.sa_handler = on_signal, .sa_flags = SA_RESTART};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  /* Our reactions are those by our user id: the display name, the token's id with a
   * vendor (user=), and in any case the sender id of our own messages (on_message). */
  if (!o.token_url || !url_param(o.token_url, "user", st.me, sizeof st.me))
    snprintf(st.me, sizeof st.me, "%s", o.name);
  st.client = make_client(&o, &st);
  if (!st.client || join(&st) != MIM_OK) {
    mim_client_free(st.client); /* no callback runs after a failed join */
    free_state(&st);
    return 1;
  }
  if (!o.plain && isatty(0) && isatty(1))
    ui_start(&st);
  show_joined(&st, o.history);
  say(&st, "*** joined %s as %s (%s mode); type a line to send it, /help for commands", o.chat,
      o.name, o.moderated ? "moderated" : "client-only");
  show_unread(&st);

  main_loop(&st);

  mark_read_due(&st, true);
  ui_stop(&st);
  mim_leave(st.session); /* may report what it could not send: shown below */
  st.left = true;
  drain_events(&st);
  mim_client_free(st.client);
  say(&st, "*** left %s", o.chat);
  free_state(&st);
  return 0;
}
