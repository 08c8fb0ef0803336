/* mim-local: the plaintext accept loop (see accept.h for why it is not gRPC's). */
#include "accept.h"

#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTENERS 8
#define PAUSE_MS 100        /* after EMFILE or another accept failure */
#define REFUSAL_LOG_S 10    /* at most one refusal line per this many seconds */
#define LISTEN_BACKLOG 4096 /* the kernel caps it at net.core.somaxconn */

struct srv_acceptor {
  grpc_server *server;
  grpc_server_credentials *creds;
  int fds[MAX_LISTENERS];
  int nfds;
  int wake[2]; /* a byte on wake[1] ends the thread */
  pthread_t thread;
  bool started;
  time_t last_log;     /* of a refusal line (the accept thread only) */
  unsigned long quiet; /* refusals since that line */
};

int srv_acceptor_reserve(int limit) {
  int r = limit / 8;
  return r < 16 ? 16 : r > 256 ? 256 : r;
}

static int fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > (rlim_t)INT32_MAX) {
    return INT32_MAX;
  }
  return (int)rl.rlim_cur;
}

/* One line now and then, with how many were refused in between. */
static void log_refusal(srv_acceptor *a, const char *why, int limit) {
  time_t now = time(NULL);
  a->quiet++;
  if (a->last_log != 0 && now - a->last_log < REFUSAL_LOG_S) {
    return;
  }
  srv_log(LOG_WARN,
          "refusing connections: %s (file descriptor limit %d, %d kept free); %lu "
          "refused since the last such line",
          why, limit, srv_acceptor_reserve(limit), a->quiet);
  a->last_log = now;
  a->quiet = 0;
}

/* Linux hands out the lowest free descriptor, so a new one numbered n means at least n
 * are in use: past limit - reserve the connection is closed again at once, leaving the
 * rest for gRPC, the data directory and the calls of the connections already in. */
static void take(srv_acceptor *a, int fd) {
  int limit = fd_limit();
  if (fd >= limit - srv_acceptor_reserve(limit)) {
    close(fd);
    log_refusal(a, "too many open connections", limit);
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  grpc_server_add_channel_from_fd(a->server, fd, a->creds);
}

static void pause_ms(const srv_acceptor *a, int ms) {
  struct pollfd w = {.fd = a->wake[0], .events = POLLIN};
  poll(&w, 1, ms);
}

static void accept_ready(srv_acceptor *a, int lfd) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      take(a, fd);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) {
      continue;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    }
    /* EMFILE, ENFILE, ENOBUFS...: the connection waits in the backlog; try again soon
     * (gRPC's own loop stopped listening for good here). */
    log_refusal(a, strerror(errno), fd_limit());
    pause_ms(a, PAUSE_MS);
    return;
  }
}

static void *accept_loop(void *arg) {
  srv_acceptor *a = arg;
  struct pollfd p[MAX_LISTENERS + 1];
  for (;;) {
    p[0] = (struct pollfd){.fd = a->wake[0], .events = POLLIN};
    for (int i = 0; i < a->nfds; i++) {
      p[i + 1] = (struct pollfd){.fd = a->fds[i], .events = POLLIN};
    }
    if (poll(p, (nfds_t)a->nfds + 1, -1) < 0 && errno != EINTR) {
      srv_log(LOG_ERROR, "accept loop: poll failed: %s", strerror(errno));
      pause_ms(a, PAUSE_MS);
      continue;
    }
    if (p[0].revents) {
      return NULL;
    }
    for (int i = 0; i < a->nfds; i++) {
      if (p[i + 1].revents) {
        accept_ready(a, a->fds[i]);
      }
    }
  }
}

static int listen_on(const struct addrinfo *ai) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (ai->ai_family == AF_INET6) { /* "::" takes IPv4 too, as gRPC's listener did */
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
  }
  if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int local_port(int fd) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) {
    return 0;
  }
  return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
                                        : ((struct sockaddr_in *)(void *)&ss)->sin_port);
}

static void set_port(struct sockaddr *sa, int port) {
  if (sa->sa_family == AF_INET6) {
    ((struct sockaddr_in6 *)(void *)sa)->sin6_port = htons((uint16_t)port);
  } else {
    ((struct sockaddr_in *)(void *)sa)->sin_port = htons((uint16_t)port);
  }
}

/* Binds every address of host on port; the first one fixes a port 0 for the rest. */
static bool bind_all(srv_acceptor *a, const char *host, int port, int *bound) {
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  char serv[16];
  snprintf(serv, sizeof serv, "%d", port);
  int rc = getaddrinfo(host[0] ? host : NULL, serv, &hints, &res);
  if (rc != 0) {
    srv_log(LOG_ERROR, "cannot resolve %s: %s", host, gai_strerror(rc));
    return false;
  }
  *bound = port;
  int err = 0;
  for (struct addrinfo *ai = res; ai && a->nfds < MAX_LISTENERS; ai = ai->ai_next) {
    set_port(ai->ai_addr, *bound);
    int fd = listen_on(ai);
    if (fd < 0) {
      err = errno;
      continue;
    }
    a->fds[a->nfds++] = fd;
    *bound = *bound ? *bound : local_port(fd);
  }
  freeaddrinfo(res);
  if (a->nfds == 0 || *bound == 0) {
    srv_log(LOG_ERROR, "could not bind %s:%d: %s", host, port, strerror(err));
    return false;
  }
  return true;
}

srv_acceptor *srv_acceptor_bind(const char *host, int port, int *bound_port) {
  srv_acceptor *a = calloc(1, sizeof *a);
  if (!a) {
    return NULL;
  }
  a->wake[0] = a->wake[1] = -1;
  a->creds = grpc_insecure_server_credentials_create();
  if (!a->creds || !bind_all(a, host, port, bound_port) || pipe2(a->wake, O_CLOEXEC) != 0) {
    srv_acceptor_stop(a);
    return NULL;
  }
  return a;
}

bool srv_acceptor_run(srv_acceptor *a, grpc_server *server) {
  a->server = server;
  a->started = pthread_create(&a->thread, NULL, accept_loop, a) == 0;
  if (!a->started) {
    srv_log(LOG_ERROR, "cannot start the accept thread");
  }
  return a->started;
}

void srv_acceptor_stop(srv_acceptor *a) {
  if (!a) {
    return;
  }
  if (a->started) {
    char b = 1;
    while (write(a->wake[1], &b, 1) < 0 && errno == EINTR) {
    }
    pthread_join(a->thread, NULL);
  }
  for (int i = 0; i < a->nfds; i++) {
    close(a->fds[i]);
  }
  for (int i = 0; i < 2; i++) {
    if (a->wake[i] >= 0) {
      close(a->wake[i]);
    }
  }
  if (a->creds) {
    grpc_server_credentials_release(a->creds);
  }
  free(a);
}
