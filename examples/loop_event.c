/*
 * loop_event: a small chat client driven by a libevent loop (loop mode,
 * <momento/loop_event.h>).
 *
 *   loop_event --chat ROOM [--name NAME] [--cache NAME] [--endpoint HOST:PORT]
 *           [--key-file PATH]
 *
 * One thread does everything: libevent watches the client's descriptors and timer
 * through the adapter, and stdin through an event of its own. The join is mim_join_async, so
 * the loop never blocks; messages are printed as they arrive; each line read from stdin
 * is sent with mim_send, which only queues in loop mode (the outcome comes back through
 * on_send_result). End of input or "/quit" leaves, frees the client and closes the
 * adapter (libevent removes events at once: nothing is left to finish).
 * Without --key-file the key comes from MOMENTO_API_KEY.
 */
#include <momento/im.h>
#include <momento/loop_event.h>

#include "key_file.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct app {
  struct event_base *base;
  mim_loop_event adapter;
  struct event *input;
  mim_client *client;
  mim_session *session;
  char line[4096];
  size_t used;
  bool quitting;
} app;

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s, (void)user;
  printf("%s%s: %s\n", m->from_history ? "[history] " : "", m->from ? m->from : "?",
         m->text ? m->text : "(not a chat message)");
  fflush(stdout);
}

static void on_send_result(mim_session *s, const char *id, mim_status st, const char *detail,
                           void *user) {
  (void)s, (void)user;
  if (st != MIM_OK)
    fprintf(stderr, "*** message %s not sent: %s (%s)\n", id, mim_status_name(st), detail);
}

static void on_joined(mim_session *s, mim_status st, const char *detail, void *user) {
  app *a = user;
  if (st != MIM_OK) {
    fprintf(stderr, "*** join failed: %s (%s)\n", mim_status_name(st), detail);
    event_base_loopbreak(a->base); /* the library frees the session */
    return;
  }
  a->session = s;
  fprintf(stderr, "*** joined; type lines to send, /quit or Ctrl-D to leave\n");
}

/* One line typed: send it (queued; never waits in loop mode), or quit. */
static void handle_line(app *a, char *line) {
  if (strcmp(line, "/quit") == 0) {
    a->quitting = true;
    event_base_loopbreak(a->base);
    return;
  }
  if (!a->session) {
    fprintf(stderr, "*** not joined yet: line dropped\n");
    return;
  }
  mim_status st = mim_send(a->session, line, NULL);
  if (st != MIM_OK)
    fprintf(stderr, "*** send: %s (%s)\n", mim_status_name(st), mim_last_error_detail());
}

static void on_input(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  app *a = arg;
  ssize_t n = read(fd, a->line + a->used, sizeof a->line - 1 - a->used);
  if (n <= 0) { /* end of input or an error: leave */
    a->quitting = true;
    event_base_loopbreak(a->base);
    return;
  }
  a->used += (size_t)n;
  char *start = a->line, *nl;
  while ((nl = memchr(start, '\n', a->used - (size_t)(start - a->line)))) {
    *nl = '\0';
    handle_line(a, start);
    start = nl + 1;
  }
  a->used -= (size_t)(start - a->line);
  memmove(a->line, start, a->used);
  if (a->used == sizeof a->line - 1) { /* a line too long for the buffer: send what we have */
    a->line[a->used] = '\0';
    handle_line(a, a->line);
    a->used = 0;
  }
}

static int usage(void) {
  fprintf(stderr, "usage: loop_event --chat ROOM [--name NAME] [--cache NAME] "
                  "[--endpoint HOST:PORT] [--key-file PATH]\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *chat = NULL, *name = "event-user", *cache = "instant-messaging", *endpoint = NULL,
             *key_file = NULL;
  static const struct option longopts[] = {
      {"chat", required_argument, NULL, 'c'},     {"name", required_argument, NULL, 'n'},
      {"cache", required_argument, NULL, 'C'},    {"endpoint", required_argument, NULL, 'e'},
      {"key-file", required_argument, NULL, 'k'}, {NULL, 0, NULL, 0}};
  for (int c; (c = getopt_long(argc, argv, "", longopts, NULL)) != -1;) {
    if (c == 'c')
      chat = optarg;
    else if (c == 'n')
      name = optarg;
    else if (c == 'C')
      cache = optarg;
    else if (c == 'e')
      endpoint = optarg;
    else if (c == 'k')
      key_file = optarg;
    else
      return usage();
  }
  if (!chat)
    return usage();
  char *key = NULL;
  if (key_file && !(key = read_key_file(key_file))) {
    fprintf(stderr, "loop_event: cannot read a key from %s\n", key_file);
    return 1;
  }

  static app a;
  a.base = event_base_new();
  if (!a.base) {
    fprintf(stderr, "loop_event: event_base_new failed\n");
    free_key(key);
    return 1;
  }
  mim_client_options co;
  mim_client_options_init(&co);
  co.api_key = key; /* NULL: MOMENTO_API_KEY */
  if (endpoint)
    co.cache_host = co.control_host = co.token_host = endpoint;
  co.loop = mim_loop_event_init(&a.adapter, a.base);
  if (!co.loop) {
    fprintf(stderr, "loop_event: %s failed\n", a.adapter.error_op);
    free_key(key);
    event_base_free(a.base);
    return 1;
  }
  mim_status st = mim_client_create(&co, &a.client);
  free_key(key);
  int rc = 1;
  if (st != MIM_OK) {
    fprintf(stderr, "loop_event: %s (%s)\n", mim_status_name(st), mim_last_error_detail());
    goto close_adapter;
  }
  mim_loop_event_attach(&a.adapter, a.client);

  mim_join_options jo;
  mim_join_options_init(&jo);
  jo.display_name = name;
  jo.on_send_result = on_send_result;
  st = mim_join_async(a.client, cache, chat, &jo, on_message, on_joined, &a);
  if (st != MIM_OK) {
    fprintf(stderr, "loop_event: join: %s (%s)\n", mim_status_name(st), mim_last_error_detail());
    goto free_client;
  }
  a.input = event_new(a.base, STDIN_FILENO, EV_READ | EV_PERSIST, on_input, &a);
  if (!a.input || event_add(a.input, NULL) != 0)
    fprintf(stderr, "loop_event: stdin cannot be watched (a regular file?): not reading it\n");
  event_base_dispatch(a.base); /* until /quit, end of input or a failed join */
  rc = a.quitting ? 0 : 1;
  if (a.session)
    mim_leave(a.session); /* on the loop thread: runs the loop while it flushes */

free_client:
  mim_client_free(a.client);
close_adapter:
  mim_loop_event_close(&a.adapter);
  if (a.input)
    event_free(a.input);
  if (a.adapter.errors)
    fprintf(stderr, "loop_event: %d libevent errors, first in %s\n", a.adapter.errors,
            a.adapter.error_op);
  event_base_free(a.base);
  return rc;
}
