/* Clients for tests against a local mim-local. */
#include "test_client.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

mim_client *test_client_from_key(const char *key) {
  mim_client_options o;
  mim_client_options_init(&o);
  o.api_key = key;
  o.tls = MIM_TLS_OFF;
  o.default_deadline_ms = 10000 * (int64_t)test_time_scale();
  mim_client *c = NULL;
  mim_status st = mim_client_create(&o, &c);
  if (st != MIM_OK)
    fail_msg("mim_client_create: %s (%s)", mim_status_name(st), mim_last_error_detail());
  return c;
}
