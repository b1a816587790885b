// BullMQ's side of `krug bench --only jobs`: the same number of no-op jobs, on the same
// Redis, drained by one Worker at the same concurrency as krug's worker. Prints one JSON
// line: {"jobs", "pushed_per_s", "processed_per_s", "drained", "redis_cpu_us_per_job",
// "worker_cpu_us_per_job"} — the CPU the drain cost Redis (INFO cpu) and this process
// (process.cpuUsage), per job, measured as krug's bench measures its own worker.
//
// Settings are BullMQ's documented ones for throughput: jobs added with addBulk, completed
// jobs removed (`removeOnComplete: true`, as a production queue of no-ops would run;
// keeping them only costs BullMQ more), one connection per Queue and Worker.
//   REDIS_URL=redis://127.0.0.1:6379/0 JOBS=100000 CONCURRENCY=64 PREFIX=bench-x node throughput.mjs
import { Queue, Worker } from "bullmq";

const url = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  db: Number(url.pathname.slice(1) || 0),
  password: url.password ? decodeURIComponent(url.password) : undefined,
  maxRetriesPerRequest: null,
};
const jobs = Number(process.env.JOBS ?? 100000);
const concurrency = Number(process.env.CONCURRENCY ?? 64);
const prefix = process.env.PREFIX ?? "bench-bullmq";
const name = "noop";

const queue = new Queue(name, { connection, prefix });
await queue.waitUntilReady();
const pushed = performance.now();
const batch = 1000;
for (let i = 0; i < jobs; i += batch) {
  const n = Math.min(batch, jobs - i);
  await queue.addBulk(
    Array.from({ length: n }, (_, k) => ({
      name,
      data: { n: i + k },
      opts: { removeOnComplete: true, removeOnFail: true },
    })),
  );
}
const pushedPerS = jobs / ((performance.now() - pushed) / 1000);

// used_cpu_sys + used_cpu_user of INFO cpu, in seconds.
const redis = await queue.client;
const redisCpu = async () => {
  const info = await redis.info("cpu");
  const field = (name) => Number(info.match(new RegExp(`^${name}:([0-9.]+)`, "m"))[1]);
  return field("used_cpu_sys") + field("used_cpu_user");
};
const redisCpuBefore = await redisCpu();
const cpuBefore = process.cpuUsage();

let done = 0;
let finish;
const finished = new Promise((resolve) => (finish = resolve));
const started = performance.now();
const worker = new Worker(name, async () => {}, { connection, prefix, concurrency });
worker.on("completed", () => {
  done += 1;
  if (done === jobs) finish();
});
const timeout = setTimeout(finish, 600_000);
await finished;
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
const redisCpuSpent = (await redisCpu()) - redisCpuBefore;
clearTimeout(timeout);
await worker.close();
await queue.obliterate({ force: true });
await queue.close();
console.log(
  JSON.stringify({
    jobs,
    pushed_per_s: Math.round(pushedPerS),
    processed_per_s: Math.round(done / elapsed),
    drained: done === jobs,
    redis_cpu_us_per_job: (redisCpuSpent * 1e6) / Math.max(done, 1),
    worker_cpu_us_per_job: (cpu.user + cpu.system) / Math.max(done, 1),
  }),
);
