/**
 * Types of the one export foldersync takes from ssh2's SFTP module (lib/protocol/SFTP.js, which
 * ssh2's own type package does not describe): the SFTP protocol layer, detached from ssh2's
 * SSH client (see connect.ts for how it is fed and what it sends).
 *
 * @module
 */

/** ssh2's SFTP client: `new SFTP(client, channelInfo, config)`; connect.ts types what it uses. */
export declare const SFTP: new (client: unknown, channelInfo: unknown, config: unknown) => unknown;
