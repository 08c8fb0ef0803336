/*
 * A tour of the C API: a scripted chat in one process against a running mim-local.
 *
 *   tour ENDPOINT ROOT_KEY_FILE
 *
 * The root (super-user) key plays the token vendor: it mints one disposable token per
 * participant, scoped by the two policies of the pattern. Alice and Bob chat in
 * client-only mode; Dave writes in moderated mode and a moderator masks a word; Carol
 * joins late and gets the history first; then a reply, an edit, a reaction and a deletion,
 * typing and presence, read markers and a dictionary; last Alice and Bob meet in their
 * direct chat.
 * `make demo` runs it after the multi-process demo (scripts/demo.sh).
 */
#include <momento/dictionary.h>
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
  bool presence;   /* joins with presence on */
  bool narrate;    /* prints the updates it sees */
  int updates;     /* on_update calls */
  bool saw_typing; /* on_presence said someone is typing */
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
    printf("  [%-5s sees] %s %s%-6s %s%s   (token id: %s)\n", p->name, when,
           m->from_history ? "history " : "live    ", m->from, m->text,
           *m->reply_to ? "   [a reply]" : "", *m->publisher_id ? m->publisher_id : "-");
  else
    printf("  [%-5s sees] a foreign value of %zu bytes\n", p->name, m->raw_len);
  fflush(stdout);
  pthread_mutex_lock(&p->mu);
  p->received++;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Edits, deletions and reactions of messages delivered before. */
static void on_update(mim_session *s, const mim_message *m, mim_update_kind what, void *user) {
  (void)s;
  participant *p = user;
  static const char *whats[] = {"edited", "deleted", "reactions"};
  char reactions[128] = "";
  for (size_t i = 0, n = 0; i < m->n_reactions && n < sizeof reactions; i++) {
    int w = snprintf(reactions + n, sizeof reactions - n, "  %s by %s", m->reactions[i].key,
                     m->reactions[i].count ? m->reactions[i].users[0] : "-");
    n += w > 0 ? (size_t)w : 0;
  }
  if (p->narrate) { /* every reader sees it: one of them tells */
    printf("  [%-5s sees] update (%s): %s \"%s\"%s\n", p->name, whats[what], m->from, m->text,
           reactions);
    fflush(stdout);
  }
  pthread_mutex_lock(&p->mu);
  p->updates++;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Joins and leaves come and go with timing: the tour shows only typing. */
static void on_presence(mim_session *s, mim_presence_change change, const mim_member *member,
                        void *user) {
  (void)s;
  participant *p = user;
  if (change != MIM_PRESENCE_TYPING)
    return;
  printf("  [%-5s sees] %s is typing\n", p->name, member->display_name);
  fflush(stdout);
  pthread_mutex_lock(&p->mu);
  p->saw_typing = true;
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* Waits (at most 5 s) until *counter (guarded by p->mu) reaches count. */
static void wait_count(participant *p, const int *counter, int count, const char *what) {
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  pthread_mutex_lock(&p->mu);
  while (*counter < count)
    if (pthread_cond_timedwait(&p->cv, &p->mu, &until) != 0)
      break;
  int got = *counter;
  pthread_mutex_unlock(&p->mu);
  if (got < count) {
    fprintf(stderr, "demo: %s received %d of %d %s\n", p->name, got, count, what);
    exit(1);
  }
}

/* How many messages p has received so far (its event thread counts them). */
static int received_now(participant *p) {
  pthread_mutex_lock(&p->mu);
  int n = p->received;
  pthread_mutex_unlock(&p->mu);
  return n;
}

/* Waits (at most 5 s) until p has received `count` messages in all. */
static void wait_for(participant *p, int count) {
  wait_count(p, &p->received, count, "messages");
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
  jo.on_update = on_update;
  if (p->presence)
    jo.on_presence = on_presence; /* presence on: alice and bob see each other type */
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

static void check(const char *what, mim_status st) {
  if (st != MIM_OK)
    die(what, st);
}

/* A reply, its edit, a reaction and its deletion; on_update reports each. */
static void message_events(participant *alice, participant *bob,
                           char question[MIM_MESSAGE_ID_SIZE]) {
  check("mim_message_id_new", mim_message_id_new(question));
  printf("alice picks her question's id (mim_message_id_new) and asks:\n");
  mim_send_options so = MIM_SEND_OPTIONS_INIT;
  so.id = question;
  int bob_had = received_now(bob), alice_had = received_now(alice);
  check("mim_send_with_options",
        mim_send_with_options(alice->session, "who brings coffee?", &so, NULL));
  wait_for(bob, bob_had + 1);
  printf("bob replies to it (mim_send_with_options, reply_to):\n");
  char reply[MIM_MESSAGE_ID_SIZE];
  so = (mim_send_options)MIM_SEND_OPTIONS_INIT;
  so.reply_to = question;
  check("mim_send_with_options", mim_send_with_options(bob->session, "I do", &so, reply));
  wait_for(alice, alice_had + 2);
  printf("bob edits his reply (mim_edit):\n");
  check("mim_edit", mim_edit(bob->session, reply, "I do, and croissants", NULL));
  wait_count(alice, &alice->updates, 1, "updates");
  printf("alice reacts to it (mim_react):\n");
  check("mim_react", mim_react(alice->session, reply, "+1", true, NULL));
  wait_count(alice, &alice->updates, 2, "updates");
  printf("bob deletes it (mim_delete):\n");
  check("mim_delete", mim_delete(bob->session, reply, NULL));
  wait_count(alice, &alice->updates, 3, "updates");
}

/* Bob types; alice sees it, and mim_members lists him as typing. */
static void typing(participant *alice, participant *bob) {
  printf("bob starts typing (mim_set_typing):\n");
  check("mim_set_typing", mim_set_typing(bob->session, true));
  struct timespec until;
  clock_gettime(CLOCK_REALTIME, &until);
  until.tv_sec += 5;
  pthread_mutex_lock(&alice->mu);
  while (!alice->saw_typing && pthread_cond_timedwait(&alice->cv, &alice->mu, &until) == 0)
    ;
  pthread_mutex_unlock(&alice->mu);
  mim_member_list *who;
  check("mim_members", mim_members(alice->session, &who));
  for (size_t i = 0; i < who->count; i++)
    if (strcmp(who->members[i].user_id, "bob") == 0)
      printf("alice asks who is here (mim_members): bob%s\n",
             who->members[i].typing ? ", typing" : "");
  mim_member_list_free(who);
  check("mim_set_typing", mim_set_typing(bob->session, false));
}

/* Carol marks the question read; one message comes after it. */
static void read_markers(participant *alice, participant *carol, const char *question) {
  int had = received_now(carol);
  say(alice, "see you at ten");
  wait_for(carol, had + 1);
  check("mim_mark_read", mim_mark_read(carol->session, question));
  size_t unread;
  bool exact;
  check("mim_unread_count", mim_unread_count(carol->session, &unread, &exact));
  printf("carol marks alice's question read (mim_mark_read): %zu unread after it "
         "(mim_unread_count; bob's reply was deleted)\n",
         unread);
  mim_read_marker_list *marks;
  check("mim_read_markers", mim_read_markers(carol->session, &marks));
  for (size_t i = 0; i < marks->count; i++)
    printf("read markers (mim_read_markers): %s read up to %s\n", marks->markers[i].user_id,
           strcmp(marks->markers[i].message_id, question) == 0 ? "the question" : "another");
  mim_read_marker_list_free(marks);
}

/* A dictionary of the cache (what read markers are made of). */
static void dictionary(mim_client *root) {
  mim_dictionary_write_options wo = MIM_DICTIONARY_WRITE_OPTIONS_INIT;
  check("mim_dictionary_set_field",
        mim_dictionary_set_field(root, CACHE, "tour-settings", "topic", 5, "coffee", 6, &wo));
  uint8_t *value = NULL;
  bool found = false;
  check("mim_dictionary_get_field",
        mim_dictionary_get_field(root, CACHE, "tour-settings", "topic", 5, &value, NULL, &found));
  mim_dictionary_entries *all;
  check("mim_dictionary_fetch", mim_dictionary_fetch(root, CACHE, "tour-settings", &all));
  printf("dictionary tour-settings: topic = %s (get), %zu field (fetch)\n",
         found ? (char *)value : "?", all->count);
  free(value);
  mim_dictionary_entries_free(all);
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

  participant alice = {.name = "alice", .presence = true, .narrate = true},
              bob = {.name = "bob", .presence = true}, dave = {.name = "dave"},
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

  printf("\nnew in 0.3: replies, edits, reactions, deletions\n");
  char question[MIM_MESSAGE_ID_SIZE];
  message_events(&alice, &bob, question);
  printf("\ntyping and presence:\n");
  typing(&alice, &bob);
  printf("\nread markers and dictionaries:\n");
  read_markers(&alice, &carol, question);
  dictionary(root);

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
