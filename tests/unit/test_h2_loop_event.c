/* Loop mode driven by libevent through <momento/loop_event.h>: the chat scenario of
 * h2_loop_chat.h. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/loop_event.h>

#include "h2_loop_chat.h"

#define TICK_MS 50

static struct event_base *base;
static struct event *tick; /* bounds each EVLOOP_ONCE iteration so deadlines are checked */
static mim_loop_event adapters[2];

static void on_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd, (void)what, (void)arg;
}

static const mim_loop_hooks *ev_init_adapter(int i) {
  return mim_loop_event_init(&adapters[i], base);
}

static void ev_attach(int i, mim_client *c) {
  mim_loop_event_attach(&adapters[i], c);
}

static void ev_run_once(void) {
  event_base_loop(base, EVLOOP_ONCE);
}

static void ev_close_adapter(int i) {
  mim_loop_event_close(&adapters[i]);
}

static int ev_errors(int i) {
  if (adapters[i].errors)
    fprintf(stderr, "libevent: %s failed (%d errors)\n", adapters[i].error_op, adapters[i].errors);
  return adapters[i].errors;
}

static const loop_driver ev_driver = {.init = ev_init_adapter,
                                      .attach = ev_attach,
                                      .run_once = ev_run_once,
                                      .close = ev_close_adapter,
                                      .errors = ev_errors};

static void chat_with_libevent(void **state) {
  (void)state;
  loop_chat_scenario(&ev_driver);
}

static int setup(void **state) {
  (void)state;
  base = event_base_new();
  if (!base)
    return -1;
  tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
  struct timeval tv = {.tv_sec = 0, .tv_usec = TICK_MS * 1000};
  return tick && event_add(tick, &tv) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  event_free(tick);
  event_base_free(base);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(chat_with_libevent),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
