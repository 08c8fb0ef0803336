/* libFuzzer harness: the credential parser (mim_credentials_from_string on a
 * NUL-terminated copy of arbitrary bytes). A parsed credential must answer every
 * accessor, copy, and (for the v1 form) encode back to a key that parses to the same
 * endpoint and token. The input split at its first NUL also goes through
 * mim_credentials_from_key_and_endpoint. */
#include <momento/credentials.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void fail(const char *what) {
  fprintf(stderr, "fuzz_credentials: %s\n", what);
  abort();
}

static void check_parsed(const mim_credentials *c) {
  const char *ep = mim_credentials_endpoint(c), *tok = mim_credentials_auth_token(c);
  if (!ep || !tok || !*tok) {
    fail("parsed credential without endpoint or token");
  }
  for (int k = MIM_HOST_CACHE; k <= MIM_HOST_TOKEN; k++) {
    const char *h = mim_credentials_host(c, (mim_host_kind)k);
    if (!h || !*h) {
      fail("parsed credential without a host");
    }
  }
  mim_credentials *copy = NULL;
  if (mim_credentials_copy(c, &copy) == MIM_OK) {
    if (strcmp(mim_credentials_auth_token(copy), tok) != 0) {
      fail("copy changed the token");
    }
    mim_credentials_free(copy);
  }
  if (!*ep) {
    return; /* a legacy JWT names no base endpoint */
  }
  char *v1 = NULL;
  if (mim_credentials_encode_v1(ep, tok, &v1) != MIM_OK) {
    return;
  }
  mim_credentials *back = NULL;
  if (mim_credentials_from_string(v1, &back) != MIM_OK) {
    fail("an encoded v1 key did not parse");
  }
  if (strcmp(mim_credentials_endpoint(back), ep) != 0 ||
      strcmp(mim_credentials_auth_token(back), tok) != 0) {
    fail("v1 round trip changed endpoint or token");
  }
  mim_credentials_free(back);
  free(v1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s) {
    return 0;
  }
  memcpy(s, data, size);
  s[size] = '\0';
  mim_credentials *c = NULL;
  mim_status st = mim_credentials_from_string(s, &c);
  if (st == MIM_OK) {
    check_parsed(c);
    mim_credentials_free(c);
  } else if (c) {
    fail("failure left a credential");
  }
  const char *nul = memchr(data, 0, size);
  if (nul) {
    c = NULL;
    if (mim_credentials_from_key_and_endpoint(s, s + (nul - (const char *)data) + 1, &c) ==
        MIM_OK) {
      check_parsed(c);
      mim_credentials_free(c);
    }
  }
  free(s);
  return 0;
}
