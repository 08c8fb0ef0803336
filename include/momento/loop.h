/*
 * Driving the library from the application's own event loop.
 *
 * By default a client runs one event thread of its own: network I/O, timers and every
 * callback (on_message, on_send_result, ...) happen there. An application that already
 * has an event loop (libuv, libevent, a GUI toolkit, a game loop) can instead give the
 * client a mim_loop_hooks in mim_client_options.loop. The client then creates no thread
 * at all. It tells the application, through the hooks, which file descriptors to watch
 * and when its next timer is due; the application calls mim_loop_fd_ready when a
 * watched descriptor is ready and mim_loop_timeout when the timer expires.
 *
 * The loop thread is the thread that called mim_client_create. In loop mode:
 *   - every callback of the client and its sessions runs on the loop thread, inside
 *     mim_loop_fd_ready, mim_loop_timeout or a blocking call made on the loop thread;
 *   - the hooks are called on the loop thread only (inside mim_client_create, the two
 *     functions below, mim_client_free and calls made on the loop thread);
 *   - non-blocking calls (mim_send, mim_join_async) never wait for the network: their
 *     outcome comes through callbacks;
 *   - a blocking call (mim_join, mim_history, list calls, ...) made on the loop thread
 *     runs the client's events itself until it completes or its deadline passes, so
 *     other callbacks of this client can run inside it; made from a callback it fails
 *     with MIM_ERR_FAILED_PRECONDITION (it would wait for itself);
 *   - calls from other threads are allowed: they hand their work to the loop thread
 *     (which notices through a watched descriptor) and a blocking one waits for it, so
 *     it only completes while the application keeps its loop running; mim_send never
 *     waits in loop mode, on any thread;
 *   - work a callback defers (mim_leave or mim_moderator_stop called from a callback)
 *     starts no thread: it runs on the loop thread right after the mim_loop_fd_ready /
 *     mim_loop_timeout call that ran the callback has finished its events (a zero-delay
 *     timer brings the loop back when the callback ran inside a blocking call), or in
 *     mim_client_free. It runs the loop while it waits (a leave: up to its flush time
 *     plus a call deadline), so that entry can take that long to return;
 *   - mim_client_free must be called on the loop thread, outside callbacks (elsewhere it
 *     is logged and ignored); it runs the loop until the client's calls have ended, and
 *     when it returns every descriptor has been unwatched (watch_fd(fd, 0)) and the timer
 *     cleared (set_timer(-1)): the hooks' state can then be released.
 *
 * "No library thread" holds for what the client does on its own. Two features still
 * use a thread in loop mode: a token_url (the token provider refreshes from a thread of
 * its own, which only installs tokens and runs no callback) and resolving a host name
 * that is not a numeric address (one resolver thread per client, started on the first
 * such lookup, so that DNS never blocks the loop; it runs no callback and is joined by
 * mim_client_free).
 *
 * Adapters for libuv and libevent: <momento/loop_uv.h>, <momento/loop_event.h>.
 */
#ifndef MOMENTO_LOOP_H
#define MOMENTO_LOOP_H

#include <momento/common.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Readiness and interest bits. */
#define MIM_LOOP_READ 1u
#define MIM_LOOP_WRITE 2u

typedef struct mim_client mim_client;

typedef struct mim_loop_hooks {
  size_t struct_size; /* sizeof(mim_loop_hooks): MIM_LOOP_HOOKS_INIT sets it */
  /* Watch fd for `events` (MIM_LOOP_READ and/or MIM_LOOP_WRITE), replacing any earlier
   * interest for this fd; events == 0 means stop watching it (the library may close the
   * descriptor right after this returns). Called on the loop thread; must not call back
   * into the library. Required. */
  void (*watch_fd)(void *user, int fd, unsigned events);
  /* Call mim_loop_timeout after timeout_ms (0 = as soon as possible, from the loop, not
   * from inside this hook); -1 = no timer is needed. Each call replaces the previous one.
   * Called on the loop thread; must not call back into the library. Required. */
  void (*set_timer)(void *user, int64_t timeout_ms);
  void *user;
} mim_loop_hooks;

#define MIM_LOOP_HOOKS_INIT                                                                        \
  { .struct_size = sizeof(mim_loop_hooks) }

/* A watched descriptor is ready: events is what the loop saw (MIM_LOOP_READ and/or
 * MIM_LOOP_WRITE; report errors and hang-ups as MIM_LOOP_READ). Runs the client's due
 * work and callbacks on the calling thread, which must be the loop thread. Unknown
 * descriptors are ignored. client NULL is ignored. */
MIM_API void mim_loop_fd_ready(mim_client *client, int fd, unsigned events);

/* The timer last asked for through set_timer expired. Same rules as mim_loop_fd_ready. */
MIM_API void mim_loop_timeout(mim_client *client);

#ifdef __cplusplus
}
#endif

#endif
