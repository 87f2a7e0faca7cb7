// The onestack daemon (`onestack serve`) over the same image file(s): linear, raid1 of two files,
// and raid1 of a file and a network leg served by an nbdkit of its own.
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort, startServer } from './proc.js';
import { EXPORT, need, remoteLeg, started, withLeg, type StartContext, type SystemDef } from './system-kit.js';

/** onestack config over element URIs; local files use the page cache (writeback) like the peers. */
async function onestackConfig(ctx: StartContext, id: string, layout: 'linear' | 'raid1', uris: readonly string[], cache: 'writeback' | 'none'): Promise<string> {
  const lines = ['elements:'];
  uris.forEach((uri, i) => lines.push(`  - { name: e${i}, uri: "${uri}"${uri.startsWith('file:') ? `, cache: ${cache}` : ''} }`));
  lines.push('volumes:', `  - { name: ${EXPORT}, layout: ${layout}, elements: [${uris.map((_, i) => `e${i}`).join(', ')}], boot: true }`);
  const file = path.join(ctx.workDir, `${id}.yaml`);
  await writeFile(file, lines.join('\n') + '\n');
  return file;
}

export interface OnestackDef {
  readonly id: string;
  readonly label: string;
  readonly layout: 'linear' | 'raid1';
  readonly images: 1 | 2;
  /** Image 1 is served by an nbdkit of this system's own and joins as nbd://: a local + remote mirror. */
  readonly remote?: boolean;
  /** Local elements' cache mode: writeback (page cache, default) or none (O_DIRECT, io_uring), like qemu-nbd --cache. */
  readonly cache?: 'writeback' | 'none';
}

export function onestackDaemon(def: OnestackDef): SystemDef {
  return {
    id: def.id, label: def.label, group: 'daemon', onestackImages: def.images,
    unavailable: () => (def.remote === true ? need('nbdkit') : null),
    async start(ctx) {
      const main = path.join(ctx.repoRoot, 'packages/cli/dist/main.js');
      if (!existsSync(main)) throw new Error(`${main} is missing: run \`pnpm run build\` first`);
      const leg = def.remote === true ? await remoteLeg(def.id, ctx.images[1]) : undefined;
      return withLeg(leg, async () => {
        const uris = [`file:${ctx.images[0]}`];
        if (def.images === 2) uris.push(leg === undefined ? `file:${ctx.images[1]}` : `nbd://127.0.0.1:${leg.port}/`);
        const [port, apiPort] = [await freePort(), await freePort()];
        const config = await onestackConfig(ctx, def.id, def.layout, uris, def.cache ?? 'writeback');
        const dataDir = path.join(ctx.workDir, `data-${def.id}`);
        const api = `127.0.0.1:${apiPort}`;
        const s = startServer(def.id, process.execPath, [main, 'serve', '--config', config, '--data-dir', dataDir, '--nbd', `127.0.0.1:${port}`, '--api', api], ctx.repoRoot);
        return { ...(await started(s, port, /onestack: ready/)), api: { listen: api, dataDir } };
      });
    },
  };
}
