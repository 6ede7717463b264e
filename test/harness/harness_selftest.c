/* harness_selftest.c - sanity check of the real-etcd test harness. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "etcd_harness.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(cond)                                                        \
  do {                                                                     \
    if (!(cond)) {                                                         \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__,     \
              #cond);                                                      \
      exit(1);                                                             \
    }                                                                      \
  } while (0)

static int path_exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static int proc_exists(pid_t pid) {
  char p[64];
  snprintf(p, sizeof p, "/proc/%ld", (long)pid);
  return path_exists(p);
}

int main(void) {
  th_etcd_t a, b;
  memset(&b, 0, sizeof b);
  th_etcd_stop(&b); /* stop on a zeroed struct is a no-op */

  int fp = th_free_port();
  CHECK(fp > 0 && fp < 65536);
  CHECK(th_closed_port() > 0);

  CHECK(th_etcd_start(&a, NULL) == 0);
  CHECK(a.pid > 0);
  CHECK(a.client_port > 0 && a.peer_port > 0 && a.client_port != a.peer_port);
  CHECK(strncmp(a.endpoint, "127.0.0.1:", 10) == 0);
  CHECK(path_exists(a.data_dir));
  printf("etcd A: pid %ld endpoint %s data %s\n", (long)a.pid, a.endpoint,
         a.data_dir);

  static const char *const extra[] = {"--auto-compaction-retention", "0",
                                      NULL};
  CHECK(th_etcd_start(&b, extra) == 0);
  CHECK(b.pid > 0 && b.pid != a.pid);
  CHECK(b.client_port != a.client_port);
  CHECK(strcmp(b.data_dir, a.data_dir) != 0);
  printf("etcd B: pid %ld endpoint %s data %s\n", (long)b.pid, b.endpoint,
         b.data_dir);

  static const char *const put[] = {"put", "foo", "bar", NULL};
  static const char *const get[] = {"get", "foo", NULL};
  CHECK(th_etcdctl(&a, put) == 0);
  CHECK(th_etcdctl(&a, get) == 0);

  /* SIGSTOP / SIGCONT keep the process. */
  pid_t old_a = a.pid;
  CHECK(th_etcd_kill(&a, SIGSTOP) == 0);
  CHECK(a.pid == old_a);
  CHECK(th_etcd_kill(&a, SIGCONT) == 0);

  /* SIGKILL reaps; restart on the same ports keeps the data. */
  int cp = a.client_port, pp = a.peer_port;
  CHECK(th_etcd_kill(&a, SIGKILL) == 0);
  CHECK(a.pid == 0);
  CHECK(!proc_exists(old_a));
  CHECK(th_etcd_kill(&a, SIGKILL) == -1); /* not running */
  CHECK(th_etcd_restart(&a) == 0);
  CHECK(a.pid > 0 && a.pid != old_a);
  CHECK(a.client_port == cp && a.peer_port == pp);
  CHECK(th_etcdctl(&a, get) == 0);
  static const char *const bad[] = {"no-such-subcommand", NULL};
  CHECK(th_etcdctl(&a, bad) != 0);

  /* SIGTERM also reaps; restart again. */
  old_a = a.pid;
  CHECK(th_etcd_kill(&a, SIGTERM) == 0);
  CHECK(a.pid == 0 && !proc_exists(old_a));
  CHECK(th_etcd_restart(&a) == 0);

  /* A stopped process must still be stoppable. */
  CHECK(th_etcd_kill(&b, SIGSTOP) == 0);

  char dir_a[256], dir_b[256], log_a[300];
  pid_t pa = a.pid, pb = b.pid;
  snprintf(dir_a, sizeof dir_a, "%s", a.data_dir);
  snprintf(dir_b, sizeof dir_b, "%s", b.data_dir);
  snprintf(log_a, sizeof log_a, "%s", a.log_path);

  th_etcd_stop(&a);
  th_etcd_stop(&b);
  th_etcd_stop(&a); /* twice is safe */
  th_etcd_stop(&b);
  CHECK(a.pid == 0 && b.pid == 0);
  CHECK(!proc_exists(pa));
  CHECK(!proc_exists(pb));
  const char *keep = getenv("ETCDREG_TEST_KEEP_LOGS");
  if (keep == NULL || keep[0] == '\0' || strcmp(keep, "0") == 0) {
    CHECK(!path_exists(dir_a));
    CHECK(!path_exists(dir_b));
    CHECK(!path_exists(log_a));
  }
  CHECK(th_etcd_restart(&a) == -1); /* stopped for good */

  printf("harness ok\n");
  return 0;
}
