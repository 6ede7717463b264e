/*
 * etcd_harness.c - start/stop real single-member etcd servers for tests.
 * See etcd_harness.h.  Linux only (prctl, /proc), libc only.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "etcd_harness.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define TH_START_ATTEMPTS 5
#define TH_READY_TIMEOUT_MS 20000
#define TH_RESTART_BIND_RETRIES 10
#define TH_STOP_GRACE_MS 3000
#define TH_TERM_GRACE_MS 10000
#define TH_ETCDCTL_TIMEOUT_MS 60000
#define TH_LOG_TAIL_BYTES 4096

/* ------------------------------------------------------------------ */
/* small utilities                                                     */
/* ------------------------------------------------------------------ */

static void th_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void th_msg(const char *fmt, ...) {
  va_list ap;
  fflush(stdout);
  fputs("[etcd-harness] ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
}

static long long th_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void th_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static int th_keep_logs(void) {
  const char *v = getenv("ETCDREG_TEST_KEEP_LOGS");
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Resolve a program name: $envvar if set, else search PATH. */
static int th_find_program(const char *name, const char *envvar, char *out,
                           size_t outsz) {
  const char *over = getenv(envvar);
  if (over != NULL && over[0] != '\0') {
    if (strlen(over) >= outsz) return -1;
    strcpy(out, over);
    return access(out, X_OK) == 0 ? 0 : -1;
  }
  const char *path = getenv("PATH");
  if (path == NULL || path[0] == '\0') path = "/usr/local/bin:/usr/bin:/bin";
  const char *p = path;
  while (*p != '\0') {
    const char *colon = strchr(p, ':');
    size_t len = colon ? (size_t)(colon - p) : strlen(p);
    int n;
    if (len == 0)
      n = snprintf(out, outsz, "./%s", name);
    else
      n = snprintf(out, outsz, "%.*s/%s", (int)len, p, name);
    if (n > 0 && (size_t)n < outsz && access(out, X_OK) == 0) return 0;
    if (colon == NULL) break;
    p = colon + 1;
  }
  return -1;
}

/* Wait for pid to exit, polling up to timeout_ms (<0: forever).
 * Returns 0 when reaped (or already gone), -1 on timeout. */
static int th_wait_exit(pid_t pid, long timeout_ms, int *status_out) {
  long long deadline = th_now_ms() + (timeout_ms < 0 ? 0 : timeout_ms);
  for (;;) {
    int st = 0;
    pid_t r = waitpid(pid, &st, timeout_ms < 0 ? 0 : WNOHANG);
    if (r == pid) {
      if (status_out) *status_out = st;
      return 0;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      /* ECHILD: already reaped elsewhere (or SIGCHLD is SIG_IGN). */
      if (status_out) *status_out = 0;
      return 0;
    }
    if (th_now_ms() >= deadline) return -1;
    th_sleep_ms(10);
  }
}

/* Child-side setup common to etcd and etcdctl; async-signal-safe only. */
static void th_child_setup(pid_t parent, int in_fd, int out_fd, int err_fd) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) _exit(127);
  if (getppid() != parent) _exit(127); /* parent already died */

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  static const int sigs[] = {SIGPIPE, SIGTERM, SIGINT, SIGHUP,
                             SIGCHLD, SIGQUIT, SIGUSR1, SIGUSR2};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    sigaction(sigs[i], &sa, NULL);

  if (in_fd >= 0 && dup2(in_fd, 0) < 0) _exit(127);
  if (out_fd >= 0 && dup2(out_fd, 1) < 0) _exit(127);
  if (err_fd >= 0 && dup2(err_fd, 2) < 0) _exit(127);
  /* Don't leak the test's descriptors (epoll, sockets...) into the child. */
  if (close_range(3, ~0U, 0) != 0) {
    for (int fd = 3; fd < 4096; fd++) close(fd);
  }
}

static int th_rm_cb(const char *path, const struct stat *sb, int flag,
                    struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  if (remove(path) != 0 && errno != ENOENT)
    th_msg("warning: cannot remove %s: %s", path, strerror(errno));
  return 0;
}

static void th_rm_rf(const char *dir) {
  /* Safety net: only ever delete directories this harness created. */
  if (dir[0] == '\0' || strstr(dir, "/etcdreg-test-") == NULL) {
    th_msg("refusing to remove unexpected directory '%s'", dir);
    return;
  }
  nftw(dir, th_rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

/* ------------------------------------------------------------------ */
/* ports and health                                                    */
/* ------------------------------------------------------------------ */

int th_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = 0;
  socklen_t len = sizeof sa;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
      getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
    port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

int th_closed_port(void) { return th_free_port(); }

static int th_connect_loopback(int port, int timeout_ms) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons((unsigned short)port);
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/* 0 if "GET /health" on the client port answers 200 with "true" in it. */
static int th_health_ok(int port) {
  int fd = th_connect_loopback(port, 1000);
  if (fd < 0) return -1;
  char req[160];
  int n = snprintf(req, sizeof req,
                   "GET /health HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n",
                   port);
  int ok = -1;
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
    char buf[4096];
    size_t got = 0;
    for (;;) {
      ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += (size_t)r;
      if (got == sizeof buf - 1) break;
    }
    buf[got] = '\0';
    const char *body = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.1 200", 12) == 0 && body != NULL &&
        strstr(body, "true") != NULL)
      ok = 0;
  }
  close(fd);
  return ok;
}

/* Does process pid own the LISTEN socket on 127.0.0.1:port (or *:port)?
 * Returns 1 yes, 0 no, -1 unknown (cannot read /proc). */
static int th_pid_listens_on(pid_t pid, int port) {
  FILE *f = fopen("/proc/net/tcp", "re");
  if (f == NULL) return -1;
  unsigned long inodes[8];
  int n_inodes = 0;
  char line[512];
  if (fgets(line, sizeof line, f) == NULL) { /* header */
    fclose(f);
    return -1;
  }
  while (fgets(line, sizeof line, f) != NULL && n_inodes < 8) {
    unsigned int laddr, lport, raddr, rport, st;
    unsigned long inode;
    /* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
    if (sscanf(line,
               " %*d: %8X:%4X %8X:%4X %2X %*X:%*X %*X:%*X %*X %*u %*d %lu",
               &laddr, &lport, &raddr, &rport, &st, &inode) != 6)
      continue;
    if (st == 0x0A && (int)lport == port && inode != 0)
      inodes[n_inodes++] = inode;
  }
  fclose(f);
  if (n_inodes == 0) return 0;

  char fddir[64];
  snprintf(fddir, sizeof fddir, "/proc/%ld/fd", (long)pid);
  DIR *d = opendir(fddir);
  if (d == NULL) return errno == ENOENT ? 0 : -1;
  int found = 0;
  struct dirent *de;
  while (!found && (de = readdir(d)) != NULL) {
    if (de->d_name[0] == '.') continue;
    char target[64];
    ssize_t l = readlinkat(dirfd(d), de->d_name, target, sizeof target - 1);
    if (l <= 0) continue;
    target[l] = '\0';
    unsigned long ino;
    if (sscanf(target, "socket:[%lu]", &ino) != 1) continue;
    for (int i = 0; i < n_inodes; i++)
      if (inodes[i] == ino) found = 1;
  }
  closedir(d);
  return found;
}

/* ------------------------------------------------------------------ */
/* log helpers                                                         */
/* ------------------------------------------------------------------ */

void th_etcd_print_log_tail(const th_etcd_t *e, size_t max_bytes) {
  if (e == NULL || e->log_path[0] == '\0') return;
  int fd = open(e->log_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    th_msg("cannot open etcd log %s: %s", e->log_path, strerror(errno));
    return;
  }
  struct stat st;
  if (fstat(fd, &st) == 0 && (size_t)st.st_size > max_bytes)
    lseek(fd, st.st_size - (off_t)max_bytes, SEEK_SET);
  fflush(stdout);
  fprintf(stderr, "----- tail of %s -----\n", e->log_path);
  fflush(stderr);
  char buf[4096];
  ssize_t r;
  while ((r = read(fd, buf, sizeof buf)) > 0) {
    ssize_t off = 0;
    while (off < r) {
      ssize_t w = write(2, buf + off, (size_t)(r - off));
      if (w <= 0) break;
      off += w;
    }
  }
  fprintf(stderr, "\n----- end of etcd log -----\n");
  fflush(stderr);
  close(fd);
}

static int th_log_contains(const th_etcd_t *e, const char *needle) {
  FILE *f = fopen(e->log_path, "re");
  if (f == NULL) return 0;
  char line[8192];
  int found = 0;
  while (!found && fgets(line, sizeof line, f) != NULL)
    if (strstr(line, needle) != NULL) found = 1;
  fclose(f);
  return found;
}

static void th_log_note(const th_etcd_t *e, const char *note) {
  int fd = open(e->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  char buf[256];
  int n = snprintf(buf, sizeof buf, "===== etcd-harness: %s =====\n", note);
  if (n > 0) {
    ssize_t w = write(fd, buf, (size_t)n);
    (void)w;
  }
  close(fd);
}

/* ------------------------------------------------------------------ */
/* spawning etcd                                                       */
/* ------------------------------------------------------------------ */

static int th_spawn_etcd(th_etcd_t *e, int truncate_log) {
  char bin[1024];
  if (th_find_program("etcd", "ETCDREG_ETCD_BIN", bin, sizeof bin) != 0) {
    th_msg("etcd binary not found (PATH or $ETCDREG_ETCD_BIN); "
           "install it with: apt-get install -y etcd-server");
    return -1;
  }

  char client_url[64], peer_url[64], cluster[128];
  snprintf(client_url, sizeof client_url, "%s://127.0.0.1:%d", e->tls_dir[0] ? "https" : "http",
           e->client_port);
  snprintf(peer_url, sizeof peer_url, "http://127.0.0.1:%d", e->peer_port);
  snprintf(cluster, sizeof cluster, "%s=%s", e->name, peer_url);
  snprintf(e->endpoint, sizeof e->endpoint, "127.0.0.1:%d", e->client_port);

  const char *argv[40 + TH_MAX_EXTRA_ARGS];
  int argc = 0;
  argv[argc++] = bin;
  argv[argc++] = "--name";
  argv[argc++] = e->name;
  argv[argc++] = "--data-dir";
  argv[argc++] = e->data_dir;
  argv[argc++] = "--listen-client-urls";
  argv[argc++] = client_url;
  argv[argc++] = "--advertise-client-urls";
  argv[argc++] = client_url;
  argv[argc++] = "--listen-peer-urls";
  argv[argc++] = peer_url;
  argv[argc++] = "--initial-advertise-peer-urls";
  argv[argc++] = peer_url;
  argv[argc++] = "--initial-cluster";
  argv[argc++] = e->initial_cluster[0] ? e->initial_cluster : cluster;
  argv[argc++] = "--initial-cluster-state";
  argv[argc++] = "new";
  if (e->cluster_token[0]) {
    argv[argc++] = "--initial-cluster-token";
    argv[argc++] = e->cluster_token;
  }
  if (e->tls_dir[0]) {
    argv[argc++] = "--cert-file";
    argv[argc++] = e->tls_cert_file;
    argv[argc++] = "--key-file";
    argv[argc++] = e->tls_key_file;
    if (e->client_cert_auth) {
      argv[argc++] = "--client-cert-auth";
      argv[argc++] = "--trusted-ca-file";
      argv[argc++] = e->tls_ca_file;
    }
  }
  argv[argc++] = "--logger";
  argv[argc++] = "zap";
  argv[argc++] = "--log-outputs";
  argv[argc++] = "stderr";
  argv[argc++] = "--log-level";
  argv[argc++] = "warn";
  /* Accepted by etcd 3.4.23 although `etcd --help` does not list it. */
  argv[argc++] = "--unsafe-no-fsync";
  const char *p = e->extra_args_buf;
  for (int i = 0; i < e->n_extra_args; i++) {
    argv[argc++] = p;
    p += strlen(p) + 1;
  }
  argv[argc] = NULL;

  int logfd = open(e->log_path,
                   O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC |
                       (truncate_log ? O_TRUNC : 0),
                   0600);
  if (logfd < 0) {
    th_msg("cannot open log %s: %s", e->log_path, strerror(errno));
    return -1;
  }
  int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nullfd < 0) {
    th_msg("cannot open /dev/null: %s", strerror(errno));
    close(logfd);
    return -1;
  }

  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    th_msg("fork: %s", strerror(errno));
    close(logfd);
    close(nullfd);
    return -1;
  }
  if (pid == 0) {
    th_child_setup(parent, nullfd, logfd, logfd);
    execv(bin, (char *const *)argv);
    static const char m[] = "etcd-harness: execv(etcd) failed\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    _exit(127);
  }
  close(logfd);
  close(nullfd);
  e->pid = pid;
  return 0;
}

enum { TH_READY = 0, TH_TIMEOUT = -1, TH_DIED = -2, TH_NOT_OURS = -3 };

/* Over TLS the plain /health probe cannot work: ask etcdctl with the test certificates. */
static int th_tls_health_ok(const th_etcd_t *e) {
  /* Readiness only: an expired test certificate must not keep us waiting. */
  const char *args[] = {"--insecure-skip-tls-verify", "--command-timeout=2s", "--dial-timeout=1s", "endpoint", "health", NULL};
  int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
  if (devnull >= 0) dup2(devnull, 2); /* quiet while polling */
  int rv = th_etcdctl(e, args);
  if (saved >= 0) {
    dup2(saved, 2);
    close(saved);
  }
  if (devnull >= 0) close(devnull);
  return rv == 0 ? 0 : -1;
}

static int th_wait_ready(th_etcd_t *e, long timeout_ms) {
  long long deadline = th_now_ms() + timeout_ms;
  for (;;) {
    int st = 0;
    pid_t r = waitpid(e->pid, &st, WNOHANG);
    if (r == e->pid || (r < 0 && errno == ECHILD)) {
      if (r == e->pid && WIFEXITED(st))
        th_msg("etcd (pid %ld) exited early with status %d", (long)e->pid,
               WEXITSTATUS(st));
      else if (r == e->pid && WIFSIGNALED(st))
        th_msg("etcd (pid %ld) killed early by signal %d", (long)e->pid,
               WTERMSIG(st));
      else
        th_msg("etcd (pid %ld) disappeared early", (long)e->pid);
      e->pid = 0;
      return TH_DIED;
    }
    if (e->tls_dir[0] ? th_tls_health_ok(e) == 0 : th_health_ok(e->client_port) == 0) {
      /* Make sure it is *our* etcd answering, not someone who won a race
       * for the port (our etcd would then die on "address in use"). */
      int mine = th_pid_listens_on(e->pid, e->client_port);
      if (mine != 0) return TH_READY; /* yes, or cannot tell */
      if (th_now_ms() >= deadline) return TH_NOT_OURS;
    }
    if (th_now_ms() >= deadline) return TH_TIMEOUT;
    th_sleep_ms(50);
  }
}

static void th_kill_and_reap(th_etcd_t *e) {
  if (e->pid <= 0) return;
  kill(e->pid, SIGKILL);
  th_wait_exit(e->pid, -1, NULL);
  e->pid = 0;
}

static int th_make_dirs(th_etcd_t *e) {
  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 180) tmp = "/tmp";
  size_t tl = strlen(tmp);
  while (tl > 1 && tmp[tl - 1] == '/') tl--;
  snprintf(e->data_dir, sizeof e->data_dir, "%.*s/etcdreg-test-XXXXXX",
           (int)tl, tmp);
  if (mkdtemp(e->data_dir) == NULL) {
    th_msg("mkdtemp(%s): %s", e->data_dir, strerror(errno));
    e->data_dir[0] = '\0';
    return -1;
  }
  snprintf(e->log_path, sizeof e->log_path, "%s.log", e->data_dir);
  return 0;
}

static void th_remove_dirs(th_etcd_t *e) {
  if (e->data_dir[0] != '\0') th_rm_rf(e->data_dir);
  if (e->log_path[0] != '\0') unlink(e->log_path);
  e->data_dir[0] = '\0';
  e->log_path[0] = '\0';
}

int th_etcd_start(th_etcd_t *e, const char *const *extra_args) {
  return th_etcd_start_tls(e, extra_args, NULL, NULL, 0);
}

int th_make_certs(const char *dir) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "bash '%s' '%s' >/dev/null", TH_MAKE_CERTS_SCRIPT, dir);
  int rv = system(cmd);
  if (rv != 0) th_msg("making test certificates in %s failed (%d)", dir, rv);
  return rv == 0 ? 0 : -1;
}

int th_etcd_start_tls(th_etcd_t *e, const char *const *extra_args, const char *cert_dir,
                      const char *cert_name, int client_cert_auth) {
  static int counter;
  memset(e, 0, sizeof *e);
  if (cert_dir != NULL) {
    snprintf(e->tls_dir, sizeof e->tls_dir, "%s", cert_dir);
    snprintf(e->tls_cert_file, sizeof e->tls_cert_file, "%s/%s.pem", cert_dir, cert_name ? cert_name : "server");
    snprintf(e->tls_key_file, sizeof e->tls_key_file, "%s/%s.key", cert_dir, cert_name ? cert_name : "server");
    snprintf(e->tls_ca_file, sizeof e->tls_ca_file, "%s/ca.pem", cert_dir);
    e->client_cert_auth = client_cert_auth;
  }

  if (extra_args != NULL) {
    size_t off = 0;
    for (int i = 0; extra_args[i] != NULL; i++) {
      size_t l = strlen(extra_args[i]) + 1;
      if (i >= TH_MAX_EXTRA_ARGS || off + l > sizeof e->extra_args_buf) {
        th_msg("too many/too long extra etcd args");
        return -1;
      }
      memcpy(e->extra_args_buf + off, extra_args[i], l);
      off += l;
      e->n_extra_args++;
    }
  }
  snprintf(e->name, sizeof e->name, "th-%ld-%d", (long)getpid(),
           __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED));

  for (int attempt = 1; attempt <= TH_START_ATTEMPTS; attempt++) {
    if (th_make_dirs(e) != 0) return -1;
    e->client_port = th_free_port();
    do {
      e->peer_port = th_free_port();
    } while (e->peer_port == e->client_port && e->peer_port > 0);
    if (e->client_port <= 0 || e->peer_port <= 0) {
      th_msg("cannot get free loopback ports: %s", strerror(errno));
      th_remove_dirs(e);
      return -1;
    }
    if (th_spawn_etcd(e, 1) != 0) {
      th_remove_dirs(e);
      return -1;
    }
    int r = th_wait_ready(e, TH_READY_TIMEOUT_MS);
    if (r == TH_READY) return 0;

    int port_race = (r == TH_NOT_OURS) ||
                    (r == TH_DIED && th_log_contains(e, "address already in use"));
    if (port_race && attempt < TH_START_ATTEMPTS) {
      th_msg("port race on %d/%d (attempt %d), retrying with new ports",
             e->client_port, e->peer_port, attempt);
      th_kill_and_reap(e);
      th_remove_dirs(e);
      continue;
    }
    th_msg("etcd failed to become ready on %s (%s)", e->endpoint,
           r == TH_TIMEOUT ? "timeout"
           : r == TH_DIED  ? "process died"
                           : "port owned by another process");
    th_etcd_print_log_tail(e, TH_LOG_TAIL_BYTES);
    th_etcd_stop(e);
    return -1;
  }
  return -1;
}

int th_etcd_restart(th_etcd_t *e) {
  if (e->pid > 0) {
    th_msg("th_etcd_restart: etcd still running (pid %ld); kill it first",
           (long)e->pid);
    return -1;
  }
  if (e->data_dir[0] == '\0' || e->client_port <= 0 || e->peer_port <= 0) {
    th_msg("th_etcd_restart: not started (or already stopped)");
    return -1;
  }
  for (int attempt = 1;; attempt++) {
    th_log_note(e, "restart");
    if (th_spawn_etcd(e, 0) != 0) return -1;
    int r = th_wait_ready(e, TH_READY_TIMEOUT_MS);
    if (r == TH_READY) return 0;
    if (r == TH_DIED && attempt < TH_RESTART_BIND_RETRIES &&
        th_log_contains(e, "address already in use")) {
      /* Same ports required: give the kernel/other owner a moment. */
      th_sleep_ms(200);
      continue;
    }
    th_msg("etcd restart failed on %s (%s)", e->endpoint,
           r == TH_TIMEOUT ? "timeout"
           : r == TH_DIED  ? "process died"
                           : "port owned by another process");
    th_etcd_print_log_tail(e, TH_LOG_TAIL_BYTES);
    th_kill_and_reap(e);
    return -1;
  }
}

int th_etcd_kill(th_etcd_t *e, int sig) {
  if (e == NULL || e->pid <= 0) {
    th_msg("th_etcd_kill: etcd not running");
    return -1;
  }
  if (kill(e->pid, sig) != 0) {
    th_msg("kill(%ld, %d): %s", (long)e->pid, sig, strerror(errno));
    return -1;
  }
  if (sig == SIGSTOP) {
    /* Wait until every thread has really stopped: a Go process on a busy machine can
     * still answer a request or two right after kill() returns. */
    int st;
    while (waitpid(e->pid, &st, WUNTRACED) < 0 && errno == EINTR) {
    }
  } else if (sig == SIGKILL) {
    th_wait_exit(e->pid, -1, NULL);
    e->pid = 0;
  } else if (sig == SIGTERM) {
    kill(e->pid, SIGCONT); /* in case it was SIGSTOPped */
    if (th_wait_exit(e->pid, TH_TERM_GRACE_MS, NULL) != 0) {
      th_msg("etcd pid %ld ignored SIGTERM for %d ms; SIGKILL", (long)e->pid,
             TH_TERM_GRACE_MS);
      kill(e->pid, SIGKILL);
      th_wait_exit(e->pid, -1, NULL);
    }
    e->pid = 0;
  }
  return 0;
}

void th_etcd_stop(th_etcd_t *e) {
  if (e == NULL) return;
  if (e->pid > 0) {
    if (kill(e->pid, SIGTERM) == 0) {
      kill(e->pid, SIGCONT);
      if (th_wait_exit(e->pid, TH_STOP_GRACE_MS, NULL) != 0) {
        kill(e->pid, SIGKILL);
        th_wait_exit(e->pid, -1, NULL);
      }
    } else {
      th_wait_exit(e->pid, 0, NULL);
    }
    e->pid = 0;
  }
  if (e->data_dir[0] != '\0' || e->log_path[0] != '\0') {
    if (th_keep_logs()) {
      th_msg("keeping etcd data dir %s and log %s", e->data_dir, e->log_path);
      e->data_dir[0] = '\0';
      e->log_path[0] = '\0';
    } else {
      th_remove_dirs(e);
    }
  }
}

/* ------------------------------------------------------------------ */
/* etcdctl                                                             */
/* ------------------------------------------------------------------ */

int th_etcdctl(const th_etcd_t *e, const char *const *args) {
  char bin[1024];
  if (th_find_program("etcdctl", "ETCDREG_ETCDCTL_BIN", bin, sizeof bin) != 0) {
    th_msg("etcdctl not found (PATH or $ETCDREG_ETCDCTL_BIN); "
           "install it with: apt-get install -y etcd-client");
    return -1;
  }
  size_t nargs = 0;
  while (args != NULL && args[nargs] != NULL) nargs++;
  size_t nenv = 0;
  while (environ != NULL && environ[nenv] != NULL) nenv++;

  char endpoints[96], cacert[320], cert[320], key[320];
  snprintf(endpoints, sizeof endpoints, "--endpoints=%s%s", e->tls_dir[0] ? "https://" : "", e->endpoint);
  snprintf(cacert, sizeof cacert, "--cacert=%s", e->tls_ca_file);
  snprintf(cert, sizeof cert, "--cert=%s/client.pem", e->tls_dir);
  snprintf(key, sizeof key, "--key=%s/client.key", e->tls_dir);

  const char **argv = calloc(nargs + 6, sizeof *argv);
  const char **envp = calloc(nenv + 2, sizeof *envp);
  if (argv == NULL || envp == NULL) {
    free(argv);
    free(envp);
    return -1;
  }
  size_t ai = 0;
  argv[ai++] = bin;
  argv[ai++] = endpoints;
  if (e->tls_dir[0]) {
    argv[ai++] = cacert;
    argv[ai++] = cert;
    argv[ai++] = key;
  }
  for (size_t i = 0; i < nargs; i++) argv[ai++] = args[i];
  argv[ai] = NULL;

  size_t ei = 0;
  for (size_t i = 0; i < nenv; i++) {
    if (strncmp(environ[i], "ETCDCTL_", 8) == 0) continue; /* no surprises */
    envp[ei++] = environ[i];
  }
  envp[ei++] = "ETCDCTL_API=3";
  envp[ei] = NULL;

  int nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  fflush(stdout);
  fflush(stderr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    th_msg("fork: %s", strerror(errno));
    if (nullfd >= 0) close(nullfd);
    free(argv);
    free(envp);
    return -1;
  }
  if (pid == 0) {
    th_child_setup(parent, nullfd, 2, -1);
    execve(bin, (char *const *)argv, (char *const *)envp);
    static const char m[] = "etcd-harness: execve(etcdctl) failed\n";
    ssize_t w = write(2, m, sizeof m - 1);
    (void)w;
    _exit(127);
  }
  if (nullfd >= 0) close(nullfd);
  free(argv);
  free(envp);

  int st = 0;
  if (th_wait_exit(pid, TH_ETCDCTL_TIMEOUT_MS, &st) != 0) {
    th_msg("etcdctl (pid %ld) hung for %d ms; killing it", (long)pid,
           TH_ETCDCTL_TIMEOUT_MS);
    kill(pid, SIGKILL);
    th_wait_exit(pid, -1, &st);
  }
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return -1;
}

/* ------------------------------------------------------------------ */
/* clusters                                                            */
/* ------------------------------------------------------------------ */

#define TH_CLUSTER_STOP_GRACE_MS 2000

/* GET <path> on 127.0.0.1:port (1 s socket timeouts).  Returns a malloc'd, NUL-terminated
 * body of a 200 answer (caller frees), or NULL. */
static char *th_http_get(int port, const char *path) {
  int fd = th_connect_loopback(port, 1000);
  if (fd < 0) return NULL;
  char req[256];
  int n = snprintf(req, sizeof req,
                   "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n",
                   path, port);
  char *buf = NULL;
  size_t got = 0, cap = 0;
  int ok = 0;
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
    for (;;) {
      if (cap - got < 4096) {
        if (cap >= (8u << 20)) break; /* far more than /metrics ever is */
        size_t ncap = cap ? cap * 2 : 65536;
        char *nb = realloc(buf, ncap);
        if (nb == NULL) break;
        buf = nb;
        cap = ncap;
      }
      ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        ok = r == 0;
        break;
      }
      got += (size_t)r;
    }
  }
  close(fd);
  if (!ok || buf == NULL) {
    free(buf);
    return NULL;
  }
  buf[got] = '\0';
  const char *body = strstr(buf, "\r\n\r\n");
  if (strncmp(buf, "HTTP/1.1 200", 12) != 0 || body == NULL) {
    free(buf);
    return NULL;
  }
  return buf; /* headers included; callers search for lines */
}

/* The value of an unlabelled gauge `name` in a /metrics answer: 0/1..., or -1. */
static int th_metric_int(const char *metrics, const char *name) {
  size_t l = strlen(name);
  for (const char *p = metrics; (p = strstr(p, name)) != NULL; p += l) {
    if ((p == metrics || p[-1] == '\n') && p[l] == ' ') return atoi(p + l + 1);
  }
  return -1;
}

static int th_member_up(const th_cluster_t *c, int i) {
  return c->m[i].pid > 0 && !c->stopped[i];
}

static int th_member_metric(const th_cluster_t *c, int i, const char *name) {
  if (i < 0 || i >= c->n || !th_member_up(c, i)) return -1;
  char *m = th_http_get(c->m[i].client_port, "/metrics");
  if (m == NULL) return -1;
  int v = th_metric_int(m, name);
  free(m);
  return v;
}

int th_cluster_leader(const th_cluster_t *c) {
  for (int i = 0; i < c->n; i++)
    if (th_member_metric(c, i, "etcd_server_is_leader") == 1) return i;
  return -1;
}

int th_cluster_member_has_leader(const th_cluster_t *c, int i) {
  int v = th_member_metric(c, i, "etcd_server_has_leader");
  return v < 0 ? -1 : v != 0;
}

int th_cluster_index_of(const th_cluster_t *c, const char *endpoint) {
  if (endpoint == NULL) return -1;
  if (strncmp(endpoint, "http://", 7) == 0) endpoint += 7;
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->m[i].endpoint, endpoint) == 0) return i;
  return -1;
}

void th_cluster_print_logs(const th_cluster_t *c, size_t max_bytes) {
  for (int i = 0; i < c->n; i++) th_etcd_print_log_tail(&c->m[i], max_bytes);
}

int th_cluster_wait_healthy(th_cluster_t *c, long timeout_ms) {
  long long deadline = th_now_ms() + timeout_ms;
  for (;;) {
    int ok = 1;
    for (int i = 0; i < c->n && ok; i++)
      if (th_member_up(c, i) && th_health_ok(c->m[i].client_port) != 0) ok = 0;
    if (ok && th_cluster_leader(c) >= 0) return 0;
    if (th_now_ms() >= deadline) {
      th_msg("cluster not healthy after %ld ms", timeout_ms);
      return -1;
    }
    th_sleep_ms(50);
  }
}

static void th_cluster_kill_all(th_cluster_t *c) {
  for (int i = 0; i < c->n; i++) {
    th_kill_and_reap(&c->m[i]);
    c->stopped[i] = 0;
  }
}

static void th_cluster_remove_dirs(th_cluster_t *c) {
  for (int i = 0; i < c->n; i++) th_remove_dirs(&c->m[i]);
}

/* 2n distinct free ports into ports[]; 0 or -1. */
static int th_distinct_ports(int *ports, int count) {
  for (int k = 0; k < count; k++) {
    int tries = 0, dup;
    do {
      ports[k] = th_free_port();
      if (ports[k] <= 0) return -1;
      dup = 0;
      for (int j = 0; j < k; j++)
        if (ports[j] == ports[k]) dup = 1;
    } while (dup && ++tries < 100);
    if (dup) return -1;
  }
  return 0;
}

int th_cluster_start(th_cluster_t *c, int n, const char *const *extra_args) {
  static int counter;
  static const char *const fast[] = {"--heartbeat-interval", "100", "--election-timeout", "1000",
                                     "--grpc-keepalive-min-time", "500ms", NULL};
  memset(c, 0, sizeof *c);
  if (n < 1 || n > TH_CLUSTER_MAX) {
    th_msg("th_cluster_start: n must be 1..%d", TH_CLUSTER_MAX);
    return -1;
  }
  int id = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);

  /* The flags every member gets: the fast settings, then the caller's. */
  char args_buf[sizeof c->m[0].extra_args_buf];
  size_t off = 0;
  int nargs = 0;
  for (int pass = 0; pass < 2; pass++) {
    const char *const *list = pass == 0 ? fast : extra_args;
    for (int i = 0; list != NULL && list[i] != NULL; i++) {
      size_t l = strlen(list[i]) + 1;
      if (nargs >= TH_MAX_EXTRA_ARGS || off + l > sizeof args_buf) {
        th_msg("too many/too long extra etcd args");
        return -1;
      }
      memcpy(args_buf + off, list[i], l);
      off += l;
      nargs++;
    }
  }

  for (int attempt = 1; attempt <= TH_START_ATTEMPTS; attempt++) {
    memset(c, 0, sizeof *c);
    c->n = n;
    int ports[2 * TH_CLUSTER_MAX];
    if (th_distinct_ports(ports, 2 * n) != 0) {
      th_msg("cannot get free loopback ports: %s", strerror(errno));
      return -1;
    }
    char initial[sizeof c->m[0].initial_cluster];
    size_t ioff = 0;
    initial[0] = '\0';
    for (int i = 0; i < n; i++) {
      th_etcd_t *e = &c->m[i];
      e->client_port = ports[2 * i];
      e->peer_port = ports[2 * i + 1];
      snprintf(e->name, sizeof e->name, "tc%ld-%d-m%d", (long)getpid(), id, i);
      snprintf(e->endpoint, sizeof e->endpoint, "127.0.0.1:%d", e->client_port);
      snprintf(e->cluster_token, sizeof e->cluster_token, "etcdreg-test-%ld-%d-%d", (long)getpid(), id, attempt);
      memcpy(e->extra_args_buf, args_buf, off);
      e->n_extra_args = nargs;
      int w = snprintf(initial + ioff, sizeof initial - ioff, "%s%s=http://127.0.0.1:%d", i ? "," : "", e->name,
                       e->peer_port);
      if (w < 0 || (size_t)w >= sizeof initial - ioff) {
        th_msg("initial cluster list too long");
        return -1;
      }
      ioff += (size_t)w;
      c->endpoints[i] = e->endpoint;
    }
    c->endpoints[n] = NULL;
    int failed = 0;
    for (int i = 0; i < n && !failed; i++) {
      th_etcd_t *e = &c->m[i];
      memcpy(e->initial_cluster, initial, ioff + 1);
      if (th_make_dirs(e) != 0 || th_spawn_etcd(e, 1) != 0) failed = 1;
    }
    if (failed) {
      th_cluster_kill_all(c);
      th_cluster_remove_dirs(c);
      return -1;
    }
    /* Members only become healthy together (a leader needs a quorum): wait for each in
     * turn within one overall deadline. */
    long long deadline = th_now_ms() + TH_READY_TIMEOUT_MS;
    int port_race = 0, bad = -1, why = TH_READY;
    for (int i = 0; i < n; i++) {
      long left = (long)(deadline - th_now_ms());
      int r = th_wait_ready(&c->m[i], left > 0 ? left : 1);
      if (r == TH_READY) continue;
      bad = i;
      why = r;
      port_race = r == TH_NOT_OURS;
      for (int j = 0; j < n; j++)
        if (th_log_contains(&c->m[j], "address already in use")) port_race = 1;
      break;
    }
    if (bad < 0 && th_cluster_wait_healthy(c, (long)(deadline - th_now_ms()) + 5000) == 0) return 0;
    if (port_race && attempt < TH_START_ATTEMPTS) {
      th_msg("port race starting the cluster (attempt %d), retrying with new ports", attempt);
      th_cluster_kill_all(c);
      th_cluster_remove_dirs(c);
      continue;
    }
    th_msg("cluster failed to become ready (member %d: %s)", bad,
           bad < 0 ? "no leader" : why == TH_TIMEOUT ? "timeout" : why == TH_DIED ? "process died" : "port owned by another process");
    th_cluster_print_logs(c, TH_LOG_TAIL_BYTES);
    th_cluster_stop(c);
    return -1;
  }
  return -1;
}

int th_cluster_kill(th_cluster_t *c, int i, int sig) {
  if (i < 0 || i >= c->n) return -1;
  if (sig == SIGCONT && c->m[i].pid > 0) {
    if (kill(c->m[i].pid, SIGCONT) != 0) return -1;
    c->stopped[i] = 0;
    return 0;
  }
  int rv = th_etcd_kill(&c->m[i], sig);
  if (rv == 0 && sig == SIGSTOP) c->stopped[i] = 1;
  if (c->m[i].pid == 0) c->stopped[i] = 0;
  return rv;
}

/* Spawn member i again (same ports, data dir, flags) and wait until it listens on its
 * client port. */
static int th_cluster_respawn(th_cluster_t *c, int i) {
  th_etcd_t *e = &c->m[i];
  if (e->pid > 0) {
    th_msg("th_cluster_restart: member %d still running (pid %ld); kill it first", i, (long)e->pid);
    return -1;
  }
  if (e->data_dir[0] == '\0' || e->client_port <= 0) {
    th_msg("th_cluster_restart: member %d not started (or already stopped)", i);
    return -1;
  }
  for (int attempt = 1;; attempt++) {
    th_log_note(e, "restart");
    if (th_spawn_etcd(e, 0) != 0) return -1;
    c->stopped[i] = 0;
    long long deadline = th_now_ms() + TH_READY_TIMEOUT_MS;
    for (;;) {
      int st = 0;
      pid_t r = waitpid(e->pid, &st, WNOHANG);
      if (r == e->pid || (r < 0 && errno == ECHILD)) {
        e->pid = 0;
        break;
      }
      int mine = th_pid_listens_on(e->pid, e->client_port);
      if (mine == 1) return 0;
      if (mine < 0) { /* cannot read /proc: a TCP connect has to do */
        int fd = th_connect_loopback(e->client_port, 1000);
        if (fd >= 0) {
          close(fd);
          return 0;
        }
      }
      if (th_now_ms() >= deadline) {
        th_msg("member %d did not listen on %s in time", i, e->endpoint);
        th_etcd_print_log_tail(e, TH_LOG_TAIL_BYTES);
        th_kill_and_reap(e);
        return -1;
      }
      th_sleep_ms(20);
    }
    /* It died. */
    if (attempt < TH_RESTART_BIND_RETRIES && th_log_contains(e, "address already in use")) {
      th_sleep_ms(200);
      continue;
    }
    th_msg("member %d died on restart", i);
    th_etcd_print_log_tail(e, TH_LOG_TAIL_BYTES);
    return -1;
  }
}

int th_cluster_restart(th_cluster_t *c, int i) {
  if (i < 0 || i >= c->n) return -1;
  if (th_cluster_respawn(c, i) != 0) return -1;
  int up = 0;
  for (int j = 0; j < c->n; j++) up += th_member_up(c, j);
  if (up < c->n / 2 + 1) return 0;
  return th_cluster_wait_healthy(c, TH_READY_TIMEOUT_MS);
}

int th_cluster_restart_all(th_cluster_t *c) {
  for (int i = 0; i < c->n; i++)
    if (c->m[i].pid <= 0 && th_cluster_respawn(c, i) != 0) return -1;
  return th_cluster_wait_healthy(c, TH_READY_TIMEOUT_MS);
}

void th_cluster_stop(th_cluster_t *c) {
  if (c == NULL) return;
  for (int i = 0; i < c->n && i < TH_CLUSTER_MAX; i++) {
    if (c->m[i].pid <= 0) continue;
    if (kill(c->m[i].pid, SIGTERM) == 0) kill(c->m[i].pid, SIGCONT);
  }
  long long deadline = th_now_ms() + TH_CLUSTER_STOP_GRACE_MS;
  for (int i = 0; i < c->n && i < TH_CLUSTER_MAX; i++) {
    th_etcd_t *e = &c->m[i];
    if (e->pid <= 0) continue;
    long left = (long)(deadline - th_now_ms());
    if (th_wait_exit(e->pid, left > 0 ? left : 0, NULL) != 0) {
      kill(e->pid, SIGKILL);
      th_wait_exit(e->pid, -1, NULL);
    }
    e->pid = 0;
  }
  for (int i = 0; i < c->n && i < TH_CLUSTER_MAX; i++) {
    th_etcd_stop(&c->m[i]); /* not running any more: removes the dir and log */
    c->stopped[i] = 0;
  }
}
