/*
 * Internal: the event loop under the HTTP/2 transport.
 *
 * A reactor owns file-descriptor watches, a timer heap and a queue of posted tasks, and
 * runs them all on one thread, the loop thread, one callback at a time. Two modes:
 *   - own thread (hooks == NULL): the reactor starts a thread that polls;
 *   - external (hooks != NULL): the application's loop drives it. The loop thread is
 *     the thread that called mim_reactor_create. The reactor reports fd interest and its
 *     next deadline through the hooks (on the loop thread only) and the application calls
 *     mim_reactor_fd_ready / mim_reactor_timeout.
 *
 * Work from other threads reaches the loop thread through mim_reactor_post and the
 * timer calls: they queue under a lock and wake the loop through an eventfd that is
 * always watched (in external mode the application watches it like any other fd).
 *
 * Callbacks (I/O, timers, posted tasks) run with no reactor lock held; they may add and
 * remove watches, add and cancel timers and post tasks. Everything marked "loop thread
 * only" must be called on the loop thread (inside a callback, or in external mode from
 * the application's loop thread outside the library).
 */
#ifndef MIM_LIB_LOOP_REACTOR_H
#define MIM_LIB_LOOP_REACTOR_H

#include <momento/common.h>
#include <momento/loop.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct mim_reactor mim_reactor;
typedef struct mim_watch mim_watch;
typedef struct mim_timer mim_timer;

/* Readiness passed to an I/O callback: MIM_LOOP_READ, MIM_LOOP_WRITE, and this bit for
 * an error or hang-up reported by poll (the callback should then read to learn what). */
#define MIM_IO_ERROR 4u

typedef void (*mim_io_fn)(void *user, unsigned events);

/* Creates a reactor. hooks NULL: starts the loop thread now (named thread_name, at most
 * 15 bytes). hooks given (copied): registers the wake fd through hooks->watch_fd before
 * returning. MIM_ERR_NO_MEMORY, MIM_ERR_RESOURCE_EXHAUSTED (no thread / no eventfd). */
mim_status mim_reactor_create(const mim_loop_hooks *hooks, const char *thread_name,
                              mim_reactor **out);

/* Stops and frees the reactor. Not from the loop thread while inside a callback (logged,
 * ignored). Own thread: runs the posted tasks still queued, stops the thread and joins
 * it. Timers still pending are dropped without running; watches still registered are
 * removed (external mode: watch_fd(fd, 0) and set_timer(-1) are called, so this must
 * then run on the loop thread). NULL is ignored. */
void mim_reactor_free(mim_reactor *r);

/* True on the loop thread. */
bool mim_reactor_on_loop(const mim_reactor *r);

/* True while the calling thread is inside a callback of r (an I/O callback, a timer, a
 * posted task). A blocking call must not wait for the loop from there. */
bool mim_reactor_in_callback(const mim_reactor *r);

/* Runs fn(arg) once on the loop thread, soon, in posting order. Thread-safe; from the
 * loop thread it is queued too (runs after the current callback returns), never run
 * inline. MIM_ERR_NO_MEMORY; MIM_ERR_CANCELLED once mim_reactor_free has begun. */
mim_status mim_reactor_post(mim_reactor *r, void (*fn)(void *arg), void *arg);

/* Loop thread only. Calls fn(user, ready) when fd is ready for something in `events`
 * (MIM_LOOP_READ / MIM_LOOP_WRITE; 0 = registered but idle) or has an error. At most
 * one watch per fd. *out valid until mim_reactor_unwatch. */
mim_status mim_reactor_watch(mim_reactor *r, int fd, unsigned events, mim_io_fn fn, void *user,
                             mim_watch **out);

/* Loop thread only: changes the interest of a watch (cheap when unchanged). */
void mim_reactor_watch_set(mim_watch *w, unsigned events);

/* Loop thread only: removes and frees the watch; its callback never runs after this
 * returns (also when called from that very callback). The fd is not closed. NULL ok. */
void mim_reactor_unwatch(mim_watch *w);

/* Runs cb(user) on the loop thread once, after at least delay_ms (<= 0 = soon).
 * Thread-safe. On MIM_OK *out (if not NULL) stays valid until cb has returned or
 * mim_timer_cancel has returned. MIM_ERR_NO_MEMORY; MIM_ERR_CANCELLED once
 * mim_reactor_free has begun. */
mim_status mim_reactor_timer(mim_reactor *r, int64_t delay_ms, void (*cb)(void *user), void *user,
                             mim_timer **out);

/* Cancels a timer that has not fired: true if cb will never run; false if it already ran
 * or is running (from another thread this waits until it has returned; from the loop
 * thread inside that very callback it returns at once). */
bool mim_timer_cancel(mim_timer *timer);

/* Loop thread only, not inside a callback: runs the loop on the calling thread until
 * done(arg) returns true (checked after every callback) or the monotonic clock
 * (cmn_mono_ms) reaches deadline_ms. Returns done(arg). Used by blocking calls in
 * external mode. */
bool mim_reactor_run_until(mim_reactor *r, bool (*done)(void *arg), void *arg, int64_t deadline_ms);

/* External mode, loop thread only: the application saw fd ready / the timer expire.
 * Runs what is due. Ignored in own-thread mode and for unknown fds. */
void mim_reactor_fd_ready(mim_reactor *r, int fd, unsigned events);
void mim_reactor_timeout(mim_reactor *r);

#endif
