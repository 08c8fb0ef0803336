/* Loop mode driven by libuv through <momento/loop_uv.h>: the chat scenario of
 * h2_loop_chat.h, plus the adapter's asynchronous close. */
/* cmocka.h needs these first, in this order. */
// clang-format off
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
// clang-format on

#include <momento/loop_uv.h>

#include "h2_loop_chat.h"

#define TICK_MS 50

static uv_loop_t loop;
static uv_timer_t tick; /* bounds each uv_run(UV_RUN_ONCE) so deadlines are checked */
static mim_loop_uv adapters[2];

static void on_tick(uv_timer_t *t) {
  (void)t;
}

static const mim_loop_hooks *uv_init_adapter(int i) {
  return mim_loop_uv_init(&adapters[i], &loop);
}

static void uv_attach(int i, mim_client *c) {
  mim_loop_uv_attach(&adapters[i], c);
}

static void uv_run_once(void) {
  uv_run(&loop, UV_RUN_ONCE);
}

/* libuv finishes closing handles on later iterations: run it until it has. */
static void uv_close_adapter(int i) {
  mim_loop_uv_close(&adapters[i]);
  int64_t until = cmn_mono_ms() + CHAT_WAIT_MS;
  while (!mim_loop_uv_closed(&adapters[i]) && cmn_mono_ms() < until)
    uv_run(&loop, UV_RUN_ONCE);
  assert_true(mim_loop_uv_closed(&adapters[i]));
}

static int uv_errors(int i) {
  if (adapters[i].error)
    fprintf(stderr, "libuv: %s: %s\n", adapters[i].error_op, uv_strerror(adapters[i].error));
  return adapters[i].error != 0;
}

static const loop_driver uv_driver = {.init = uv_init_adapter,
                                      .attach = uv_attach,
                                      .run_once = uv_run_once,
                                      .close = uv_close_adapter,
                                      .errors = uv_errors};

static void chat_with_libuv(void **state) {
  (void)state;
  loop_chat_scenario(&uv_driver);
}

static int setup(void **state) {
  (void)state;
  if (uv_loop_init(&loop) != 0 || uv_timer_init(&loop, &tick) != 0)
    return -1;
  return uv_timer_start(&tick, on_tick, TICK_MS, TICK_MS) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  uv_close((uv_handle_t *)&tick, NULL);
  /* Bounded: after a failed test the adapters' handles may still be open. */
  for (int i = 0; i < 10 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++) {
  }
  return uv_loop_close(&loop) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(chat_with_libuv),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
