/*
 * etcd_harness.h - start/stop real etcd servers for tests: single members, and
 * clusters of up to TH_CLUSTER_MAX members (th_cluster_*).
 *
 * Test-only code.  Depends on libc/POSIX (Linux) only.
 *
 * Every instance gets its own free loopback ports (127.0.0.1 only, never a
 * fixed port such as 2379) and its own temporary data directory.  etcd is
 * started with fork+exec and PR_SET_PDEATHSIG(SIGKILL), so it dies with the
 * thread that started it -- call th_etcd_start()/th_etcd_restart() from a
 * thread that outlives the server (normally the test's main thread).
 *
 * Environment:
 *   ETCDREG_TEST_KEEP_LOGS=1  keep the data dir and the etcd log after
 *                             th_etcd_stop() (their paths are printed).
 *   ETCDREG_ETCD_BIN          etcd binary to run (default: "etcd" on PATH).
 *   ETCDREG_ETCDCTL_BIN       etcdctl binary (default: "etcdctl" on PATH).
 */
#ifndef ETCDREG_TEST_ETCD_HARNESS_H
#define ETCDREG_TEST_ETCD_HARNESS_H

#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TH_MAX_EXTRA_ARGS 32

typedef struct th_etcd {
  pid_t pid;                 /* 0 when not running */
  int client_port, peer_port;
  char endpoint[64];         /* "127.0.0.1:<client_port>" */
  char data_dir[256];        /* own temp dir: mkdtemp("$TMPDIR/etcdreg-test-XXXXXX") */
  char log_path[300];        /* etcd's stdout+stderr: "<data_dir>.log" */
  char name[32];             /* member name */
  /* private: extra flags given to th_etcd_start(), reused by restart */
  char extra_args_buf[2048]; /* NUL-separated strings */
  /* TLS (th_etcd_start_tls): the client URL is https, the certificates come from tls_dir
   * (made by th_make_certs). */
  char tls_dir[200];
  char tls_cert_file[300], tls_key_file[300], tls_ca_file[300];
  int client_cert_auth;
  int n_extra_args;
  /* private: set by th_cluster_start() for members of a cluster ("" for a single-member
   * etcd): the --initial-cluster list and --initial-cluster-token. */
  char initial_cluster[512];
  char cluster_token[64];
} th_etcd_t;

/* Start a fresh single-member etcd on free loopback ports with its own data
 * dir.  extra_args: NULL-terminated list of additional etcd flags, or NULL
 * (they are remembered and reused by th_etcd_restart()).  Retries with new
 * ports if etcd reports "address already in use" (up to 5 attempts).  Waits
 * (up to ~20 s) until a TCP connect to the client port succeeds and
 * "GET /health" returns 200 with "true" in the body.  *e is overwritten.
 * Returns 0, or -1 after printing a message and the log tail on stderr. */
int th_etcd_start(th_etcd_t *e, const char *const *extra_args);
/* The same over TLS: serves https with <cert_dir>/<cert_name>.pem/.key ("server", or
 * "expired"); with client_cert_auth it requires client certificates signed by ca.pem. */
int th_etcd_start_tls(th_etcd_t *e, const char *const *extra_args, const char *cert_dir,
                      const char *cert_name, int client_cert_auth);
/* Makes CA, server, expired-server, client and other-CA certificates in `dir` (with the
 * openssl command line tool). 0 or -1. */
int th_make_certs(const char *dir);

/* Restart on the same ports and data dir (after th_etcd_kill()).  Waits for
 * readiness like th_etcd_start().  Returns 0 or -1. */
int th_etcd_restart(th_etcd_t *e);

/* Send sig to etcd (e.g. SIGKILL, SIGTERM, SIGSTOP, SIGCONT).  For SIGKILL
 * and SIGTERM the child is also reaped and e->pid set to 0 (SIGTERM is
 * followed by SIGCONT, and by SIGKILL if etcd has not exited after 10 s).
 * Returns 0, or -1 if etcd is not running or kill() failed. */
int th_etcd_kill(th_etcd_t *e, int sig);

/* SIGTERM, wait up to 3 s, then SIGKILL; reap; remove the data dir
 * recursively and the log (unless ETCDREG_TEST_KEEP_LOGS=1).  Safe to call
 * twice, and on a zero-initialised struct. */
void th_etcd_stop(th_etcd_t *e);

/* A free loopback TCP port (bind 127.0.0.1:0, read it back, close), or -1. */
int th_free_port(void);

/* A loopback TCP port on which nothing listens (same method as
 * th_free_port()), or -1.  Use it to test connection-refused paths. */
int th_closed_port(void);

/* Run "etcdctl --endpoints=<endpoint> args..." with ETCDCTL_API=3 and its
 * stdout+stderr going to our stderr.  args: NULL-terminated, may be NULL.
 * Returns etcdctl's exit status (128+signal if killed), or -1 if it could
 * not be run. */
int th_etcdctl(const th_etcd_t *e, const char *const *args);

/* Print the last max_bytes of etcd's log to stderr. */
void th_etcd_print_log_tail(const th_etcd_t *e, size_t max_bytes);

/* ------------------------------------------------------------------ */
/* Clusters: n members (plain http) on loopback, one --initial-cluster */
/* ------------------------------------------------------------------ */

#define TH_CLUSTER_MAX 5

typedef struct th_cluster {
  int n;
  th_etcd_t m[TH_CLUSTER_MAX];       /* m[i].endpoint: "127.0.0.1:<client port>" */
  int stopped[TH_CLUSTER_MAX];       /* SIGSTOPped through th_cluster_kill() */
  /* NULL-terminated, pointing at m[i].endpoint: usable as client options' endpoints. */
  const char *endpoints[TH_CLUSTER_MAX + 1];
} th_cluster_t;

/* Start an n-member cluster (1 <= n <= TH_CLUSTER_MAX) on 2n free loopback ports, each
 * member with its own data dir and log, all spawned like th_etcd_start() (PDEATHSIG,
 * --unsafe-no-fsync, zap logger at warn) with fast settings that hold under load:
 * --heartbeat-interval 100 --election-timeout 1000 --grpc-keepalive-min-time 500ms.
 * extra_args (NULL-terminated, may be NULL) come after those, so they can override
 * them; they are reused by restarts.  Waits (up to ~20 s) until every member answers
 * /health (which needs a leader) and a leader is known.  Retries with new ports on a
 * port race.  *c is overwritten.  Returns 0, or -1 after printing the members' logs. */
int th_cluster_start(th_cluster_t *c, int n, const char *const *extra_args);

/* Send sig to member i (see th_etcd_kill(): SIGKILL/SIGTERM reap it; SIGSTOP waits until
 * it has stopped).  SIGSTOP/SIGCONT are remembered in c->stopped[i].  0 or -1. */
int th_cluster_kill(th_cluster_t *c, int i, int sig);

/* Restart member i (after th_cluster_kill(SIGKILL/SIGTERM)) on the same ports and data
 * dir.  Waits until it listens on its client port; then, if the members running (and
 * not stopped) now form a quorum, until every one of them is healthy and a leader is
 * known.  With fewer running it does not wait for health (it cannot be healthy yet):
 * restart the others, or use th_cluster_restart_all().  0 or -1. */
int th_cluster_restart(th_cluster_t *c, int i);

/* Restart every member that is not running, then wait until all are healthy and a
 * leader is known.  0 or -1. */
int th_cluster_restart_all(th_cluster_t *c);

/* Wait until every running, non-stopped member answers /health with true and one of
 * them is the leader.  0, or -1 after timeout_ms. */
int th_cluster_wait_healthy(th_cluster_t *c, long timeout_ms);

/* The index of the member that is the leader (from etcd_server_is_leader on /metrics of
 * the running, non-stopped members), or -1 when none says so. */
int th_cluster_leader(const th_cluster_t *c);

/* Does member i have a leader (etcd_server_has_leader)?  1, 0, or -1 when it cannot be
 * asked (not running, stopped, no answer within 1 s). */
int th_cluster_member_has_leader(const th_cluster_t *c, int i);

/* The member whose endpoint is `endpoint` ("127.0.0.1:<port>", optionally with
 * "http://"), or -1. */
int th_cluster_index_of(const th_cluster_t *c, const char *endpoint);

/* Stop every member: SIGCONT + SIGTERM to all at once, up to 2 s of grace in total, then
 * SIGKILL; reap; remove data dirs and logs (unless ETCDREG_TEST_KEEP_LOGS=1).  Safe to
 * call twice and on a zeroed struct. */
void th_cluster_stop(th_cluster_t *c);

/* Print the tail of every member's log. */
void th_cluster_print_logs(const th_cluster_t *c, size_t max_bytes);

#ifdef __cplusplus
}
#endif

#endif /* ETCDREG_TEST_ETCD_HARNESS_H */
