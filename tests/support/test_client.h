/* Clients for tests against a local mim-local. */
#ifndef MIM_TESTS_TEST_CLIENT_H
#define MIM_TESTS_TEST_CLIENT_H

#include <momento/client.h>

/* A plaintext client built from key with a 10 s default deadline (times
 * test_time_scale()). Fails the running cmocka test (with the library's detail) when the
 * client cannot be created. */
mim_client *test_client_from_key(const char *key);

/* How much slower than a plain build this run is expected to be: $MIM_TEST_TIME_SCALE if
 * set (a positive integer), else 3 in sanitizer builds ($SANITIZE, set by run-all.sh) and
 * valgrind runs ($MIM_TEST_SLOW), else 1. Multiply deadlines by it, never checks. */
int test_time_scale(void);

#endif
