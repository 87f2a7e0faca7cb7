// Preloaded into a daemon (NODE_OPTIONS=--import) by test/rbd-partition.test.ts: moves the process
// into the cgroup v2 named by ONESTACK_TEST_CGROUP before it opens any socket, so an nft rule on
// that cgroup cuts the daemon (and the rados/ceph commands it runs) off from the cluster alone.
import { writeFileSync } from 'node:fs';

const cgroup = process.env.ONESTACK_TEST_CGROUP;
if (cgroup !== undefined && cgroup !== '') writeFileSync(`${cgroup}/cgroup.procs`, String(process.pid));
