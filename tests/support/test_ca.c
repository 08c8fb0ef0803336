/* Test certificates with the OpenSSL 3 API (see test_ca.h). */
#include "test_ca.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DAY (24L * 60 * 60)
#define LOCAL_NAMES "DNS:localhost,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"

typedef struct issuer {
  X509 *cert;
  EVP_PKEY *key;
} issuer;

typedef struct cert_spec {
  const char *cn;
  const char *san; /* subjectAltName, NULL for a CA */
  long not_before; /* seconds from now */
  long not_after;
} cert_spec;

static bool add_ext(X509 *cert, X509 *issuer_cert, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer_cert != NULL ? issuer_cert : cert, cert, NULL, NULL, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
  if (ext == NULL) {
    return false;
  }
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

static bool set_names(X509 *cert, const char *cn, const issuer *by) {
  X509_NAME *name = X509_get_subject_name(cert);
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) !=
      1) {
    return false;
  }
  return X509_set_issuer_name(cert, by != NULL ? X509_get_subject_name(by->cert) : name) == 1;
}

static bool set_extensions(X509 *cert, const cert_spec *spec, const issuer *by) {
  X509 *issuer_cert = by != NULL ? by->cert : NULL;
  if (spec->san == NULL) {
    return add_ext(cert, issuer_cert, NID_basic_constraints, "critical,CA:TRUE") &&
           add_ext(cert, issuer_cert, NID_key_usage, "critical,keyCertSign,cRLSign") &&
           add_ext(cert, issuer_cert, NID_subject_key_identifier, "hash");
  }
  return add_ext(cert, issuer_cert, NID_basic_constraints, "CA:FALSE") &&
         add_ext(cert, issuer_cert, NID_ext_key_usage, "serverAuth") &&
         add_ext(cert, issuer_cert, NID_subject_alt_name, spec->san) &&
         add_ext(cert, issuer_cert, NID_authority_key_identifier, "keyid");
}

/* A certificate for spec with a new key, signed by `by` (self-signed when NULL). */
static bool make_cert(const cert_spec *spec, const issuer *by, issuer *out) {
  static long serial = 1;
  out->key = EVP_EC_gen("P-256");
  out->cert = X509_new();
  if (out->key == NULL || out->cert == NULL) {
    return false;
  }
  X509 *c = out->cert;
  return X509_set_version(c, 2) == 1 && ASN1_INTEGER_set(X509_get_serialNumber(c), serial++) == 1 &&
         X509_gmtime_adj(X509_getm_notBefore(c), spec->not_before) != NULL &&
         X509_gmtime_adj(X509_getm_notAfter(c), spec->not_after) != NULL &&
         X509_set_pubkey(c, out->key) == 1 && set_names(c, spec->cn, by) &&
         set_extensions(c, spec, by) &&
         X509_sign(c, by != NULL ? by->key : out->key, EVP_sha256()) > 0;
}

static void free_issuer(issuer *i) {
  X509_free(i->cert);
  EVP_PKEY_free(i->key);
  i->cert = NULL;
  i->key = NULL;
}

static bool write_pem(const char *path, X509 *cert, EVP_PKEY *key) {
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    return false;
  }
  bool ok = key != NULL ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) == 1
                        : PEM_write_X509(f, cert) == 1;
  return fclose(f) == 0 && ok;
}

static bool write_pair(const test_ca *ca, const char *stem, test_cert_files *files,
                       const issuer *pair) {
  if (snprintf(files->cert, sizeof files->cert, "%s/%s.crt", ca->dir, stem) >=
          (int)sizeof files->cert ||
      snprintf(files->key, sizeof files->key, "%s/%s.key", ca->dir, stem) >=
          (int)sizeof files->key) {
    return false;
  }
  return write_pem(files->cert, pair->cert, NULL) && write_pem(files->key, NULL, pair->key);
}

/* Issues a leaf for spec by `by` and writes it as stem.crt / stem.key. */
static bool issue(const test_ca *ca, const cert_spec *spec, const issuer *by, const char *stem,
                  test_cert_files *files) {
  issuer leaf = {0};
  bool ok = make_cert(spec, by, &leaf) && write_pair(ca, stem, files, &leaf);
  free_issuer(&leaf);
  return ok;
}

static bool make_all(test_ca *ca) {
  const cert_spec ca_spec = {"mim test CA", NULL, -DAY, 30 * DAY};
  const cert_spec other_spec = {"mim untrusted CA", NULL, -DAY, 30 * DAY};
  const cert_spec good = {"localhost", LOCAL_NAMES, -DAY, 30 * DAY};
  const cert_spec wrong = {"wrong.example", "DNS:wrong.example", -DAY, 30 * DAY};
  const cert_spec expired = {"localhost", LOCAL_NAMES, -3 * DAY, -DAY};
  issuer root = {0};
  issuer other = {0};
  if (snprintf(ca->ca_file, sizeof ca->ca_file, "%s/ca.crt", ca->dir) >= (int)sizeof ca->ca_file) {
    return false;
  }
  bool ok = make_cert(&ca_spec, NULL, &root) && make_cert(&other_spec, NULL, &other) &&
            write_pem(ca->ca_file, root.cert, NULL) && issue(ca, &good, &root, "good", &ca->good) &&
            issue(ca, &wrong, &root, "wrong", &ca->wrong) &&
            issue(ca, &expired, &root, "expired", &ca->expired) &&
            issue(ca, &good, &other, "untrusted", &ca->untrusted);
  free_issuer(&root);
  free_issuer(&other);
  return ok;
}

int test_ca_create(test_ca *ca) {
  memset(ca, 0, sizeof *ca);
  const char *tmp = getenv("TMPDIR");
  snprintf(ca->dir, sizeof ca->dir, "%s/mim-test-ca-XXXXXX", tmp != NULL ? tmp : "/tmp");
  if (mkdtemp(ca->dir) == NULL) {
    perror("test_ca: mkdtemp");
    return -1;
  }
  if (!make_all(ca)) {
    fprintf(stderr, "test_ca: cannot make the certificates in %s\n", ca->dir);
    test_ca_remove(ca);
    return -1;
  }
  return 0;
}

static void unlink_if(const char *path) {
  if (path[0] != '\0') {
    unlink(path);
  }
}

void test_ca_remove(test_ca *ca) {
  const test_cert_files *all[] = {&ca->good, &ca->wrong, &ca->expired, &ca->untrusted};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    unlink_if(all[i]->cert);
    unlink_if(all[i]->key);
  }
  unlink_if(ca->ca_file);
  if (ca->dir[0] != '\0') {
    rmdir(ca->dir);
  }
}
