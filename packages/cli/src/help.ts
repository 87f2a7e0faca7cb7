// Help texts, one per command. Kept next to each other so they read as one manual.

export const TOP_HELP = `onestack - one storage stack for local and network disks

usage: onestack COMMAND [OPTIONS]

commands:
  serve      run the daemon: NBD exports plus the JSON API and GUI
  status     volumes, layout, state, % rebuilt, elements, IOPS (like /proc/mdstat)
  volume     list | create | delete | grow | add-member | remove-member | reshape | scrub | checkpoint volumes
  element    list | add | remove | fail | replace elements (disks)
  discover   list the exports of an NBD server or the targets of an iSCSI portal
  rdma       RDMA devices and port states on this host (libibverbs probe; no daemon needed)
  bench      measure a volume or an NBD URI with fio
  init       configuration wizard: enumerate disks, choose a layout, write onestack.yaml

Commands other than serve, init, rdma and bench --uri talk to the running daemon over its API (--api HOST:PORT, default
127.0.0.1:9090); the token comes from ONESTACK_TOKEN or <data dir>/api-token.
Exit status: 0 ok, 1 runtime failure, 2 usage or configuration error.

Run "onestack COMMAND --help" for a command's options.
`;

const CLIENT_OPTIONS = `  --api HOST:PORT     the daemon's API address (default 127.0.0.1:9090)
  --data-dir DIR      the daemon's data dir, to read its api-token (default $ONESTACK_DATA_DIR or ./data)
  --timeout SEC       wait at most SEC seconds (1..300) for the daemon's answer (default 10; 120 for
                      changes that may wait for an rbd image's lock: element add, volume create, ...)
  -h, --help          this help
environment: ONESTACK_TOKEN (API token; wins over the data dir's api-token), ONESTACK_DATA_DIR`;

export const HELP: Readonly<Record<string, string>> = {
  serve: `usage: onestack serve [--config FILE] [--data-dir DIR] [--nbd HOST:PORT|unix:PATH] [--api HOST:PORT]

Runs the daemon in the foreground: assembles the volumes, exports them over NBD (export name =
volume name; the empty name is the boot volume) and serves the JSON API and GUI. Without
--config it uses the embedded default: a raid1 volume "default" over two sparse 1 GiB images in
the data dir. Prints "onestack: ready" once everything listens. Ctrl-C (or SIGTERM) flushes and
stops cleanly; a second Ctrl-C stops at once (exit 1).

The banner on stdout carries the GUI URL with the API token; log lines go to stderr and never
carry the token.

options:
  --config FILE       onestack.yaml (or JSON)
  --data-dir DIR      data dir (default: the config's dataDir, else $ONESTACK_DATA_DIR, else ./data)
  --nbd HOST:PORT     NBD listen address (default 127.0.0.1:10809; port 0 picks a free port)
  --nbd unix:PATH     NBD on a Unix socket instead (mode 0660; clients use
                      nbd+unix:///VOLUME?socket=PATH; nbd.allow does not apply to it)
  --api HOST:PORT     API/GUI listen address (default 127.0.0.1:9090; port 0 picks a free port)
  -h, --help          this help

systemd socket activation: with LISTEN_PID = this process and LISTEN_FDS >= 1, NBD is served on
the passed fd named "nbd" in LISTEN_FDNAMES (else fd 3) and the API on the one named "api";
--nbd (and --api, when an "api" fd is passed) are then ignored. Example units: docs/nbd.md.

Upgrades without dropping clients: SIGUSR2 starts the same command line again (the installed
code as it is now), hands the new process the listening sockets and every live plaintext NBD
connection, and exits; TLS connections are closed after their replies (clients reconnect). If
the new process fails, this one keeps serving. Details: docs/nbd.md.
`,
  status: `usage: onestack status [--json] [--watch [--count N]]

Shows every volume like /proc/mdstat: name, state, layout, size, [n/m] [UU] element map,
op counters, then each element with its state. While a rebuild, resync or scrub runs, a
progress line:
      [=====>              ] 27.3%  123.4 MiB/s  ETA 0:37  rebuild of d1
and after a scrub, a line with its result (mismatched units and bytes, repaired units).

options:
  --json              the status object (same shape as GET /api/v1/status)
  --watch             redraw with IOPS until Ctrl-C: in place on a terminal (four times a second
                      while a progress line shows, else every second); otherwise one frame a
                      second (with --json: one object a line)
  --count N           with --watch: stop after N frames
${CLIENT_OPTIONS}
`,
  volume: `usage: onestack volume list [--json]
       onestack volume create NAME --layout L --element E... [--chunk-kib N] [--size BYTES]
                                   [--order fifo|lifo|priority] [--integrity]
                                   [--write-behind ELEMENT[:maxLagMiB]]
       onestack volume delete NAME
       onestack volume grow NAME --size SIZE [--json]
       onestack volume add-member NAME ELEMENT [--json]
       onestack volume remove-member NAME ELEMENT [--json]
       onestack volume reshape NAME --add E1[,E2..] [--layout raid5|raid6|raid10] [--max-mib-per-sec N] [--watch] [--json]
       onestack volume reshape NAME --resume [--max-mib-per-sec N]
       onestack volume scrub NAME [--repair] [--wait] [--max-mib-per-sec N] [--json]
       onestack volume scrub NAME --cancel
       onestack volume checkpoint NAME [--name CKPT] [--json]
       onestack volume checkpoints NAME [--json]
       onestack volume checkpoint-delete NAME CKPT

  --layout L          linear, raid0, raid1, raid10, raid5 or raid6
  --element E...      element names in role order: repeat the flag, separate with commas, or
                      list them after one flag (--element d0 d1)
  --chunk-kib N       stripe chunk in KiB (default: the engine's, 64)
  --size BYTES        (create) cap the volume's size; (grow) the new size (suffixes K, M, G, T
                      are powers of 1024)
  --order O           request order: fifo (default), lifo or priority
  --integrity         per-block checksums on every element (raid1, raid10): a read whose
                      checksum fails is served from another leg and the bad copy rewritten
  --write-behind E[:N] (raid1, raid10) leg E (usually a remote one) gets writes after they are
                      acknowledged, at most N MiB behind (1..1024, default 64); FLUSH waits for
                      it (docs/durability.md "Write-behind legs")
  --json              (list) print JSON; (scrub) the started scrub, or with --wait its result

grow makes a volume larger into room its elements already have (a file enlarged with truncate -s,
a larger device): linear grows its last element, raid1/raid10 every leg, raid0/raid5/raid6 add
rows on every element (no data moves; the new bytes read as zeroes). NBD clients see the new size
on their next connection, or at once with the RESIZE extension (docs/nbd.md). Shrinking, and
volumes with integrity or checkpoints, are refused.

add-member gives a raid1 one more leg while it serves: ELEMENT (an unused element, at least as
large as a leg) takes every write at once and is rebuilt in full in the background (progress in
onestack status). remove-member takes a leg out of a raid1 of 3 or more legs (at least 2 active
legs must stay); it becomes an unused element (failed if it had failed) whose superblock can never
pass for the volume's data. Other layouts are refused (raid10, raid5, raid6: element replace; linear, raid0: grow).

reshape adds elements to a linear, raid0, raid5 or raid6 volume, or changes its level (raid1 of 2 to
raid5 with --add, raid5 to raid6 with --layout raid6), while it serves: data moves row by row into
the new geometry, crash-safe (a position in every superblock; docs/reshape.md). Clients see the old
size until it finishes, then the new one. Progress shows in onestack status. Integrity volumes,
raid10, shrinking and volumes with checkpoints are refused.
  --add E1[,E2..]     the unused elements that join (at least as large as the present ones)
  --layout L          the new layout (default: the same; a raid1 becomes raid5)
  --watch             follow it to its end

scrub (raid1, raid10) reads every leg unit by unit (1 MiB on raid1, one chunk on raid10) and
counts the units whose copies differ; client I/O goes on meanwhile. --repair also rewrites the
odd copies: with three or more legs from the copy most legs agree on; with two legs there is no
majority, so from the first active leg - a 2-way mirror cannot know which copy is right. On a
volume with integrity each copy is verified against its checksums instead: the result names each
element whose copy failed them with its bad 4 KiB blocks, --repair rewrites those from a copy that
verifies, and blocks that fail on every copy are reported unrecoverable and left alone (exit 1).
Progress shows in onestack status.
  --repair            rewrite mismatched copies (default: only count them)
  --wait              follow the scrub to its end and print its result; exit 1 when mismatches
                      are left in place (a check that found some, a repair that could not write),
                      or when it was cancelled or failed
  --max-mib-per-sec N at most N MiB of the volume a second (default: unthrottled)
  --cancel            stop the volume's running scrub

checkpoint starts a dirty bitmap: from then on every write, trim and zeroing marks the 64 KiB
regions it touches (larger regions on volumes over 1 TiB). NBD clients read it as the meta
context qemu:dirty-bitmap:CKPT, so a backup copies only what changed since (docs/checkpoints.md).
Checkpoints survive restarts and crashes; at most 8 per volume. checkpoints lists them (one that
cannot be trusted shows as unusable and is not offered: delete it and take a full backup).
  --name CKPT         checkpoint name: letters, digits, . _ - (default: ckpt-1, ckpt-2, ...)
${CLIENT_OPTIONS}

example: onestack volume create vol1 --layout raid1 --element d2 --element d3
         onestack volume grow vol1 --size 2G
         onestack volume add-member vol1 d4
         onestack volume reshape vol5 --add d5 --watch
         onestack volume scrub vol1 --repair --wait
         onestack volume checkpoint vol1 --name nightly
`,
  discover: `usage: onestack discover URI [--secret-file FILE] [--tls-ca FILE] [--tls-cert FILE] [--tls-key FILE]
                         [--json] [--local]

Lists what a remote offers before it becomes an element: an NBD server's exports (NBD_OPT_LIST)
or an iSCSI portal's targets (a SendTargets discovery session), each with the element URI to give
"onestack element add". By default the daemon asks (it is what will connect later); --local asks
from this process and needs no daemon.

URI: nbd://HOST[:PORT], nbds://HOST[:PORT] (TLS), nbd+unix:///?socket=PATH,
iscsi://[USER@]HOST[:PORT] (USER: the CHAP user; the secret comes from --secret-file)

  --secret-file FILE  iSCSI CHAP secret: the first line of FILE. Secrets are never taken on the
                      command line (they would show in ps and shell history), not even in the URI
  --tls-ca FILE       nbds: CA certificate (PEM) to check the server against
  --tls-cert FILE     nbds: client certificate (PEM), with --tls-key
  --tls-key FILE      nbds: client key (PEM)
  --json              the result as JSON: { kind, where, items: [{ name, uri, description }] }
  --local             ask from this process instead of through the daemon
${CLIENT_OPTIONS}

exit status: 0 listed (maybe nothing), 1 the remote could not be asked (unreachable, refused,
authentication failed), 2 a bad URI or option.

example: onestack discover nbd://127.0.0.1:10810
         onestack discover iscsi://alice@192.0.2.7 --secret-file /etc/onestack/chap.secret
`,
  rdma: `usage: onestack rdma [--json]

Probes this host for RDMA devices: the native addon loads libibverbs (rdma-core) at run time and
lists each device with its port states, as one line:
      rdma: no RDMA device (libibverbs not installed)
      rdma: no RDMA device (libibverbs loaded, 0 devices)
      rdma: 2 devices: mlx5_0 (port 1 ACTIVE), mlx5_1 (port 1 DOWN)
Without the native addon (not built, or ONESTACK_NATIVE=off) it cannot probe and says so. No
device is not an error: the exit status is 0. onestack status shows the daemon's line.

options:
  --json              { library, devices: [{ name, ports: [{ port, state }] }], reason?, summary }
  -h, --help          this help
`,
  bench: `usage: onestack bench [--volume V [--nbd HOST:PORT] | --uri URI] [--workload W|all] [--qd N]
                      [--seconds S] [--json]

Measures a volume or any NBD export with fio (its nbd engine; fio must be installed). Each
workload runs S seconds after a 1 s warm-up, with a progress bar; then a table shows IOPS, MiB/s
and the mean latency in microseconds.

workloads (queue depth):
  randread4k   4 KiB random reads (QD32)          seqread1m    1 MiB sequential reads (QD8)
  randwrite4k  4 KiB random writes (QD32)         seqwrite1m   1 MiB sequential writes (QD8)
  all          the four, in that order
The write workloads OVERWRITE the target's data (a warning is printed; there is no prompt).

options:
  --volume V          the running daemon's NBD export of volume V (the daemon is asked whether V exists)
  --nbd HOST:PORT     with --volume: the daemon's NBD address when its status does not report it
                      (default 127.0.0.1:10809)
  --uri URI           an NBD URI: nbd://HOST[:PORT]/EXPORT, nbds://..., nbd+unix:///EXPORT?socket=PATH
                      (no daemon needed)
  --workload W        one of the workloads above, or all (default randread4k)
  --qd N              queue depth for every workload (default: the workload's own)
  --seconds S         measured seconds per workload (default 8)
  --json              { uri, seconds, results: [{ workload, rw, bs, qd, seconds, iops, mibps, latMeanUs, ops }] }
                      on stdout (progress goes to stderr)
${CLIENT_OPTIONS}

exit status: 0 measured, 1 fio missing or failed, the daemon or volume not found, 2 a bad option.

example: onestack bench --volume default --workload all --seconds 10
         onestack bench --uri nbd://192.0.2.7:10809/disk --qd 64 --json
`,
  init: `usage: onestack init [--config FILE] [--data-dir DIR] [--yes] [--force]
                     [--layout linear|raid0|raid1|raid10|raid5|raid6] [--element URI]... [--remote URI]...
                     [--secret-file PATH] [--chap-user NAME] [--volume NAME] [--boot NAME|none] [--size-gib N]

Writes a configuration for onestack serve. It lists what could become an element - image files
(*.img, *.raw) in the data dir, block devices (mounted, held or read-only ones are shown as in
use and cannot be chosen), remote disks - then asks for remote disks (an NBD or iSCSI server is
asked what it offers, as onestack discover does), CHAP credentials, the layout, new image files
when too few disks are ready, the elements in role order, the volume name and the boot volume.
A flag answers its question. The config is checked by the engine's own loader before it is
written; a rejected one is reported with its field path and nothing is written.

Questions come on the terminal (Enter takes the [default]); without a terminal they are read line
by line from stdin. With --yes nothing is asked: flags and defaults decide, and a question
without a default (a CHAP secret) is a usage error.

options:
  --config FILE       where to write (default ./onestack.yaml); an existing file needs --force
  --data-dir DIR      data dir: images, state, API token, CHAP secret files (default
                      $ONESTACK_DATA_DIR or ./data)
  --yes, -y           ask nothing: take flags and defaults (every image of the data dir, the
                      disks of --remote; new images when they are too few for the layout)
  --layout L          default raid1 for two or more elements, linear for one
  --element URI...    the volume's elements in role order: path, file:PATH, /dev/NAME, nbd://...
                      or iscsi://...; a file that does not exist is created at first start
  --remote URI...     remote disks to add: nbd://HOST[:PORT]/EXPORT, iscsi://[USER@]HOST[:PORT]/IQN/LUN,
                      or a server (nbd://HOST[:PORT], iscsi://[USER@]HOST[:PORT]) whose exports or
                      targets are all added
  --secret-file PATH  the CHAP secret (first line of PATH) for iSCSI users; referenced as
                      secretFile. Without it the secret is asked for (never echoed) and stored in
                      DATA/chap-USER.secret, mode 0600. Secrets are never taken on the command line
  --chap-user NAME    CHAP user for iSCSI URIs that name none
  --volume NAME       volume name, also its NBD export name (default: --boot's, else "default")
  --boot NAME|none    make volume NAME the boot volume (the empty NBD export name); default yes
  --size-gib N        size of new image files in GiB (default 1)
  --force             replace an existing config file
  -h, --help          this help

exit status: 0 written, 1 a remote could not be asked, Ctrl-C, or the answer was not to write,
2 a bad option or answer, input that ended early, an existing file without --force, or a config
the loader rejects.

example: onestack init
         onestack init --yes --data-dir ./data --layout raid1 --element file:./data/d0.img \
                       --remote nbd://192.0.2.7:10809/disk --boot default
`,
  element: `usage: onestack element list [--json]
       onestack element add URI [--name N] [--cache writeback|none] [--secret-file FILE]
       onestack element remove N
       onestack element fail N
       onestack element replace OLD NEW [--volume V]

URI: file:PATH or a bare path, nbd://HOST[:PORT]/EXPORT, nbds://..., nbd+unix:///EXPORT?socket=PATH,
iscsi://[USER@]HOST[:PORT]/TARGET-IQN/LUN, rbd://POOL/IMAGE[?conf=PATH&id=USER&keyring=PATH]
(Ceph RBD through a qemu-nbd gateway the daemon supervises; docs/rbd.md)

  --name N            element name (default: chosen by the engine)
  --cache C           local elements: writeback (page cache, default) or none (O_DIRECT)
  --secret-file F     iscsi:// with CHAP: a file (one line, mode 0600) the daemon reads the secret
                      from; secrets are never taken on the command line or inside the URI
  --volume V          (replace) the volume to change (default: the volume OLD belongs to)

replace takes OLD out of its volume and rebuilds its data onto NEW (an unused element) in the
background; follow the rebuild with onestack status --watch.
  --json              (list) print JSON
${CLIENT_OPTIONS}

example: onestack element add file:/var/lib/onestack/disk2.img --name d2 --cache none
`,
};

/** Commands the SPEC names that arrive later: a clear error rather than a stub. */
export const NOT_YET: Readonly<Record<string, string>> = {};
