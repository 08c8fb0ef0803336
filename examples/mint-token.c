/*
 * mint-token: prints a disposable token for one chat participant.
 *
 *   mint-token --chat ROOM --user NAME [--mode client|moderated] [--cache NAME]
 *              [--endpoint HOST:PORT [--plaintext]] [--key-file PATH] [--valid-for SECONDS]
 *
 * The privileged key (from --key-file or MOMENTO_API_KEY) mints a token scoped by one of
 * the two policies of the instant-messaging pattern; its token id is NAME, which is what
 * receivers see as the trusted sender. The v1 credential goes to stdout (one line), ready
 * for `chat --key-file`.
 */
#include <momento/im.h>

#include "key_file.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The name this tool was run as (build/examples/mint-token, or installed as mim-mint-token), for
 * its usage line. */
static const char *prog = "mint-token";

static void usage(FILE *out) {
  /* The other tools' names go with ours: "mim-" when installed, none in build/examples. */
  const char *pre = strncmp(prog, "mim-", 4) == 0 ? "mim-" : "";
  fprintf(out,
          "usage: %s --chat ROOM --user NAME [options]\n"
          "\n"
          "  --chat ROOM          the room the token is for (required)\n"
          "  --user NAME          token id: the trusted sender name (required)\n"
          "  --mode MODE          client (read/write the room, default) or moderated\n"
          "                       (read the room, publish only to ROOM-input)\n"
          "  --cache NAME         cache holding the room (default instant-messaging)\n"
          "  --endpoint HOST:PORT server for every plane (default: from the key)\n"
          "  --plaintext          no TLS (default: TLS unless the endpoint is loopback)\n"
          "  --key-file PATH      privileged key (default: MOMENTO_API_KEY)\n"
          "  --valid-for SECONDS  lifetime of the token (default 3600)\n"
          "  --help               this text\n"
          "\n"
          "The token goes to stdout. Example, with mim-local on its default port 8080:\n"
          "  mim-local --root-key-file /tmp/root.key --cache instant-messaging &\n"
          "  %s --endpoint 127.0.0.1:8080 --key-file /tmp/root.key --chat lobby --user alice "
          "> /tmp/alice.key\n"
          "  %schat --chat lobby --name alice --endpoint 127.0.0.1:8080 --key-file "
          "/tmp/alice.key\n",
          prog, prog, pre);
}

int main(int argc, char **argv) {
  prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  enum { O_CACHE = 256, O_ENDPOINT, O_PLAIN, O_KEYFILE, O_VALID, O_MODE, O_HELP };
  static const struct option longs[] = {{"chat", required_argument, NULL, 'c'},
                                        {"user", required_argument, NULL, 'u'},
                                        {"mode", required_argument, NULL, O_MODE},
                                        {"cache", required_argument, NULL, O_CACHE},
                                        {"endpoint", required_argument, NULL, O_ENDPOINT},
                                        {"plaintext", no_argument, NULL, O_PLAIN},
                                        {"key-file", required_argument, NULL, O_KEYFILE},
                                        {"valid-for", required_argument, NULL, O_VALID},
                                        {"help", no_argument, NULL, O_HELP},
                                        {NULL, 0, NULL, 0}};
  const char *chat = NULL, *user = NULL, *cache = "instant-messaging", *endpoint = NULL,
             *key_file = NULL, *mode = "client";
  bool plaintext = false;
  unsigned long valid_for = 3600;
  int c;
  while ((c = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    char *end;
    switch (c) {
    case 'c':
      chat = optarg;
      break;
    case 'u':
      user = optarg;
      break;
    case O_MODE:
      mode = optarg;
      break;
    case O_CACHE:
      cache = optarg;
      break;
    case O_ENDPOINT:
      endpoint = optarg;
      break;
    case O_PLAIN:
      plaintext = true;
      break;
    case O_KEYFILE:
      key_file = optarg;
      break;
    case O_VALID:
      errno = 0;
      valid_for = strtoul(optarg, &end, 10);
      if (errno || *end || end == optarg || valid_for == 0 || valid_for > 0xffffffffUL) {
        fprintf(stderr, "mint-token: --valid-for wants a positive number of seconds\n");
        return 2;
      }
      break;
    case O_HELP:
      usage(stdout);
      return 0;
    default:
      usage(stderr);
      return 2;
    }
  }
  bool moderated = mode && strcmp(mode, "moderated") == 0;
  if (!chat || !user || optind < argc || (!moderated && strcmp(mode, "client") != 0)) {
    usage(stderr);
    return 2;
  }

  char *key = NULL;
  if (key_file && !(key = read_key_file(key_file))) {
    fprintf(stderr, "mint-token: cannot read a key from %s\n", key_file);
    return 1;
  }
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  if (endpoint)
    o.cache_host = o.control_host = o.token_host = endpoint;
  o.tls = plaintext ? MIM_TLS_OFF : MIM_TLS_AUTO;
  mim_client *client = NULL;
  mim_status st = mim_client_create(&o, &client);
  free_key(key);
  mim_disposable_token *tok = NULL;
  if (st == MIM_OK)
    st = moderated
             ? mim_token_generate_moderated(client, cache, chat, (uint32_t)valid_for, user, &tok)
             : mim_token_generate_client_only(client, cache, chat, (uint32_t)valid_for, user, &tok);
  if (st != MIM_OK) {
    fprintf(stderr, "mint-token: %s (%s)\n", mim_status_name(st), mim_last_error_detail());
    mim_client_free(client);
    return 1;
  }
  printf("%s\n", tok->credential);
  mim_disposable_token_free(tok);
  mim_client_free(client);
  return 0;
}
