// Every system the benchmark runs, in table order: raw fio on the image (the limit), the other
// NBD servers, the onestack daemon, and the onestack engine embedded in a process.
import { onestackEmbedded } from './embedded-system.js';
import { runFio } from './fio.js';
import { need, type SystemDef } from './system-kit.js';
import { onestackDaemon } from './systems-onestack.js';
import { nbdkitFile, qemuNbd, qsdPlain, qsdQuorum } from './systems-peers.js';

export { isOnestack, type Running, type StartContext, type SystemDef, type SystemGroup } from './system-kit.js';

/** fio's io_uring engine straight on image 0: no server, no network, the limit of this machine. */
function rawFio(id: string, label: string, direct: boolean): SystemDef {
  return {
    id, label, group: 'raw',
    unavailable: () => need('fio'),
    start(ctx) {
      const path = ctx.images[0];
      return Promise.resolve({ where: `${path} (direct=${direct ? 1 : 0})`, measure: (w, seconds, cwd) => runFio({ kind: 'file', path, direct }, w, seconds, cwd) });
    },
  };
}

export const SYSTEMS: readonly SystemDef[] = [
  rawFio('raw-fio', 'raw fio io_uring (page cache)', false),
  rawFio('raw-fio-direct', 'raw fio io_uring O_DIRECT', true),
  qemuNbd('qemu-nbd-none', 'qemu-nbd cache=none aio=io_uring', ['--cache=none', '--aio=io_uring']),
  qemuNbd('qemu-nbd-writeback', 'qemu-nbd cache=writeback aio=threads', ['--cache=writeback', '--aio=threads']),
  nbdkitFile('nbdkit-file', 'nbdkit file (page cache)'),
  qsdPlain('qsd-plain', 'qemu-storage-daemon file (writeback)'),
  qsdQuorum('qsd-quorum', 'qemu-storage-daemon quorum of 2 (writeback)', false),
  qsdQuorum('qsd-quorum-remote', 'qemu-storage-daemon quorum local + nbdkit', true),
  onestackDaemon({ id: 'onestack-linear', label: 'onestack linear (writeback)', layout: 'linear', images: 1 }),
  onestackDaemon({ id: 'onestack-linear-direct', label: 'onestack linear (cache=none, io_uring)', layout: 'linear', images: 1, cache: 'none' }),
  onestackDaemon({ id: 'onestack-raid1', label: 'onestack raid1 of 2 (writeback)', layout: 'raid1', images: 2 }),
  onestackDaemon({ id: 'onestack-raid1-remote', label: 'onestack raid1 local + nbdkit', layout: 'raid1', images: 2, remote: true }),
  onestackEmbedded('onestack-embedded', 'onestack embedded API (linear)'),
];
