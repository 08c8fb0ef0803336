/* Test helper: a loopback TCP proxy that misbehaves on purpose.
 *
 *   chaos_proxy_opts o;
 *   chaos_proxy_opts_init(&o);             // cuts every 200-500 ms, stalls 50-300 ms
 *   o.seed = 42;
 *   chaos_proxy *p = chaos_proxy_start(srv->port, &o);
 *   ... point clients at "127.0.0.1:<chaos_proxy_port(p, 0)>" ...
 *   chaos_proxy_stop(p);
 *
 * It listens on 127.0.0.1 (port 0: the kernel picks one; `listeners` ports if asked) and
 * forwards each accepted connection to 127.0.0.1:target_port. Several ports exist because
 * gRPC shares one connection among all channels of a process to the same target: clients
 * given different ports get connections of their own, as separate processes would. Each connection
 * lives a random time in [cut_min_ms, cut_max_ms] and is then cut (both sides closed); in between
 * it is stalled now and then (nothing forwarded either way) for a random time in [stall_min_ms,
 * stall_max_ms], the stalls starting a random [stall_gap_min_ms, stall_gap_max_ms] apart. While
 * paused nothing is cut or stalled (a pause also ends the stalls under way); resuming draws new
 * times for every connection. All randomness comes from one seeded generator, so a seed gives the
 * same schedule for the same traffic. One thread with poll(); the wait is bounded by the next chaos
 * deadline, never spins. Plain libc/POSIX. The functions are thread-safe; stop must be called
 * exactly once. */
#ifndef MIM_TESTS_CHAOS_PROXY_H
#define MIM_TESTS_CHAOS_PROXY_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct chaos_proxy chaos_proxy;

typedef struct chaos_proxy_opts {
  int cut_min_ms, cut_max_ms;             /* connection lifetime; cut_max_ms 0 = never cut */
  int stall_min_ms, stall_max_ms;         /* stall length; stall_max_ms 0 = never stall */
  int stall_gap_min_ms, stall_gap_max_ms; /* time between stalls of one connection */
  uint64_t seed;                          /* 0 = 1 */
  int start_paused;                       /* non-zero: no chaos until chaos_proxy_resume */
  int listeners;                          /* ports to listen on, 1..64 (0 = 1) */
} chaos_proxy_opts;

typedef struct chaos_proxy_stats {
  uint64_t accepted;   /* client connections accepted */
  uint64_t cut;        /* connections cut by the chaos */
  uint64_t stalled;    /* stalls started */
  uint64_t closed;     /* connections that ended on their own (EOF, error, refused) */
  uint64_t bytes_up;   /* client -> server bytes forwarded */
  uint64_t bytes_down; /* server -> client bytes forwarded */
  uint64_t open;       /* connections open now */
} chaos_proxy_stats;

/* Defaults: cuts after 200-500 ms, stalls of 50-300 ms every 100-600 ms, seed 1, one port. */
void chaos_proxy_opts_init(chaos_proxy_opts *o);

/* Starts the proxy thread. NULL (message on stderr) if the socket, thread or memory
 * could not be had. opts NULL = defaults. */
chaos_proxy *chaos_proxy_start(int target_port, const chaos_proxy_opts *opts);

/* The port of listener i (0-based) on 127.0.0.1; -1 if there is no such listener. */
int chaos_proxy_port(const chaos_proxy *p, int listener);

/* Stops / restarts cutting and stalling (forwarding goes on). */
void chaos_proxy_pause(chaos_proxy *p);
void chaos_proxy_resume(chaos_proxy *p);

/* Scripted faults, independent of the random ones: hold (non-zero) stops forwarding on
 * every connection until released (0); cut_all cuts every open connection now (counted
 * as cuts). Each returns once it is in force (waits for the proxy thread, at most 5 s). */
void chaos_proxy_hold(chaos_proxy *p, int hold);
void chaos_proxy_cut_all(chaos_proxy *p);

/* A consistent copy of the counters. */
void chaos_proxy_get_stats(chaos_proxy *p, chaos_proxy_stats *out);

/* Stops the thread (joined), closes every socket and frees p. NULL is ignored. */
void chaos_proxy_stop(chaos_proxy *p);

#ifdef __cplusplus
}
#endif

#endif
