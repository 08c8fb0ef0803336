/* mim-chat-peer: one chat session of our C library driven line by line, so the protocol
 * test (test/protocol.test.js) can put C clients and the Node client written from
 * docs/PROTOCOL.md in one chat and check what each side sees.
 *
 *   MIM_PEER_KEY=<v1 key or token> MIM_PEER_ENDPOINT=127.0.0.1:PORT \
 *     mim-chat-peer CACHE CHAT USER_ID NAME client|moderated
 *
 * After the join it prints "joined". Commands on stdin, one per line:
 *   send TEXT | reply REF TEXT   prints "pending ID" (the id, chosen before the send),
 *                                then "sent ID" or "error NAME detail"
 *   edit REF TEXT | delete REF | react REF KEY on|off    prints "sent EVENT_ID" or error
 *   typing on|off                prints "ok" or error
 *   members                      prints "members JSON" (array of {user, name, trusted, typing})
 *   quit                         leaves and exits 0
 * Callbacks print "event JSON": {"ev":"message"|"update", "id", "text", "sender",
 * "trusted", "mine", "reply_to", "edited", "deleted", "history", "reactions":{key:[users]},
 * "what" (update only)} and {"ev":"presence", "change", "user", "name", "trusted"}.
 * Plaintext only; output is flushed per line. */
#include <momento/im.h>

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void print_line(const char *prefix, json_t *obj) {
  char *s = json_dumps(obj, JSON_COMPACT);
  pthread_mutex_lock(&out_mu);
  printf("%s %s\n", prefix, s ? s : "{}");
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
  free(s);
  json_decref(obj);
}

static void say(const char *fmt, const char *a, const char *b) {
  pthread_mutex_lock(&out_mu);
  printf(fmt, a, b);
  fflush(stdout);
  pthread_mutex_unlock(&out_mu);
}

static json_t *message_json(const char *ev, const mim_message *m) {
  json_t *reactions = json_object();
  for (size_t i = 0; i < m->n_reactions; i++) {
    json_t *users = json_array();
    for (size_t j = 0; j < m->reactions[i].count; j++)
      json_array_append_new(users, json_string(m->reactions[i].users[j]));
    json_object_set_new(reactions, m->reactions[i].key, users);
  }
  return json_pack("{s:s,s:s,s:s,s:s,s:b,s:b,s:s,s:b,s:b,s:b,s:o}", "ev", ev, "id", m->id,
                   "text", m->text, "sender", m->sender_id, "trusted", m->sender_trusted, "mine",
                   m->mine, "reply_to", m->reply_to, "edited", m->edited, "deleted", m->deleted,
                   "history", m->from_history, "reactions", reactions);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)user;
  if (m->kind == MIM_MESSAGE_CHAT)
    print_line("event", message_json("message", m));
}

static void on_update(mim_session *s, const mim_message *m, mim_update_kind what, void *user) {
  (void)s;
  (void)user;
  static const char *const names[] = {"edited", "deleted", "reactions"};
  json_t *obj = message_json("update", m);
  json_object_set_new(obj, "what", json_string((unsigned)what < 3 ? names[what] : "?"));
  print_line("event", obj);
}

static void on_presence(mim_session *s, mim_presence_change change, const mim_member *who,
                        void *user) {
  (void)s;
  (void)user;
  static const char *const names[] = {"joined", "left", "typing", "stopped_typing"};
  print_line("event", json_pack("{s:s,s:s,s:s,s:s,s:b}", "ev", "presence", "change",
                                (unsigned)change < 4 ? names[change] : "?", "user", who->user_id,
                                "name", who->display_name, "trusted", who->trusted));
}

static void result(mim_status st, const char *id) {
  if (st == MIM_OK)
    say("sent %s%s\n", id, "");
  else
    say("error %s %s\n", mim_status_name(st), mim_last_error_detail());
}

/* Splits "A rest" at the first space: returns rest (NULL when there is none). */
static char *split(char *s) {
  char *sp = strchr(s, ' ');
  if (!sp)
    return NULL;
  *sp = '\0';
  return sp + 1;
}

static void cmd_send(mim_session *s, char *args, bool reply) {
  const char *reply_to = NULL;
  char *text = args;
  if (reply) {
    text = split(args);
    reply_to = args;
    if (!text) {
      say("error %s %s\n", "usage", "reply REF TEXT");
      return;
    }
  }
  char id[MIM_MESSAGE_ID_SIZE];
  mim_status st = mim_message_id_new(id);
  if (st != MIM_OK) {
    result(st, "");
    return;
  }
  say("pending %s%s\n", id, "");
  mim_send_options o = MIM_SEND_OPTIONS_INIT;
  o.id = id;
  o.reply_to = reply_to;
  char out[MIM_MESSAGE_ID_SIZE];
  result(mim_send_with_options(s, text, &o, out), out);
}

static void cmd_event(mim_session *s, const char *cmd, char *args) {
  char id[MIM_MESSAGE_ID_SIZE] = "";
  char *rest = split(args);
  mim_status st;
  if (strcmp(cmd, "edit") == 0 && rest) {
    st = mim_edit(s, args, rest, id);
  } else if (strcmp(cmd, "delete") == 0) {
    st = mim_delete(s, args, id);
  } else if (strcmp(cmd, "react") == 0 && rest) {
    char *onoff = split(rest);
    if (!onoff) {
      say("error %s %s\n", "usage", "react REF KEY on|off");
      return;
    }
    st = mim_react(s, args, rest, strcmp(onoff, "on") == 0, id);
  } else {
    say("error %s %s\n", "usage", cmd);
    return;
  }
  result(st, id);
}

static void cmd_members(mim_session *s) {
  mim_member_list *list = NULL;
  mim_status st = mim_members(s, &list);
  if (st != MIM_OK) {
    result(st, "");
    return;
  }
  json_t *arr = json_array();
  for (size_t i = 0; i < list->count; i++) {
    const mim_member *m = &list->members[i];
    json_array_append_new(arr, json_pack("{s:s,s:s,s:b,s:b}", "user", m->user_id, "name",
                                         m->display_name, "trusted", m->trusted, "typing",
                                         m->typing));
  }
  mim_member_list_free(list);
  print_line("members", arr);
}

static void run_command(mim_session *s, char *line) {
  char *args = split(line);
  if (strcmp(line, "send") == 0 && args) {
    cmd_send(s, args, false);
  } else if (strcmp(line, "reply") == 0 && args) {
    cmd_send(s, args, true);
  } else if ((strcmp(line, "edit") == 0 || strcmp(line, "delete") == 0 ||
              strcmp(line, "react") == 0) &&
             args) {
    cmd_event(s, line, args);
  } else if (strcmp(line, "typing") == 0 && args) {
    mim_status st = mim_set_typing(s, strcmp(args, "on") == 0);
    if (st == MIM_OK)
      say("ok%s%s\n", "", "");
    else
      result(st, "");
  } else if (strcmp(line, "members") == 0) {
    cmd_members(s);
  } else {
    say("error %s %s\n", "usage", line);
  }
}

static mim_client *connect_client(void) {
  const char *key = getenv("MIM_PEER_KEY");
  const char *ep = getenv("MIM_PEER_ENDPOINT");
  if (!key || !ep) {
    fprintf(stderr, "MIM_PEER_KEY and MIM_PEER_ENDPOINT must be set\n");
    return NULL;
  }
  mim_client_options o = MIM_CLIENT_OPTIONS_INIT;
  o.api_key = key;
  o.cache_host = ep;
  o.control_host = ep;
  o.token_host = ep;
  o.tls = MIM_TLS_OFF;
  mim_client *c = NULL;
  if (mim_client_create(&o, &c) != MIM_OK) {
    fprintf(stderr, "client: %s\n", mim_last_error_detail());
    return NULL;
  }
  return c;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: mim-chat-peer CACHE CHAT USER_ID NAME client|moderated\n");
    return 2;
  }
  mim_client *client = connect_client();
  if (!client)
    return 2;
  mim_join_options jo = MIM_JOIN_OPTIONS_INIT;
  jo.user_id = argv[3];
  jo.display_name = argv[4];
  jo.mode = strcmp(argv[5], "moderated") == 0 ? MIM_CHAT_MODERATED : MIM_CHAT_CLIENT_ONLY;
  jo.on_update = on_update;
  jo.on_presence = on_presence;
  jo.presence_heartbeat_ms = 1000;
  mim_session *s = NULL;
  mim_status st = mim_join(client, argv[1], argv[2], &jo, on_message, NULL, &s);
  if (st != MIM_OK) {
    fprintf(stderr, "join: %s: %s\n", mim_status_name(st), mim_last_error_detail());
    mim_client_free(client);
    return 2;
  }
  say("joined%s%s\n", "", "");
  char line[8192];
  while (fgets(line, sizeof line, stdin)) {
    line[strcspn(line, "\n")] = '\0';
    if (strcmp(line, "quit") == 0)
      break;
    run_command(s, line);
  }
  mim_leave(s);
  mim_client_free(client);
  return 0;
}
