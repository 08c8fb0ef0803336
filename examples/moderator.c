/*
 * moderator: the server-mediated bridge of the instant-messaging pattern.
 *
 *   moderator --chat ROOM [--chat ROOM2 ...] [--cache NAME] [--endpoint HOST:PORT
 *             [--plaintext]] [--key-file PATH] [--words FILE] [--word W ...] [--cap N]
 *             [--max-length N] [--any-name]
 *
 * Holds a privileged key, reads what moderated clients publish on "ROOM-input", and
 * forwards what passes the word filter to the room's history list (capped to N) and its
 * topic (mim_moderator_start does the plumbing). Logs every decision on stdout, one line
 * each; runs until SIGINT or SIGTERM, then stops cleanly.
 */
#include <momento/im.h>

#include "key_file.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_CAP 100
#define DEFAULT_MAX_LENGTH 500

typedef struct word_list {
  char **words; /* lower-case ASCII letters; other bytes kept as given */
  size_t count, cap;
} word_list;

typedef struct filter_config {
  word_list words;
  size_t max_length; /* in characters (UTF-8 code points) */
  bool any_name;     /* true: do not compare the claimed name with the token id */
  pthread_mutex_t log_mu;
} filter_config;

/* The name this tool was run as (build/examples/moderator, or installed as mim-moderator), for its
 * usage line. */
static const char *prog = "moderator";

static void usage(FILE *out) {
  fprintf(
      out,
      "usage: %s --chat ROOM [--chat ROOM2 ...] [options]\n"
      "\n"
      "  --chat ROOM          room to moderate (repeatable; reads ROOM-input)\n"
      "  --cache NAME         cache holding the rooms (default instant-messaging)\n"
      "  --endpoint HOST:PORT server for every plane (default: from the key)\n"
      "  --plaintext          no TLS (default: TLS unless the endpoint is loopback)\n"
      "  --key-file PATH      privileged key (default: MOMENTO_API_KEY); it needs read/\n"
      "                       write on the rooms' lists, subscribe on ROOM-input and\n"
      "                       publish on ROOM\n"
      "  --words FILE         banned words, one per line ('#' starts a comment)\n"
      "  --word W             a banned word (repeatable)\n"
      "  --cap N              history kept per room (default %d)\n"
      "  --max-length N       longest accepted message in characters (default %d)\n"
      "  --any-name           accept a sender name that differs from its token id\n"
      "  --help               this text\n"
      "\n"
      "Rules, in order:\n"
      "  reject  a sender whose name is not its token id (unless --any-name): in a\n"
      "          moderated room receivers can only trust what the moderator checked;\n"
      "  reject  an empty message, or one longer than --max-length characters;\n"
      "  reject  a message made only of banned words (ignoring spaces and punctuation);\n"
      "  mask    each banned word: its characters become '*' (whole words only,\n"
      "          case-insensitive for ASCII letters: \"Darn!\" -> \"****!\", \"darned\" stays);\n"
      "  accept  everything else, unchanged.\n"
      "Edits go through the same rules (their new text; logged as \"VERDICT (edit)\"): an\n"
      "edit cannot bring back a banned word. Edits and deletions by anyone but the\n"
      "message's author never reach the filter: the library drops them.\n"
      "Each decision is logged on stdout: TIME ROOM VERDICT sender: text.\n",
      prog, DEFAULT_CAP, DEFAULT_MAX_LENGTH);
}

/* ---- the word filter ---- */

/* A word is a run of ASCII letters and digits and of non-ASCII
 * bytes (letters of other scripts); everything else separates words. */
static bool is_word_byte(unsigned char c) {
  return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* ASCII only: the program never calls setlocale, so tolower is the "C" locale's. */
static char ascii_lower(char c) {
  return (char)tolower((unsigned char)c);
}

static bool word_is_banned(const word_list *wl, const char *w, size_t len) {
  for (size_t i = 0; i < wl->count; i++) {
    const char *b = wl->words[i];
    size_t j = 0;
    while (j < len && b[j] && ascii_lower(w[j]) == b[j])
      j++;
    if (j == len && b[j] == '\0')
      return true;
  }
  return false;
}

static size_t utf8_length(const char *s) {
  size_t n = 0;
  for (; *s; s++)
    n += ((unsigned char)*s & 0xc0) != 0x80;
  return n;
}

/* Masks banned words in a copy of text: one '*' per character of the word. Sets
 * *n_words / *n_banned. Returns NULL only when out of memory. */
static char *mask_words(const word_list *wl, const char *text, size_t *n_words, size_t *n_banned) {
  size_t len = strlen(text);
  char *out = malloc(len + 1);
  if (!out)
    return NULL;
  size_t o = 0, i = 0;
  *n_words = *n_banned = 0;
  while (i < len) {
    if (!is_word_byte((unsigned char)text[i])) {
      out[o++] = text[i++];
      continue;
    }
    size_t start = i;
    while (i < len && is_word_byte((unsigned char)text[i]))
      i++;
    (*n_words)++;
    if (word_is_banned(wl, text + start, i - start)) {
      (*n_banned)++;
      for (size_t k = start; k < i; k++)
        if (((unsigned char)text[k] & 0xc0) != 0x80) /* one star per UTF-8 character */
          out[o++] = '*';
    } else {
      memcpy(out + o, text + start, i - start);
      o += i - start;
    }
  }
  out[o] = '\0';
  return out;
}

/* ---- logging ---- */

static void log_decision(filter_config *cfg, const mim_message *m, const char *verdict,
                         const char *why, const char *text) {
  char when[16];
  time_t now = time(NULL);
  struct tm tm;
  strftime(when, sizeof when, "%H:%M:%S", localtime_r(&now, &tm));
  pthread_mutex_lock(&cfg->log_mu);
  /* An edit is checked like a message (its new text): the log says which it was. */
  printf("%s %s %-6s %s%s", when, m->chat, verdict, m->edited ? "(edit) " : "", m->from);
  if (*m->publisher_id && strcmp(m->publisher_id, m->from) != 0)
    printf(" (token %s)", m->publisher_id);
  printf(": ");
  /* Control bytes are shown as '?', so a message cannot forge log lines. */
  for (const char *p = text; *p; p++)
    putchar((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
  if (why)
    printf("  [%s]", why);
  putchar('\n');
  fflush(stdout);
  pthread_mutex_unlock(&cfg->log_mu);
}

static mim_moderation_verdict moderate(const mim_message *m, char **new_text, void *user) {
  filter_config *cfg = user;
  /* Receivers of a moderated room see the moderator as the trusted publisher, so the
   * moderator is the one who can hold senders to the name their token carries. */
  if (!cfg->any_name && *m->publisher_id && strcmp(m->publisher_id, m->from) != 0) {
    log_decision(cfg, m, "reject", "name is not the token id", m->text);
    return MIM_MODERATION_REJECT;
  }
  size_t chars = utf8_length(m->text);
  if (chars == 0) {
    log_decision(cfg, m, "reject", "empty", m->text);
    return MIM_MODERATION_REJECT;
  }
  if (chars > cfg->max_length) {
    char why[64];
    snprintf(why, sizeof why, "%zu characters, limit %zu", chars, cfg->max_length);
    log_decision(cfg, m, "reject", why, "(not shown)");
    return MIM_MODERATION_REJECT;
  }
  size_t n_words, n_banned;
  char *masked = mask_words(&cfg->words, m->text, &n_words, &n_banned);
  if (!masked) {
    log_decision(cfg, m, "reject", "out of memory", m->text);
    return MIM_MODERATION_REJECT;
  }
  if (n_banned == 0) {
    free(masked);
    log_decision(cfg, m, "accept", NULL, m->text);
    return MIM_MODERATION_ACCEPT;
  }
  if (n_banned == n_words) {
    log_decision(cfg, m, "reject", "only banned words", masked);
    free(masked);
    return MIM_MODERATION_REJECT;
  }
  log_decision(cfg, m, "mask", NULL, masked);
  *new_text = masked; /* the library frees it */
  return MIM_MODERATION_REWRITE;
}

/* ---- set-up ---- */

static bool add_word(word_list *wl, const char *w, size_t len) {
  while (len > 0 && (w[len - 1] == ' ' || w[len - 1] == '\t' || w[len - 1] == '\r'))
    len--;
  while (len > 0 && (*w == ' ' || *w == '\t')) {
    w++;
    len--;
  }
  if (len == 0 || *w == '#')
    return true;
  for (size_t i = 0; i < len; i++)
    if (!is_word_byte((unsigned char)w[i])) {
      fprintf(stderr, "moderator: banned word '%.*s' must be one word (letters and digits)\n",
              (int)len, w);
      return false;
    }
  if (wl->count == wl->cap) {
    size_t cap = wl->cap ? wl->cap * 2 : 16;
    char **p = realloc(wl->words, cap * sizeof *p);
    if (!p)
      return false;
    wl->words = p;
    wl->cap = cap;
  }
  char *copy = strndup(w, len);
  if (!copy)
    return false;
  for (char *p = copy; *p; p++)
    *p = ascii_lower(*p);
  wl->words[wl->count++] = copy;
  return true;
}

static bool load_words(word_list *wl, const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "moderator: cannot read %s: %s\n", path, strerror(errno));
    return false;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  bool ok = true;
  while (ok && (n = getline(&line, &cap, f)) >= 0) {
    if (n > 0 && line[n - 1] == '\n')
      n--;
    ok = add_word(wl, line, (size_t)n);
  }
  free(line);
  fclose(f);
  return ok;
}

static void free_words(word_list *wl) {
  for (size_t i = 0; i < wl->count; i++)
    free(wl->words[i]);
  free(wl->words);
}

static bool parse_count(const char *arg, const char *flag, unsigned long max, unsigned long *out) {
  char *end;
  errno = 0;
  *out = strtoul(arg, &end, 10);
  if (errno || *end || end == arg || *arg == '-' || *out == 0 || *out > max) {
    fprintf(stderr, "moderator: %s wants a number from 1 to %lu\n", flag, max);
    return false;
  }
  return true;
}

static void on_log(mim_log_level level, const char *message, void *user) {
  (void)user;
  fprintf(stderr, "%s: %s\n", level == MIM_LOG_ERROR ? "error" : "warning", message);
}

typedef struct options {
  const char **chats;
  size_t n_chats;
  const char *cache, *endpoint, *key_file;
  bool plaintext;
  unsigned long cap;
} options;

/* 0 ok, 1 help, 2 usage error (printed). */
static int parse_args(int argc, char **argv, options *o, filter_config *cfg) {
  enum {
    O_CACHE = 256,
    O_ENDPOINT,
    O_PLAIN,
    O_KEYFILE,
    O_WORDS,
    O_WORD,
    O_CAP,
    O_MAXLEN,
    O_ANYNAME,
    O_HELP
  };
  static const struct option longs[] = {{"chat", required_argument, NULL, 'c'},
                                        {"cache", required_argument, NULL, O_CACHE},
                                        {"endpoint", required_argument, NULL, O_ENDPOINT},
                                        {"plaintext", no_argument, NULL, O_PLAIN},
                                        {"key-file", required_argument, NULL, O_KEYFILE},
                                        {"words", required_argument, NULL, O_WORDS},
                                        {"word", required_argument, NULL, O_WORD},
                                        {"cap", required_argument, NULL, O_CAP},
                                        {"max-length", required_argument, NULL, O_MAXLEN},
                                        {"any-name", no_argument, NULL, O_ANYNAME},
                                        {"help", no_argument, NULL, O_HELP},
                                        {NULL, 0, NULL, 0}};
  int c;
  unsigned long n;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (c) {
    case 'c':
      o->chats[o->n_chats++] = optarg;
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
    case O_WORDS:
      if (!load_words(&cfg->words, optarg))
        return 2;
      break;
    case O_WORD:
      if (!add_word(&cfg->words, optarg, strlen(optarg)))
        return 2;
      break;
    case O_CAP:
      if (!parse_count(optarg, "--cap", 1000000, &o->cap))
        return 2;
      break;
    case O_MAXLEN:
      if (!parse_count(optarg, "--max-length", 1000000, &n))
        return 2;
      cfg->max_length = n;
      break;
    case O_ANYNAME:
      cfg->any_name = true;
      break;
    case O_HELP:
      usage(stdout);
      return 1;
    default:
      usage(stderr);
      return 2;
    }
  }
  if (optind < argc || o->n_chats == 0) {
    fprintf(stderr, "moderator: give at least one --chat ROOM (see --help)\n");
    return 2;
  }
  return 0;
}

static mim_client *make_client(const options *o) {
  char *key = NULL;
  if (o->key_file && !(key = read_key_file(o->key_file))) {
    fprintf(stderr, "moderator: cannot read a key from %s\n", o->key_file);
    return NULL;
  }
  mim_client_options co;
  mim_client_options_init(&co);
  co.api_key = key;
  if (o->endpoint)
    co.cache_host = co.control_host = co.token_host = o->endpoint;
  co.tls = o->plaintext ? MIM_TLS_OFF : MIM_TLS_AUTO;
  co.log_fn = on_log;
  co.log_level = MIM_LOG_WARN;
  mim_client *client = NULL;
  mim_status st = mim_client_create(&co, &client);
  free_key(key);
  if (st != MIM_OK) {
    fprintf(stderr, "moderator: cannot create the client: %s (%s)\n", mim_status_name(st),
            mim_last_error_detail());
    return NULL;
  }
  return client;
}

static int run(const options *o, filter_config *cfg, const sigset_t *stop_signals) {
  mim_client *client = make_client(o);
  if (!client)
    return 1;
  mim_moderator *mod = NULL;
  mim_status st = mim_moderator_start(client, o->cache, o->chats, o->n_chats, (uint32_t)o->cap,
                                      moderate, cfg, &mod);
  if (st != MIM_OK) {
    fprintf(stderr, "moderator: cannot start: %s (%s)\n", mim_status_name(st),
            mim_last_error_detail());
    mim_client_free(client);
    return 1;
  }
  pthread_mutex_lock(&cfg->log_mu);
  printf("moderator: watching");
  for (size_t i = 0; i < o->n_chats; i++)
    printf(" %s-input", o->chats[i]);
  printf(" in %s; %zu banned words, cap %lu, max length %zu\n", o->cache, cfg->words.count, o->cap,
         cfg->max_length);
  fflush(stdout);
  pthread_mutex_unlock(&cfg->log_mu);

  int sig = 0;
  sigwait(stop_signals, &sig);
  mim_moderator_stop(mod);
  mim_client_free(client);
  printf("moderator: stopped (%s)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  fflush(stdout);
  return 0;
}

int main(int argc, char **argv) {
  prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  /* Block the stop signals before any thread exists, so every thread inherits the mask
   * and the main thread alone takes them with sigwait. */
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);

  filter_config cfg = {.max_length = DEFAULT_MAX_LENGTH};
  pthread_mutex_init(&cfg.log_mu, NULL);
  options o = {.cache = "instant-messaging", .cap = DEFAULT_CAP};
  o.chats = calloc((size_t)argc, sizeof *o.chats);
  int rc = o.chats ? parse_args(argc, argv, &o, &cfg) : 1;
  if (rc == 0)
    rc = run(&o, &cfg, &stop_signals);
  else if (rc == 1 && o.chats)
    rc = 0; /* --help */
  free(o.chats);
  free_words(&cfg.words);
  pthread_mutex_destroy(&cfg.log_mu);
  return rc;
}
