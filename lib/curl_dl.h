/*
 * Internal: libcurl loaded at run time, only when a token URL is used.
 *
 * Most clients authenticate with a key and never fetch a token over HTTP, so
 * libmomento-im.so does not link libcurl (and the dozens of libraries it pulls in): the
 * first token fetch dlopen()s libcurl.so.4 and resolves the few functions it needs.
 * <curl/curl.h> is included for its types and constants only.
 */
#ifndef MIM_LIB_CURL_DL_H
#define MIM_LIB_CURL_DL_H

#include <momento/common.h>

#include <curl/curl.h>

/* The libcurl functions the token fetcher calls, resolved from the loaded library. */
typedef struct mim_curl_api {
  CURLcode (*global_init)(long flags);
  CURL *(*easy_init)(void);
  CURLcode (*easy_setopt)(CURL *h, CURLoption option, ...);
  CURLcode (*easy_perform)(CURL *h);
  CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
  void (*easy_cleanup)(CURL *h);
  const char *(*easy_strerror)(CURLcode code);
} mim_curl_api;

/* Loads libcurl and runs curl_global_init, once per process (thread-safe); later calls
 * return the same outcome. On MIM_OK *api is the resolved table (valid for the life of
 * the process: libcurl is never unloaded). MIM_ERR_UNAVAILABLE when libcurl is not
 * installed (the detail names the libcurl4 package), MIM_ERR_INTERNAL when it lacks a
 * function or cannot initialise. */
mim_status mim_curl_load(const mim_curl_api **api);

/* Tests only: the file name dlopen()ed instead of "libcurl.so.4". Takes effect only
 * before the first mim_curl_load in the process. */
void mim_curl_set_soname_for_test(const char *soname);

#endif
