/**
 * What a backend tells the rest of foldersync about itself, apart from the Backend it opens:
 * the arguments it reads, the options that belong to it, and what a service of it must be
 * granted. One descriptor per backend folder; lib/backend/registry.ts lists them.
 *
 * @module
 */

import type { Backend, BackendOptions } from "./backend.ts";
import type { ReplicaTarget } from "./target.ts";

/** One backend, as the command line, the opener and the services see it. */
export interface BackendDescriptor<T extends ReplicaTarget = ReplicaTarget> {
  /** The kind its targets carry (`"sftp"`, `"s3"`). */
  kind: T["kind"];
  /** What its targets look like, for messages (`sftp://host/path or host:path`). */
  forms: string;
  /** URL schemes it reads (`sftp`), for the message on an unknown one. */
  schemes: readonly string[];
  /**
   * PURE: the target `text` names when it is one of this backend's, else undefined.
   * @throws {UsageError} For a malformed argument of this backend's.
   */
  parse(text: string): T | undefined;
  /** Command-line options that only this backend takes (`--ssh-port`): refused without one of its kind. */
  options: readonly string[];
  /** Environment variables its clients read: a service of it is granted these. */
  env: readonly string[];
  /** Programs it runs (ssh): a service of it is granted these. */
  run: readonly string[];
  /** Whether it reaches the network itself (fetch): a service of it gets `--allow-net`. */
  net: boolean;
  /** Files and folders it reads besides the trees (`~/.aws`), for a service; `home` is the user's. */
  reads(home: string | undefined): string[];
  /** Opens a backend of this kind, connected; its module is loaded only now (every import costs every start). */
  open(target: T, options: BackendOptions): Promise<Backend>;
}
