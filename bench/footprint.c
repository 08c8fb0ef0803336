/* Footprint of an application holding libmomento-im (bench/footprint.sh runs it): linked
 * against the shared library like an application, it reports on one line of JSON the
 * process's RSS and thread count before any client, after one client with one joined
 * session, and the RSS growth per idle joined session over --sessions more.
 *   footprint --endpoint HOST:PORT --key-file F [--cache C] [--tls-ca PEM] [--sessions N]
 * With --tls-ca the client uses TLS (MIM_TLS_ON) trusting that PEM. */
#include <momento/client.h>
#include <momento/im.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *arg_str(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0)
      return argv[i + 1];
  return dflt;
}

/* A field of /proc/self/status (VmRSS in KiB, Threads), or -1. */
static long status_field(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (f && fgets(line, sizeof line, f))
    if (strncmp(line, field, n) == 0 && line[n] == ':')
      v = strtol(line + n + 1, NULL, 10);
  if (f)
    fclose(f);
  return v;
}

static void die(const char *what, mim_status st) {
  fprintf(stderr, "footprint: %s: %s (%s)\n", what, mim_status_name(st), mim_last_error_detail());
  exit(1);
}

static void on_message(mim_session *s, const mim_message *m, void *user) {
  (void)s;
  (void)m;
  (void)user;
}

static mim_session *join(mim_client *c, const char *cache, const char *chat) {
  mim_session *s = NULL;
  mim_status st = mim_join(c, cache, chat, NULL, on_message, NULL, &s);
  if (st != MIM_OK)
    die("mim_join", st);
  return s;
}

static int read_key(const char *path, char *key, size_t cap) {
  FILE *f = fopen(path, "r");
  if (!f || !fgets(key, (int)cap, f)) {
    perror(path);
    if (f)
      fclose(f);
    return -1;
  }
  fclose(f);
  key[strcspn(key, "\r\n")] = '\0';
  return 0;
}

int main(int argc, char **argv) {
  const char *endpoint = arg_str(argc, argv, "--endpoint", NULL);
  const char *key_file = arg_str(argc, argv, "--key-file", NULL);
  const char *cache = arg_str(argc, argv, "--cache", "bench");
  const char *ca = arg_str(argc, argv, "--tls-ca", NULL);
  long sessions = strtol(arg_str(argc, argv, "--sessions", "100"), NULL, 10);
  static char key[4096];
  if (!endpoint || !key_file || sessions < 1 || read_key(key_file, key, sizeof key) != 0) {
    fprintf(stderr, "usage: footprint --endpoint HOST:PORT --key-file FILE [--cache C] "
                    "[--tls-ca PEM] [--sessions N>0]\n");
    return 2;
  }
  long rss0 = status_field("VmRSS"), threads0 = status_field("Threads");
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.cache_host = o.control_host = o.token_host = endpoint;
  o.tls = ca ? MIM_TLS_ON : MIM_TLS_OFF;
  o.ca_file = ca;
  mim_client *c = NULL;
  mim_status st = mim_client_create(&o, &c);
  if (st != MIM_OK)
    die("mim_client_create", st);
  mim_session **ss = calloc((size_t)sessions + 1, sizeof *ss);
  ss[0] = join(c, cache, "footprint-0");
  long rss1 = status_field("VmRSS"), threads1 = status_field("Threads");
  char chat[64];
  for (long i = 1; i <= sessions; i++) {
    snprintf(chat, sizeof chat, "footprint-%ld", i);
    ss[i] = join(c, cache, chat);
  }
  long rss2 = status_field("VmRSS"), threads2 = status_field("Threads");
  printf("{\"tls\":%s,\"rss_start_kib\":%ld,\"threads_start\":%ld,\"rss_one_session_kib\":%ld,"
         "\"threads_one_session\":%ld,\"sessions\":%ld,\"rss_sessions_kib\":%ld,"
         "\"threads_sessions\":%ld,\"rss_per_session_bytes\":%.0f}\n",
         ca ? "true" : "false", rss0, threads0, rss1, threads1, sessions + 1, rss2, threads2,
         (double)(rss2 - rss1) * 1024.0 / (double)sessions);
  for (long i = 0; i <= sessions; i++)
    mim_leave(ss[i]);
  free(ss);
  mim_client_free(c);
  return 0;
}
