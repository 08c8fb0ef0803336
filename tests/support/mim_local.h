/* Test helper: run build/bin/mim-local on a free loopback port for the length of a test.
 *
 *   mim_local *srv;
 *   const char *caches[] = {"instant-messaging", NULL};
 *   mim_local_opts o = {.caches = caches};
 *   assert_int_equal(mim_local_start(&o, &srv), 0);
 *   ... connect to srv->endpoint ("127.0.0.1:PORT") with srv->root_key ...
 *   assert_int_equal(mim_local_stop(srv), 0);   // 0 = the server exited cleanly with status 0
 *
 * The binary is $MIM_LOCAL_BIN, else $MIM_BUILD/bin/mim-local ($MIM_BUILD defaults to "build").
 * The server gets --port 0 --port-file/--root-key-file in a private temp dir (removed again
 * by stop/kill), stdin from /dev/null, and its stdout/stderr go to ours so its log lands in
 * the test log. On Linux the child is tied to the thread that started it
 * (PR_SET_PDEATHSIG=SIGTERM): if the test process dies or aborts, the server is terminated
 * too, so start servers from the test's main thread (or a thread that outlives them).
 * Plain libc/POSIX (+ Linux prctl/pidfd where available). Not thread-safe per handle. */
#ifndef MIM_TESTS_MIM_LOCAL_H
#define MIM_TESTS_MIM_LOCAL_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mim_local_opts {
  /* NULL-terminated cache names (--cache NAME each), or NULL. */
  const char *const *caches;
  /* Non-zero: --no-auth (any/empty token is super-user). */
  int no_auth;
  /* > 0: --heartbeat-ms N. */
  int heartbeat_ms;
  /* >= 0 together with set_replay: --replay N (0 keeps nothing for resume). */
  int replay;
  int set_replay;
  /* e.g. "debug" for --log-level; NULL = server default. */
  const char *log_level;
  /* NULL-terminated extra arguments appended verbatim, or NULL. */
  const char *const *extra_args;
  /* Start-up deadline; <= 0 means 10000 ms. */
  int start_timeout_ms;
  /* Override the binary path (tests of this helper); NULL = environment/default. */
  const char *binary;
  /* > 0: the server alone runs with this RLIMIT_FSIZE soft limit (bytes) and SIGXFSZ at
   * its default action, as a shell would start it. Set in the child, so the test
   * process (whose log may already be larger) never holds the limit. */
  long long file_size_limit;
} mim_local_opts;

typedef struct mim_local {
  pid_t pid;
  int port;           /* the port the server chose */
  char endpoint[64];  /* "127.0.0.1:PORT" */
  char *root_key;     /* v1 credential (base64 JSON {"endpoint","api_key"}), NUL-terminated */
  char dir[64];       /* private temp dir holding port + root key files */
  char port_file[96]; /* paths inside dir */
  char key_file[96];
  int pidfd;  /* Linux pidfd of the child, or -1 */
  int out_fd; /* read end of the child's stdout pipe (forwarded to ours), or -1 */
  int reaped; /* waitpid done; wstatus valid */
  int wstatus;
  struct mim_local *next_live; /* the helper's list of servers not stopped yet */
  pid_t started_by;            /* the process that started it (the list's owner) */
} mim_local;

/* Spawns the server and waits (bounded) until it is listening: it has printed
 * "mim-local listening on HOST:PORT" and written the port file (same port) and the root key.
 * Returns 0 and *out on success; -1 (message on stderr, child reaped, files removed)
 * if it could not start, exited early, or missed the deadline. */
int mim_local_start(const mim_local_opts *opts, mim_local **out);

/* Servers still running when the process exits (a test failed before stopping its
 * server) are killed and freed by an atexit handler, with a line on stderr. */

/* SIGTERM, wait up to 10 s, then SIGKILL. Frees s and removes its files.
 * Returns the exit code if the server exited by itself (0 = clean), 128+signal if a signal
 * ended it (so 137 means the SIGKILL fallback was needed), -1 if it could not be reaped. */
int mim_local_stop(mim_local *s);

/* Like stop but with SIGKILL at once (crash tests); same return value (normally 137). */
int mim_local_kill(mim_local *s);

/* Sends sig to the server without waiting (e.g. SIGUSR1 test controls). 0 or -1. */
int mim_local_signal(const mim_local *s, int sig);

/* SIGSTOP, then waits until every thread of the server is stopped: kill() only starts a
 * group stop and each thread stops when it next runs, so on a loaded machine a thread
 * woken by a request could still answer it after kill() returned. timeout_ms is scaled by
 * test_time_scale(). 0 when frozen, -1 on error or timeout. Thaw with SIGCONT. */
int mim_local_freeze(const mim_local *s, int timeout_ms);

/* Non-zero while the server process is still running (it is not reaped). */
int mim_local_alive(mim_local *s);

#ifdef __cplusplus
}
#endif

#endif
