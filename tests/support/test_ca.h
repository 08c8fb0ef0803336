/*
 * Test certificates made on the fly with the OpenSSL API, written as PEM files into a
 * fresh temporary directory: a CA, and server certificates (each with its own key):
 *   good      signed by the CA, for localhost, 127.0.0.1 and ::1, valid now;
 *   wrong     signed by the CA, for wrong.example only;
 *   expired   signed by the CA, for localhost/127.0.0.1/::1, expired yesterday;
 *   untrusted for localhost/127.0.0.1/::1, signed by another CA (not written out).
 * Use ca_file as the client's roots; give mim-local --tls-cert/--tls-key (or an in-test
 * OpenSSL server) one of the pairs. EC P-256 keys: generating all of it takes a few ms.
 */
#ifndef MIM_TESTS_TEST_CA_H
#define MIM_TESTS_TEST_CA_H

#define TEST_CA_PATH_MAX 256

typedef struct test_cert_files {
  char cert[TEST_CA_PATH_MAX]; /* PEM certificate */
  char key[TEST_CA_PATH_MAX];  /* PEM private key (unencrypted) */
} test_cert_files;

typedef struct test_ca {
  char dir[TEST_CA_PATH_MAX];     /* the temporary directory holding everything */
  char ca_file[TEST_CA_PATH_MAX]; /* the CA certificate (PEM) */
  test_cert_files good, wrong, expired, untrusted;
} test_ca;

/* Creates the directory and every file. 0 on success, -1 on failure (a message on
 * stderr; nothing is left behind). */
int test_ca_create(test_ca *ca);

/* Deletes the files and the directory. */
void test_ca_remove(test_ca *ca);

#endif
