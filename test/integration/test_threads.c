/* The library starts no threads: after connecting, calls, a timeout and a close on
 * numeric endpoints, this process still has exactly one thread. */
#include <dirent.h>

#include "itest.h"

static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void no_retries(etcdreg_client_options_t *o) { o->max_retries = 0; }

static void test_single_thread(void **state) {
  (void)state;
  assert_int_equal(thread_count(), 1);
  uv_loop_t loop;
  uv_loop_init(&loop);
  etcdreg_client_t *c = itest_client(&loop, g_etcd.endpoint, NULL);
  itest_put(&loop, c, "/threads/a", "1", NULL);
  itest_result_t r = {0};
  etcdreg_range_opts_t o = {.prefix = 1};
  itest_range(&loop, c, "/threads/", &o, &r);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.kv_count, 1);
  itest_result_reset(&r);
  /* A closed port too: failed connects must not use a thread either. */
  char ep[64];
  snprintf(ep, sizeof(ep), "[::1]:%d", th_closed_port());
  etcdreg_client_t *bad = itest_client(&loop, ep, no_retries);
  itest_range(&loop, bad, "/x", NULL, &r);
  assert_int_not_equal(r.status, 0);
  itest_result_reset(&r);
  int closed = 0;
  etcdreg_client_close(bad, itest_on_closed, &closed);
  itest_run_until(&loop, &closed, 10000);
  assert_int_equal(thread_count(), 1);
  itest_close(&loop, c);
  assert_int_equal(thread_count(), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_single_thread)};
  return cmocka_run_group_tests_name("threads", tests, itest_etcd_up, itest_etcd_down);
}
