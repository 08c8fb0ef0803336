/*
 * libcurl through dlopen: see curl_dl.h for why. Loaded once, never unloaded (libcurl
 * keeps global state after curl_global_init, and a token provider may use it until the
 * process exits).
 */
#include "curl_dl.h"

#include "error.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define CURL_SONAME "libcurl.so.4"

static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static const char *soname = CURL_SONAME;
static mim_curl_api api;
static mim_status load_status = MIM_ERR_INTERNAL;
/* The failure's detail, kept so every later caller gets the same explanation. */
static char load_detail[320];

/* dlsym returns void *; POSIX guarantees it converts to a function pointer. */
static int resolve(void *lib, const char *name, void *slot, size_t size) {
  void *sym = dlsym(lib, name);
  if (!sym) {
    snprintf(load_detail, sizeof load_detail, "%s lacks %s", soname, name);
    return 0;
  }
  memcpy(slot, &sym, size);
  return 1;
}

#define RESOLVE(lib, field, name) resolve(lib, name, &api.field, sizeof api.field)

static int resolve_all(void *lib) {
  return RESOLVE(lib, global_init, "curl_global_init") &&
         RESOLVE(lib, easy_init, "curl_easy_init") &&
         RESOLVE(lib, easy_setopt, "curl_easy_setopt") &&
         RESOLVE(lib, easy_perform, "curl_easy_perform") &&
         RESOLVE(lib, easy_getinfo, "curl_easy_getinfo") &&
         RESOLVE(lib, easy_cleanup, "curl_easy_cleanup") &&
         RESOLVE(lib, easy_strerror, "curl_easy_strerror");
}

static void load(void) {
  /* RTLD_LOCAL: libcurl's symbols stay out of the application's global namespace. */
  void *lib = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    const char *why = dlerror();
    load_status = MIM_ERR_UNAVAILABLE;
    snprintf(load_detail, sizeof load_detail,
             "token URL needs libcurl, which is not installed (Debian/Ubuntu package "
             "libcurl4): %.200s",
             why ? why : "dlopen failed");
    return;
  }
  if (!resolve_all(lib))
    return; /* MIM_ERR_INTERNAL, detail set by resolve */
  CURLcode rc = api.global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    snprintf(load_detail, sizeof load_detail, "libcurl could not start: %s", api.easy_strerror(rc));
    return;
  }
  load_status = MIM_OK;
}

mim_status mim_curl_load(const mim_curl_api **out) {
  pthread_once(&load_once, load);
  if (load_status != MIM_OK) {
    *out = NULL;
    return mim_fail(load_status, "%s", load_detail);
  }
  *out = &api;
  return MIM_OK;
}

void mim_curl_set_soname_for_test(const char *name) {
  soname = name;
}
