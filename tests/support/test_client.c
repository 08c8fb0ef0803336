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

int test_local_start(const char *const *caches, mim_local **srv, mim_client **root) {
  mim_local_opts o = {.caches = caches};
  if (mim_local_start(&o, srv) != 0)
    return -1;
  *root = test_client_from_key((*srv)->root_key);
  return *root ? 0 : -1;
}

int test_local_stop(mim_local **srv, mim_client **root) {
  mim_client_free(*root);
  *root = NULL;
  int rc = mim_local_stop(*srv);
  *srv = NULL;
  return rc == 0 ? 0 : -1;
}
