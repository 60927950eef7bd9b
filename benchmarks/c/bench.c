/*
 * The C ceiling for benchmarks/run.py: a Gearman client and worker on
 * libgearman, speaking the same little driver protocol as the Python
 * drivers in benchmarks/drivers/:
 *
 *   bench client MODE PORT FUNC N SIZE INFLIGHT
 *       MODE bg    N background jobs, pipelined (add_task_background + run_tasks
 *                  in windows of INFLIGHT)
 *            seq   N foreground jobs one after another (gearman_client_do);
 *                  reports p50/p99 latency
 *            conc  N foreground jobs, INFLIGHT in flight: a sliding window (the
 *                  complete callback adds the next task inside run_tasks)
 *            burst N foreground jobs added at once, then one run_tasks
 *   bench worker PORT FUNC MAXJOBS THREADS SLEEP_MS
 *       THREADS threads, each with its own gearman_worker_st (libgearman has
 *       no in-process job concurrency), echoing the payload after sleeping
 *       SLEEP_MS; prints READY, then a JSON line and exits after MAXJOBS jobs
 *       (0 = run until killed).
 *
 * Every client prints one JSON line: jobs, ok, elapsed, cpu (s), hwm_kb.
 * Everything is bounded: the process alarm()s itself after 120 s.
 */
#define _GNU_SOURCE
#include <libgearman-1.0/gearman.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

static long hwm_kb(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kb = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld", &kb) == 1) break;
  fclose(f);
  return kb;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ------------------------------------------------------------------ client */
static const char *g_func;
static char *g_data;
static size_t g_size;
static long g_total, g_added, g_done, g_ok;
static int g_background;

static gearman_return_t on_complete(gearman_task_st *task) {
  gearman_client_st *client = (gearman_client_st *)gearman_task_context(task);
  g_done++;
  g_ok++;
  if (g_added < g_total) {
    gearman_return_t ret;
    g_added++;
    if (!gearman_client_add_task(client, NULL, client, g_func, NULL, g_data, g_size, &ret)) {
      fprintf(stderr, "add_task: %s\n", gearman_client_error(client));
      return GEARMAN_ERROR;
    }
  }
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_fail(gearman_task_st *task) {
  (void)task;
  g_done++;
  return GEARMAN_SUCCESS;
}

static gearman_return_t on_created_bg(gearman_task_st *task) {
  (void)task;
  g_done++;
  g_ok++;
  return GEARMAN_SUCCESS;
}

static int run_client(int argc, char **argv) {
  if (argc < 8) return 2;
  const char *mode = argv[2];
  int port = atoi(argv[3]);
  g_func = argv[4];
  g_total = atol(argv[5]);
  g_size = (size_t)atol(argv[6]);
  long inflight = atol(argv[7]);
  if (inflight < 1) inflight = 1;
  g_data = malloc(g_size + 1);
  memset(g_data, 'x', g_size);

  gearman_client_st *client = gearman_client_create(NULL);
  if (!client || gearman_client_add_server(client, "127.0.0.1", (in_port_t)port) != GEARMAN_SUCCESS) {
    fprintf(stderr, "client setup failed\n");
    return 1;
  }
  gearman_client_add_options(client, GEARMAN_CLIENT_FREE_TASKS);
  gearman_client_set_timeout(client, 60000);
  double *lat = NULL;
  /* connect outside the timed section, like the Python drivers do */
  if (gearman_client_echo(client, "x", 1) != GEARMAN_SUCCESS) {
    fprintf(stderr, "echo: %s\n", gearman_client_error(client));
    return 1;
  }
  double c0 = cpu_self(), t0 = now();
  gearman_return_t ret;
  if (!strcmp(mode, "seq")) {
    lat = malloc(sizeof(double) * (size_t)g_total);
    for (long i = 0; i < g_total; i++) {
      size_t rsize;
      double s = now();
      void *res = gearman_client_do(client, g_func, NULL, g_data, g_size, &rsize, &ret);
      lat[i] = now() - s;
      free(res);
      g_done++;
      if (ret == GEARMAN_SUCCESS) g_ok++;
      else { fprintf(stderr, "do: %s\n", gearman_client_error(client)); break; }
    }
  } else if (!strcmp(mode, "bg")) {
    g_background = 1;
    gearman_client_set_created_fn(client, on_created_bg);
    while (g_added < g_total) {
      long n = g_total - g_added < inflight ? g_total - g_added : inflight;
      for (long i = 0; i < n; i++) {
        if (!gearman_client_add_task_background(client, NULL, client, g_func, NULL, g_data, g_size, &ret)) {
          fprintf(stderr, "add_task_background: %s\n", gearman_client_error(client));
          return 1;
        }
      }
      g_added += n;
      ret = gearman_client_run_tasks(client);
      if (ret != GEARMAN_SUCCESS) { fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client)); break; }
    }
  } else if (!strcmp(mode, "conc") || !strcmp(mode, "burst")) {
    gearman_client_set_complete_fn(client, on_complete);
    gearman_client_set_fail_fn(client, on_fail);
    long first = !strcmp(mode, "burst") ? g_total : (inflight < g_total ? inflight : g_total);
    for (long i = 0; i < first; i++) {
      if (!gearman_client_add_task(client, NULL, client, g_func, NULL, g_data, g_size, &ret)) {
        fprintf(stderr, "add_task: %s\n", gearman_client_error(client));
        return 1;
      }
    }
    g_added = first;
    /* run_tasks returns once no task is left; the callback keeps the window full */
    while (g_done < g_total) {
      ret = gearman_client_run_tasks(client);
      if (ret != GEARMAN_SUCCESS) { fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client)); break; }
      if (g_done < g_total && g_added == g_done) { /* window drained early: refill */
        long n = g_total - g_added < inflight ? g_total - g_added : inflight;
        for (long i = 0; i < n; i++)
          gearman_client_add_task(client, NULL, client, g_func, NULL, g_data, g_size, &ret);
        g_added += n;
      }
    }
  } else {
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
  }
  double elapsed = now() - t0, cpu = cpu_self() - c0;
  printf("{\"jobs\": %ld, \"ok\": %ld, \"elapsed\": %.6f, \"cpu\": %.6f, \"hwm_kb\": %ld",
         g_done, g_ok, elapsed, cpu, hwm_kb());
  if (lat && g_done) {
    qsort(lat, (size_t)g_done, sizeof(double), cmp_double);
    printf(", \"p50\": %.7f, \"p99\": %.7f", lat[g_done / 2], lat[(size_t)(g_done * 0.99)]);
  }
  printf("}\n");
  fflush(stdout);
  gearman_client_free(client);
  return g_ok == g_total ? 0 : 1;
}

/* ------------------------------------------------------------------ worker */
static atomic_long w_done;
static long w_max;
static int w_port, w_sleep_ms;
static const char *w_func;
static double w_t0, w_c0;

static void *echo_fn(gearman_job_st *job, void *context, size_t *result_size, gearman_return_t *ret) {
  (void)context;
  if (w_sleep_ms) usleep((useconds_t)w_sleep_ms * 1000);
  size_t n = gearman_job_workload_size(job);
  char *out = malloc(n ? n : 1);
  memcpy(out, gearman_job_workload(job), n);
  *result_size = n;
  *ret = GEARMAN_SUCCESS;
  return out;
}

static void *worker_thread(void *arg) {
  (void)arg;
  gearman_worker_st *w = gearman_worker_create(NULL);
  if (!w || gearman_worker_add_server(w, "127.0.0.1", (in_port_t)w_port) != GEARMAN_SUCCESS ||
      gearman_worker_add_function(w, w_func, 0, echo_fn, NULL) != GEARMAN_SUCCESS) {
    fprintf(stderr, "worker setup failed\n");
    _exit(1);
  }
  gearman_worker_set_timeout(w, 1000);
  for (;;) {
    gearman_return_t ret = gearman_worker_work(w);
    if (ret == GEARMAN_SUCCESS) {
      long d = atomic_fetch_add(&w_done, 1) + 1;
      if (w_max && d == w_max) {
        printf("{\"jobs\": %ld, \"elapsed\": %.6f, \"cpu\": %.6f, \"hwm_kb\": %ld}\n", d, now() - w_t0,
               cpu_self() - w_c0, hwm_kb());
        fflush(stdout);
        _exit(0);
      }
    } else if (ret != GEARMAN_TIMEOUT && ret != GEARMAN_NO_JOBS && ret != GEARMAN_IO_WAIT) {
      usleep(1000);
    }
  }
  return NULL;
}

static int run_worker(int argc, char **argv) {
  if (argc < 7) return 2;
  w_port = atoi(argv[2]);
  w_func = argv[3];
  w_max = atol(argv[4]);
  int threads = atoi(argv[5]);
  w_sleep_ms = atoi(argv[6]);
  if (threads < 1) threads = 1;
  w_t0 = now();
  w_c0 = cpu_self();
  printf("READY\n");
  fflush(stdout);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  for (int i = 0; i < threads; i++) {
    pthread_t t;
    if (pthread_create(&t, &attr, worker_thread, NULL)) {
      fprintf(stderr, "pthread_create failed at %d\n", i);
      _exit(1);
    }
  }
  for (;;) pause();
  return 0;
}

int main(int argc, char **argv) {
  alarm(120);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 2 && !strcmp(argv[1], "client")) return run_client(argc, argv);
  if (argc >= 2 && !strcmp(argv[1], "worker")) return run_worker(argc, argv);
  fprintf(stderr, "usage: bench client MODE PORT FUNC N SIZE INFLIGHT | bench worker PORT FUNC MAXJOBS THREADS SLEEP_MS\n");
  return 2;
}
