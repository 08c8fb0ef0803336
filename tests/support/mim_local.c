/* Spawns and stops mim-local for tests; see mim_local.h. */
#include "mim_local.h"

#include "clock.h"
#include "time_scale.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/prctl.h>
#include <sys/syscall.h>
#ifndef F_SETPIPE_SZ
#define F_SETPIPE_SZ 1031 /* Linux fcntl, only declared under _GNU_SOURCE */
#endif
#endif

#define MAX_ARGS 128
/* Longer in slow runs: mim-local under valgrind takes seconds to start and to exit. */
#define STOP_TIMEOUT_MS (10000 * test_time_scale())
#define DEFAULT_START_TIMEOUT_MS (10000 * test_time_scale())
#define READY_LINE "mim-local listening on "

static int open_pidfd(pid_t pid) {
#if defined(__linux__) && defined(SYS_pidfd_open)
  long fd = syscall(SYS_pidfd_open, pid, 0);
  return fd < 0 ? -1 : (int)fd;
#else
  (void)pid;
  return -1;
#endif
}

/* Reaps the child if it has exited; returns 1 once reaped. */
static int try_reap(mim_local *s, int options) {
  if (s->reaped) {
    return 1;
  }
  int st = 0;
  pid_t r;
  do {
    r = waitpid(s->pid, &st, options);
  } while (r < 0 && errno == EINTR);
  if (r == s->pid) {
    s->reaped = 1;
    s->wstatus = st;
    return 1;
  }
  if (r < 0 && errno == ECHILD) { /* someone else reaped it: treat as gone, status unknown */
    s->reaped = 1;
    s->wstatus = -1;
    return 1;
  }
  return 0;
}

static int decode_status(const mim_local *s) {
  if (!s->reaped || s->wstatus == -1) {
    return -1;
  }
  if (WIFEXITED(s->wstatus)) {
    return WEXITSTATUS(s->wstatus);
  }
  if (WIFSIGNALED(s->wstatus)) {
    return 128 + WTERMSIG(s->wstatus);
  }
  return -1;
}

/* Copies whatever the child printed to our stdout; returns -1 at EOF (pipe closed). */
static int pump_output(mim_local *s, char *line, size_t cap, size_t *len) {
  char buf[4096];
  ssize_t n = read(s->out_fd, buf, sizeof buf);
  if (n < 0) {
    return (errno == EINTR || errno == EAGAIN) ? 0 : -1;
  }
  if (n == 0) {
    return -1;
  }
  fwrite(buf, 1, (size_t)n, stdout);
  fflush(stdout);
  /* Keep the text seen so far (bounded) so start can find the ready line. */
  if (line != NULL && *len + 1 < cap) {
    size_t take = (size_t)n < cap - 1 - *len ? (size_t)n : cap - 1 - *len;
    memcpy(line + *len, buf, take);
    *len += take;
    line[*len] = '\0';
  }
  return 0;
}

/* Waits until the child produced output, exited, or timeout_ms passed. */
static void wait_event(mim_local *s, int timeout_ms) {
  struct pollfd fds[2];
  nfds_t n = 0;
  if (s->out_fd >= 0) {
    fds[n].fd = s->out_fd;
    fds[n].events = POLLIN;
    n++;
  }
  if (s->pidfd >= 0) {
    fds[n].fd = s->pidfd;
    fds[n].events = POLLIN;
    n++;
  }
  if (n == 0 || s->pidfd < 0) {
    /* Without a pidfd the exit is only noticed by polling waitpid: keep the steps short. */
    timeout_ms = timeout_ms > 10 ? 10 : timeout_ms;
  }
  if (poll(fds, n, timeout_ms) < 0 && errno != EINTR) {
    return;
  }
  for (nfds_t i = 0; i < n; i++) {
    if (fds[i].fd == s->out_fd && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (pump_output(s, NULL, 0, NULL) < 0) {
        close(s->out_fd);
        s->out_fd = -1;
      }
    }
  }
}

/* Reads a small file into buf (NUL-terminated, trailing whitespace cut); length or -1. */
static long read_small_file(const char *path, char *buf, size_t cap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return -1;
  }
  size_t len = 0;
  for (;;) {
    ssize_t n = read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    len += (size_t)n;
    if (len == cap - 1) {
      break;
    }
  }
  close(fd);
  while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ')) {
    len--;
  }
  buf[len] = '\0';
  return (long)len;
}

static int parse_port(const char *text) {
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || v <= 0 || v > 65535) {
    return -1;
  }
  return (int)v;
}

/* Port from "mim-local listening on HOST:PORT\n" in the output seen so far, or -1. */
static int port_from_ready_line(const char *out) {
  const char *p = strstr(out, READY_LINE);
  if (p == NULL) {
    return -1;
  }
  const char *eol = strchr(p, '\n');
  if (eol == NULL) {
    return -1; /* line not complete yet */
  }
  const char *colon = NULL;
  for (const char *c = p; c < eol; c++) {
    if (*c == ':') {
      colon = c;
    }
  }
  return colon == NULL ? -1 : parse_port(colon + 1);
}

/* 1 when the port file agrees with the ready line and the root key is there. */
static int files_ready(mim_local *s, int line_port) {
  char buf[8192];
  if (read_small_file(s->port_file, buf, 64) <= 0) {
    return 0;
  }
  int port = parse_port(buf);
  if (port < 0 || port != line_port) {
    return 0; /* not written yet, or caught half-written */
  }
  long klen = read_small_file(s->key_file, buf, sizeof buf);
  if (klen <= 0) {
    return 0;
  }
  char *key = strdup(buf);
  if (key == NULL) {
    return 0;
  }
  free(s->root_key);
  s->root_key = key;
  s->port = port;
  snprintf(s->endpoint, sizeof s->endpoint, "127.0.0.1:%d", port);
  return 1;
}

static void remove_files(mim_local *s) {
  if (s->dir[0] == '\0') {
    return;
  }
  unlink(s->port_file);
  unlink(s->key_file);
  rmdir(s->dir);
  s->dir[0] = '\0';
}

/* Servers started and not yet stopped. A failed cmocka assertion leaves its test
 * without reaching mim_local_stop; at exit the ones left are killed and freed, so the
 * failure is not followed by a leak report and a stray process. */
static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static mim_local *live_head;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;

/* Only servers this process started: a forked child that exits holds copies of its
 * parent's handles. */
static void kill_leftovers(void) {
  for (int i = 0; i < 4096; i++) { /* bounded: each pass removes one */
    pthread_mutex_lock(&live_mu);
    mim_local *s = live_head;
    while (s != NULL && s->started_by != getpid())
      s = s->next_live;
    pthread_mutex_unlock(&live_mu);
    if (s == NULL)
      return;
    fprintf(stderr, "mim_local: pid %d still running at exit (its test ended early); killing it\n",
            (int)s->pid);
    (void)mim_local_kill(s);
  }
}

static void register_atexit(void) {
  (void)atexit(kill_leftovers);
}

static void live_add(mim_local *s) {
  (void)pthread_once(&live_once, register_atexit);
  s->started_by = getpid();
  pthread_mutex_lock(&live_mu);
  s->next_live = live_head;
  live_head = s;
  pthread_mutex_unlock(&live_mu);
}

static void live_remove(mim_local *s) {
  pthread_mutex_lock(&live_mu);
  for (mim_local **p = &live_head; *p != NULL; p = &(*p)->next_live) {
    if (*p == s) {
      *p = s->next_live;
      break;
    }
  }
  pthread_mutex_unlock(&live_mu);
}

static void release(mim_local *s) {
  live_remove(s);
  if (s->out_fd >= 0) {
    close(s->out_fd);
  }
  if (s->pidfd >= 0) {
    close(s->pidfd);
  }
  remove_files(s);
  free(s->root_key);
  free(s);
}

static const char *binary_path(const mim_local_opts *o, char *buf, size_t cap) {
  if (o->binary != NULL) {
    return o->binary;
  }
  const char *env = getenv("MIM_LOCAL_BIN");
  if (env != NULL && env[0] != '\0') {
    return env;
  }
  const char *b = getenv("MIM_BUILD");
  snprintf(buf, cap, "%s/bin/mim-local", (b != NULL && b[0] != '\0') ? b : "build");
  return buf;
}

/* Builds argv into args (strings live in num, which must outlive the exec). */
static int build_argv(const mim_local_opts *o, mim_local *s, const char *bin, const char **args,
                      char num[2][24]) {
  int n = 0;
  args[n++] = bin;
  args[n++] = "--host";
  args[n++] = "127.0.0.1";
  args[n++] = "--port";
  args[n++] = "0";
  args[n++] = "--port-file";
  args[n++] = s->port_file;
  args[n++] = "--root-key-file";
  args[n++] = s->key_file;
  for (const char *const *c = o->caches; c != NULL && *c != NULL && n < MAX_ARGS - 12; c++) {
    args[n++] = "--cache";
    args[n++] = *c;
  }
  if (o->no_auth) {
    args[n++] = "--no-auth";
  }
  if (o->heartbeat_ms > 0) {
    snprintf(num[0], sizeof num[0], "%d", o->heartbeat_ms);
    args[n++] = "--heartbeat-ms";
    args[n++] = num[0];
  }
  if (o->set_replay) {
    snprintf(num[1], sizeof num[1], "%d", o->replay);
    args[n++] = "--replay";
    args[n++] = num[1];
  }
  if (o->log_level != NULL) {
    args[n++] = "--log-level";
    args[n++] = o->log_level;
  }
  for (const char *const *e = o->extra_args; e != NULL && *e != NULL; e++) {
    if (n >= MAX_ARGS - 1) {
      return -1;
    }
    args[n++] = *e;
  }
  args[n] = NULL;
  return 0;
}

/* In the child: only async-signal-safe calls from here to exec (the parent may have threads). */
static void exec_child(const char **args, int out_w, int devnull, pid_t parent,
                       long long file_size_limit) {
#ifdef __linux__
  /* Dies with the test: a crashed or aborted test must not leave a server behind. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) {
    _exit(126);
  }
#else
  (void)parent;
#endif
  if (file_size_limit > 0) {
    struct rlimit lim;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    if (getrlimit(RLIMIT_FSIZE, &lim) != 0 || sigaction(SIGXFSZ, &dfl, NULL) != 0) {
      _exit(125);
    }
    lim.rlim_cur = (rlim_t)file_size_limit;
    if (setrlimit(RLIMIT_FSIZE, &lim) != 0) {
      _exit(125);
    }
  }
  dup2(devnull, STDIN_FILENO);
  dup2(out_w, STDOUT_FILENO);
  execv(args[0], (char *const *)args);
  _exit(127);
}

static int spawn(mim_local *s, const char **args, long long file_size_limit) {
  int pipefd[2];
  if (pipe(pipefd) != 0) {
    return -1;
  }
  int devnull = open("/dev/null", O_RDONLY);
  if (devnull < 0) {
    close(pipefd[0]);
    close(pipefd[1]);
    return -1;
  }
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    exec_child(args, pipefd[1], devnull, parent, file_size_limit);
  }
  close(pipefd[1]);
  close(devnull);
  if (pid < 0) {
    close(pipefd[0]);
    return -1;
  }
  fcntl(pipefd[0], F_SETFD, FD_CLOEXEC);
#ifdef F_SETPIPE_SZ
  /* We only read the server's stdout while starting and stopping it; a roomy pipe keeps a
   * chatty server from blocking on stdout in between. */
  (void)fcntl(pipefd[0], F_SETPIPE_SZ, 1 << 20);
#endif
  s->pid = pid;
  s->out_fd = pipefd[0];
  s->pidfd = open_pidfd(pid);
  if (s->pidfd >= 0) {
    fcntl(s->pidfd, F_SETFD, FD_CLOEXEC);
  }
  return 0;
}

/* Waits for the ready line + files; 0 ready, -1 exited or timed out. */
static int wait_ready(mim_local *s, int timeout_ms, const char *bin) {
  char out[4096] = "";
  size_t out_len = 0;
  long long deadline = cmn_mono_ms() + timeout_ms;
  for (;;) {
    int line_port = port_from_ready_line(out);
    if (line_port > 0 && files_ready(s, line_port)) {
      return 0;
    }
    if (try_reap(s, WNOHANG)) {
      fprintf(stderr, "mim_local: %s exited before it was ready (status %d)\n", bin,
              decode_status(s));
      return -1;
    }
    long long left = deadline - cmn_mono_ms();
    if (left <= 0) {
      fprintf(stderr, "mim_local: %s not ready after %d ms (%s)\n", bin, timeout_ms,
              line_port > 0 ? "port/root key file missing" : "no 'listening on' line");
      return -1;
    }
    /* Once the line is out, the files may lag a moment and nothing else will wake us. */
    int step = line_port > 0 || s->out_fd < 0 ? 5 : (int)(left > 1000 ? 1000 : left);
    struct pollfd fds[2] = {{.fd = s->out_fd, .events = POLLIN},
                            {.fd = s->pidfd, .events = POLLIN}};
    int r = poll(fds, 2, s->pidfd < 0 && step > 10 ? 10 : step);
    if (r > 0 && s->out_fd >= 0 && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
      if (pump_output(s, out, sizeof out, &out_len) < 0) {
        close(s->out_fd);
        s->out_fd = -1;
      }
    }
  }
}

int mim_local_start(const mim_local_opts *opts, mim_local **out) {
  static const mim_local_opts defaults = {0};
  const mim_local_opts *o = opts != NULL ? opts : &defaults;
  if (out == NULL) {
    return -1;
  }
  *out = NULL;
  mim_local *s = calloc(1, sizeof *s);
  if (s == NULL) {
    return -1;
  }
  s->pid = -1;
  s->pidfd = -1;
  s->out_fd = -1;
  snprintf(s->dir, sizeof s->dir, "/tmp/mim-local-test-XXXXXX");
  if (mkdtemp(s->dir) == NULL) {
    perror("mim_local: mkdtemp");
    s->dir[0] = '\0';
    release(s);
    return -1;
  }
  snprintf(s->port_file, sizeof s->port_file, "%s/port", s->dir);
  snprintf(s->key_file, sizeof s->key_file, "%s/root-key", s->dir);

  char binbuf[PATH_MAX];
  const char *bin = binary_path(o, binbuf, sizeof binbuf);
  const char *args[MAX_ARGS];
  char num[2][24];
  if (build_argv(o, s, bin, args, num) != 0) {
    fprintf(stderr, "mim_local: too many arguments\n");
    release(s);
    return -1;
  }
  if (spawn(s, args, o->file_size_limit) != 0) {
    perror("mim_local: spawn");
    release(s);
    return -1;
  }
  live_add(s);
  int timeout = o->start_timeout_ms > 0 ? o->start_timeout_ms : DEFAULT_START_TIMEOUT_MS;
  if (wait_ready(s, timeout, bin) != 0) {
    (void)mim_local_kill(s);
    return -1;
  }
  *out = s;
  return 0;
}

/* Waits up to timeout_ms for the child to exit (forwarding its output); 1 if reaped. */
static int wait_exit(mim_local *s, int timeout_ms) {
  long long deadline = cmn_mono_ms() + timeout_ms;
  while (!try_reap(s, WNOHANG)) {
    long long left = deadline - cmn_mono_ms();
    if (left <= 0) {
      return 0;
    }
    wait_event(s, (int)left);
  }
  return 1;
}

static int finish(mim_local *s, int sig, int timeout_ms) {
  if (s == NULL) {
    return -1;
  }
  if (!s->reaped) {
    kill(s->pid, sig);
    if (!wait_exit(s, timeout_ms)) {
      fprintf(stderr, "mim_local: pid %d ignored signal %d for %d ms; sending SIGKILL\n",
              (int)s->pid, sig, timeout_ms);
      kill(s->pid, SIGKILL);
      (void)try_reap(s, 0); /* SIGKILL cannot be ignored: a blocking wait is bounded */
    }
  }
  /* Forward any last output still in the pipe (without blocking on a leaked write end). */
  for (int i = 0; i < 1024 && s->out_fd >= 0; i++) {
    struct pollfd p = {.fd = s->out_fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0 || pump_output(s, NULL, 0, NULL) != 0) {
      break;
    }
  }
  int rc = decode_status(s);
  release(s);
  return rc;
}

int mim_local_stop(mim_local *s) {
  return finish(s, SIGTERM, STOP_TIMEOUT_MS);
}

int mim_local_kill(mim_local *s) {
  return finish(s, SIGKILL, STOP_TIMEOUT_MS);
}

int mim_local_signal(const mim_local *s, int sig) {
  if (s == NULL || s->reaped) {
    return -1;
  }
  return kill(s->pid, sig) == 0 ? 0 : -1;
}

/* Whether every thread of process pid is stopped (state T in /proc/pid/task/N/stat). */
static int all_threads_stopped(pid_t pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
  DIR *d = opendir(path);
  if (!d)
    return 0;
  int stopped = 1;
  struct dirent *de;
  while (stopped && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.')
      continue;
    char stat_path[96], buf[512];
    snprintf(stat_path, sizeof stat_path, "/proc/%d/task/%.32s/stat", (int)pid, de->d_name);
    FILE *f = fopen(stat_path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
      fclose(f);
    buf[n] = '\0';
    const char *close_paren = strrchr(buf, ')'); /* the name before it may hold anything */
    if (close_paren && close_paren[1] == ' ' && close_paren[2] != 'T' && close_paren[2] != 't')
      stopped = 0; /* (a thread that exited meanwhile reads as empty: skipped) */
  }
  closedir(d);
  return stopped;
}

int mim_local_freeze(const mim_local *s, int timeout_ms) {
  if (mim_local_signal(s, SIGSTOP) != 0)
    return -1;
  long long deadline = cmn_mono_ms() + (long long)timeout_ms * test_time_scale();
  while (!all_threads_stopped(s->pid)) {
    if (cmn_mono_ms() >= deadline)
      return -1;
    struct timespec d = {0, 1000000L}; /* polling /proc: there is nothing to block on */
    nanosleep(&d, NULL);
  }
  return 0;
}

int mim_local_alive(mim_local *s) {
  if (s == NULL) {
    return 0;
  }
  wait_event(s, 0); /* forwards pending output, never blocks */
  return !try_reap(s, WNOHANG);
}
