/**
 * The SFTP backend as the rest of foldersync sees it: `sftp://` URLs and rsync's `host:path`,
 * the `--ssh-*` options, and the OpenSSH client it runs. Light: the backend itself is loaded
 * only when a target names a host.
 *
 * @module
 */

import type { BackendDescriptor } from "../descriptor.ts";
import type { SftpTarget } from "../target.ts";
import { parseSftp } from "./target.ts";

/** The SFTP backend's descriptor. */
export const SFTP: BackendDescriptor<SftpTarget> = {
  kind: "sftp",
  forms: "sftp://host/path or host:path",
  schemes: ["sftp"],
  parse: parseSftp,
  options: ["ssh-port", "ssh-key", "known-hosts", "ssh-config", "ssh-option"],
  // ssh, a process of its own, gets the whole environment without a grant.
  env: [],
  run: ["ssh"],
  net: false,
  // ssh reads ~/.ssh, the key and known_hosts itself.
  reads: () => [],
  open: async (target, options) => (await import("./sftp_replica.ts")).openSftpReplica(target, options),
};
