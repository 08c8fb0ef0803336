/*
 * A tour of the C API: a scripted chat in one process against a running mim-local.
 *
 *   tour ENDPOINT ROOT_KEY_FILE
 *
 * The root (super-user) key plays the token vendor: it mints one disposable token per
 * participant, scoped by the two policies of the pattern. Alice and Bob chat in
 * client-only mode; Dave writes in moderated mode and a moderator masks a word; Carol
 * joins late and gets the history first; then Alice and Bob meet in their direct chat.
 * `make demo` runs it after the multi-process demo (scripts/demo.sh).
 */
#include <momento/im.h>

#include "key_file.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE "instant-messaging"
#define ROOM "room-1"

typedef struct participant {
  const char *name;
  mim_client *client;
  mim_session *session;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int received;
} participant;

static const char *endpoint;

static void die(const char *what, mim_status st) {
  fprintf(stderr, "demo: %s failed: %s (%s)\n", what, mim_status_name(st), mim_last_error_detail());
  exit(1);
}

static mim_client *client_from_key(const char *key) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = o.control_host = o.token_host = endpoint;
  o.tls = MIM_TLS_OFF; /* mim-local on loopback */
  mim_client *c;
  mim_status st = mim_client_create(&o, &c);
  if (st != MIM_OK)
    die("mim_client_create", st);
  return c;
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  participant *p = user;
  char when[16] = "";
  time_t secs = (time_t)(m->timestamp_ms / 1000);
  struct tm tm;
  if (gmtime_r(&secs, &tm))
    strftime(when, sizeof when, "%H:%M:%S", &tm);
  if (m->kind == MIM_MESSAGE_CHAT)
    printf("  [%-5s sees] %s %s%-6s %s   (token id: %s)\n", p->name, when,
           m->from_history ? "history " : "live    ", m->from, m->text,
           *m->publisher_id ? m->publisher_id : "-");
  else
    printf("  [%-5s sees] a foreign value of %zu bytes\n", p->name, m->raw_len);
  fflush(stdout);
  pthread_mutex_lock(&p->mu);
  p->received++;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Waits (at most 5 s) until p has received `count` messages in all. */
static void wait_for(participant *p, int count) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  pthread_mutex_lock(&p->mu);
  while (p->received < count)
    if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0)
      break;
  int got = p->received;
  pthread_mutex_unlock(&p->mu);
  if (got < count) {
    fprintf(stderr, "demo: %s received %d of %d messages\n", p->name, got, count);
    exit(1);
  }
}

static void join(participant *p, mim_client *root, mim_chat_mode mode) {
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  mim_disposable_token *tok;
  mim_status st = mode == MIM_CHAT_MODERATED
                      ? mim_token_generate_moderated(root, CACHE, ROOM, 3600, p->name, &tok)
                      : mim_token_generate_client_only(root, CACHE, ROOM, 3600, p->name, &tok);
  if (st != MIM_OK)
    die("minting a token", st);
  p->client = client_from_key(tok->credential);
  mim_disposable_token_free(tok);
  mim_join_options jo;
  mim_join_options_init(&jo);
  jo.display_name = p->name;
  jo.mode = mode;
  st = mim_join(p->client, CACHE, ROOM, &jo, on_message, p, &p->session);
  if (st != MIM_OK)
    die("mim_join", st);
  printf("%s joined %s (%s mode)\n", p->name, ROOM,
         mode == MIM_CHAT_MODERATED ? "moderated" : "client-only");
}

static void say(participant *p, const char *text) {
  printf("%s says: %s\n", p->name, text);
  fflush(stdout);
  mim_status st = mim_send(p->session, text, NULL);
  if (st != MIM_OK)
    die("mim_send", st);
}

static void part(participant *p) {
  mim_leave(p->session);
  mim_client_free(p->client);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
}

/* Alice and Bob each get the token of their direct chat (the vendor's job, played by the
 * root key) and meet there: the same chat id for both, naming neither. */
static void direct_chat(participant *a, participant *b, mim_client *root) {
  participant *both[] = {a, b};
  char chat[MIM_DIRECT_CHAT_ID_SIZE];
  mim_status st = mim_direct_chat_id(a->name, b->name, chat);
  if (st != MIM_OK)
    die("mim_direct_chat_id", st);
  for (int i = 0; i < 2; i++) {
    participant *p = both[i];
    mim_disposable_token *tok;
    st = mim_token_generate_direct(root, CACHE, p->name, both[1 - i]->name, MIM_CHAT_CLIENT_ONLY,
                                   3600, &tok);
    if (st != MIM_OK)
      die("mim_token_generate_direct", st);
    mim_client *c = client_from_key(tok->credential);
    mim_disposable_token_free(tok);
    mim_leave(p->session); /* out of the room, into the direct chat */
    mim_client_free(p->client);
    p->client = c;
    p->received = 0;
    mim_join_options jo;
    mim_join_options_init(&jo);
    jo.display_name = p->name;
    st = mim_join(p->client, CACHE, chat, &jo, on_message, p, &p->session);
    if (st != MIM_OK)
      die("mim_join (direct chat)", st);
    printf("%s joined the direct chat %s\n", p->name, chat);
  }
  say(a, "just between us, bob");
  wait_for(b, 1);
}

/* The moderator masks "darn" and drops anything containing "spam". */
static mim_moderation_verdict moderate(const mim_message *m, char **new_text, void *user) {
  (void)user;
  if (strstr(m->text, "spam"))
    return MIM_MODERATION_REJECT;
  const char *bad = strstr(m->text, "darn");
  if (!bad)
    return MIM_MODERATION_ACCEPT;
  *new_text = strdup(m->text);
  if (!*new_text)
    return MIM_MODERATION_REJECT;
  memset(*new_text + (bad - m->text), '*', 4);
  return MIM_MODERATION_REWRITE;
}

/* The moderator gets exactly what it needs: the room's list, its input topic and its
 * topic. Its token id "moderator" is what receivers see as the trusted publisher. */
static mim_client *moderator_client(mim_client *root) {
  mim_permissions *perms = mim_permissions_new();
  if (!perms)
    die("mim_permissions_new", MIM_ERR_NO_MEMORY);
  mim_status st = mim_permissions_add_cache(perms, MIM_CACHE_READ_WRITE, CACHE, ROOM, false);
  if (st == MIM_OK)
    st = mim_permissions_add_topic(perms, MIM_TOPIC_PUBLISH_SUBSCRIBE, CACHE, ROOM, false);
  if (st == MIM_OK)
    st = mim_permissions_add_topic(perms, MIM_TOPIC_SUBSCRIBE_ONLY, CACHE, ROOM "-input", false);
  mim_disposable_token *tok = NULL;
  if (st == MIM_OK)
    st = mim_token_generate(root, perms, 3600, "moderator", &tok);
  mim_permissions_free(perms);
  if (st != MIM_OK)
    die("minting the moderator's token", st);
  mim_client *c = client_from_key(tok->credential);
  mim_disposable_token_free(tok);
  return c;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ENDPOINT ROOT_KEY_FILE\n", argv[0]);
    return 2;
  }
  endpoint = argv[1];
  char *root_key = read_key_file(argv[2]);
  if (!root_key) {
    perror(argv[2]);
    return 1;
  }
  mim_client *root = client_from_key(root_key);
  free_key(root_key);
  mim_status st = mim_cache_create(root, CACHE);
  if (st != MIM_OK && st != MIM_ERR_ALREADY_EXISTS)
    die("mim_cache_create", st);

  mim_client *moderator = moderator_client(root);
  const char *rooms[] = {ROOM};
  mim_moderator *mod;
  st = mim_moderator_start(moderator, CACHE, rooms, 1, 100, moderate, NULL, &mod);
  if (st != MIM_OK)
    die("mim_moderator_start", st);
  printf("moderator watching %s-input\n\n", ROOM);

  participant alice = {.name = "alice"}, bob = {.name = "bob"}, dave = {.name = "dave"},
              carol = {.name = "carol"};
  join(&alice, root, MIM_CHAT_CLIENT_ONLY);
  join(&bob, root, MIM_CHAT_CLIENT_ONLY);
  join(&dave, root, MIM_CHAT_MODERATED);
  printf("\n");
  say(&alice, "hi bob, this is alice");
  wait_for(&bob, 1);
  say(&bob, "hello alice! good to see you");
  wait_for(&alice, 2);
  say(&dave, "dave here, through the moderator: this is darn fast");
  wait_for(&alice, 3);
  say(&dave, "buy cheap spam now");
  say(&alice, "bye for now");
  wait_for(&bob, 4);

  printf("\ncarol joins late and gets the history first:\n");
  join(&carol, root, MIM_CHAT_CLIENT_ONLY);
  wait_for(&carol, 4);

  mim_message_list *hist;
  st = mim_history(carol.session, 0, &hist);
  if (st != MIM_OK)
    die("mim_history", st);
  printf("\nhistory of %s (%zu messages, the spam was rejected):\n", ROOM, hist->count);
  for (size_t i = 0; i < hist->count; i++)
    printf("  %zu. %-6s %s\n", i + 1, hist->messages[i].from, hist->messages[i].text);
  mim_message_list_free(hist);

  printf("\nalice and bob open their direct chat:\n");
  direct_chat(&alice, &bob, root);

  part(&carol);
  part(&dave);
  part(&bob);
  part(&alice);
  mim_moderator_stop(mod);
  mim_client_free(moderator);
  mim_client_free(root);
  printf("\ndemo finished\n");
  return 0;
}
